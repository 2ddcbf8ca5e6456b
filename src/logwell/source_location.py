"""Where a log call was made, read from the interpreter's frames."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLocation:
    """A file and a line of the caller."""

    source_file: str
    line_number: int


def capture_source_location(skip_frames: int = 0) -> SourceLocation | None:
    """Return the location ``skip_frames`` frames above the caller, or None past the stack.

    ``sys._getframe`` reads one frame and no files, unlike ``inspect.stack()``.
    """
    try:
        frame = sys._getframe(skip_frames + 1)
    except ValueError:
        return None
    return SourceLocation(frame.f_code.co_filename, frame.f_lineno)
