"""Helpers for the process-model tests: programs in subprocesses, pids, and waiting on them.

The fleet tests run the application side in real processes (scripts written to
``tmp_path``, Gunicorn, Celery) and the ingest server in the test process. The
programs read their client settings from the environment (see ``apps/fleetenv.py``).
Everything here waits on events (a process exit seen through a pidfd, a line on
a pipe), never on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from logwell.testing import IngestServer

TESTS = Path(__file__).resolve().parent
APPS = TESTS / "apps"
BIN = Path(sys.executable).parent
PYTHON = sys.executable


def program_env(server: IngestServer, **options: Any) -> dict[str, str]:
    """The environment for a test program: where the server is and the client's options."""
    env = dict(os.environ)
    env["LOGWELL_ENDPOINT"] = server.endpoint
    env["LOGWELL_API_KEY"] = server.api_key
    env["LOGWELL_OPTIONS"] = json.dumps(options)
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def write_program(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def metadata_counts(server: IngestServer, key: str) -> Counter[Any]:
    """How many stored entries carry each value of ``metadata[key]``."""
    return Counter(
        entry.get("metadata", {}).get(key) for entry in server.entries
    )


def record(scenario: str, **numbers: Any) -> None:
    """Print a scenario's numbers (shown with -s / -rA) and append them to a report file.

    The file is ``$LOGWELL_FLEET_REPORT`` when set; the closing note of the
    process-model issue is built from it.
    """
    line = json.dumps({"scenario": scenario, **numbers}, sort_keys=True)
    print(line)
    path = os.environ.get("LOGWELL_FLEET_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


# -- processes -------------------------------------------------------------------------


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (any process, not only a child) has exited; False on timeout.

    A pidfd becomes readable when the process exits, also when it is a zombie.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(ready)
    finally:
        os.close(fd)


def wait_child(pid: int, timeout: float) -> int | None:
    """Reap our child ``pid`` and return its wait status, or None if it is still running."""
    if not wait_gone(pid, timeout):
        return None
    _, status = os.waitpid(pid, 0)
    return status


def kill_and_reap(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            wait_gone(pid, 5.0)


def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != b"Z"


def _all_pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def session_members(sid: int) -> set[int]:
    """Live processes of session ``sid`` (a program started with start_new_session)."""
    members = set()
    for pid in _all_pids():
        fields = _stat(pid)
        # After ")": state, ppid, pgrp, session, ...
        if fields is not None and fields[0] != b"Z" and int(fields[3]) == sid:
            members.add(pid)
    return members


def children_of(ppid: int) -> set[int]:
    kids = set()
    for pid in _all_pids():
        fields = _stat(pid)
        if fields is not None and fields[0] != b"Z" and int(fields[1]) == ppid:
            kids.add(pid)
    return kids


class Program:
    """A test program in its own session; talks through stdout lines, stopped at the end."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.started = time.monotonic()
        self._buffer = b""
        self.stdout_lines: list[str] = []
        self.stderr = ""

    def read_line(self, timeout: float) -> str | None:
        """The next line of stdout, or None on timeout or end of output."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        text = line.decode()
        self.stdout_lines.append(text)
        return text

    def expect(self, prefix: str, timeout: float) -> str:
        """Read lines until one starts with ``prefix``; fail with the program's stderr if not."""
        while True:
            line = self.read_line(timeout)
            if line is None:
                raise AssertionError(
                    f"the program did not print {prefix!r} within {timeout}s; "
                    f"stdout: {self.stdout_lines!r}; stderr: {self.finish(5.0)[1][-3000:]}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the program is still running after ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def finish(self, timeout: float) -> tuple[str, str]:
        """Wait for the end (killing the session after ``timeout``); all stdout and stderr."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.process.communicate()
        rest = (self._buffer + out).decode()
        self._buffer = b""
        self.stdout_lines.extend(line for line in rest.splitlines())
        self.stderr += err.decode()
        return "\n".join(self.stdout_lines), self.stderr

    def kill(self) -> None:
        """Kill the program's whole session (but not shippers: they have sessions of their own)."""
        for pid in session_members(self.pid) | {self.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.process.wait(10.0)
        except subprocess.TimeoutExpired:
            pass


class Programs:
    """Starts programs and guarantees none of them, nor their sessions, outlive the test."""

    def __init__(self) -> None:
        self.started: list[Program] = []

    def start(self, args: list[str], env: dict[str, str], cwd: Path | None = None) -> Program:
        program = Program(args, env, cwd)
        self.started.append(program)
        return program

    def python(self, script: Path, env: dict[str, str], *args: str) -> Program:
        return self.start([PYTHON, str(script), *args], env, cwd=script.parent)

    def __enter__(self) -> Programs:
        return self

    def __exit__(self, *exc: object) -> None:
        for program in self.started:
            if program.process.poll() is None or session_members(program.pid):
                program.kill()
            for stream in (program.process.stdout, program.process.stderr):
                if stream is not None:
                    stream.close()
