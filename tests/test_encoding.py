"""Encoding entries: the fast path, and the documented fallback for hostile data."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import re
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logwell._encoding import (
    ALTERED,
    EMPTY_MESSAGE,
    TRUNCATED,
    encode,
    normalize_level,
    replace_nul,
    utc_timestamp,
)

LIMIT = 65_536


def entry(message: Any = "hello", **metadata: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"level": "info", "message": message, "timestamp": utc_timestamp()}
    if metadata:
        base["metadata"] = metadata
    return base


def decoded(item: dict[str, Any], limit: int = LIMIT) -> tuple[dict[str, Any], int]:
    data, flags = encode(item, limit)
    return orjson.loads(data), flags


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_plain_entry_is_encoded_unchanged() -> None:
    """The fast path is orjson as is, with no flags."""
    item = entry(user="u1", n=3)
    data, flags = encode(item, LIMIT)
    assert flags == 0 and data == orjson.dumps(item)


def test_timestamp_is_utc_iso_with_milliseconds() -> None:
    """Timestamps look like 2026-11-27T13:20:34.512Z."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_timestamp())
    now = datetime.datetime.now(datetime.timezone.utc)
    parsed = datetime.datetime.fromisoformat(utc_timestamp().replace("Z", "+00:00"))
    assert abs((parsed - now).total_seconds()) < 2


def test_types_orjson_knows_stay_native() -> None:
    """UUID, datetime, Enum and dataclasses are encoded natively, not altered."""
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    value = uuid.UUID(int=7)
    out, flags = decoded(entry(id=value, at=when, color=Color.RED, p=Point(1, 2)))
    assert flags == 0
    assert out["metadata"] == {"id": str(value), "at": "2026-01-02T03:04:05+00:00",
                               "color": "red", "p": {"x": 1, "y": 2}}


def test_each_unsupported_value_has_a_predictable_fallback() -> None:
    """Unknown objects, sets, Decimal, bytes, exceptions, big ints, bad keys: documented forms."""
    out, flags = decoded(entry(
        obj=Opaque(), hostile=Hostile(), tags={"b", "a"}, price=decimal.Decimal("1.50"),
        raw=b"\xffab", err=ValueError("boom"), big=2**70, nan=float("nan"),
        inf=float("-inf"), nested={1: "int key", (1, 2): "tuple key"},
    ))
    assert flags == ALTERED
    assert out["metadata"] == {
        "obj": "opaque!", "hostile": "<unprintable Hostile>", "tags": ["a", "b"],
        "price": "1.50", "raw": "\ufffdab", "err": "ValueError: boom", "big": str(2**70),
        "nan": None, "inf": None, "nested": {"1": "int key", "(1, 2)": "tuple key"},
    }


def test_cycles_and_depth_are_cut_with_markers() -> None:
    """A cycle becomes '<cycle>' and nesting past 64 levels '<too deep>'."""
    loop: dict[str, Any] = {}
    loop["self"] = loop
    deep: Any = "bottom"
    for _ in range(300):
        deep = [deep]
    out, flags = decoded(entry(loop=loop, deep=deep))
    assert flags == ALTERED
    assert out["metadata"]["loop"] == {"self": "<cycle>"}
    assert "<too deep>" in orjson.dumps(out["metadata"]["deep"]).decode()


def test_nul_and_surrogates_are_replaced() -> None:
    """NUL (fatal to the server) and lone surrogates become U+FFFD."""
    out, flags = decoded(entry("a\ud800b", key="x\x00y"))
    assert flags == ALTERED
    assert out["message"] == "a\ufffdb" and out["metadata"]["key"] == "x\ufffdy"


def test_nul_in_fast_path_is_left_to_the_shipper() -> None:
    """The fast path keeps NUL; replace_nul in the shipper removes it exactly."""
    data, flags = encode(entry("a\x00b"), LIMIT)
    assert flags == 0
    fixed = orjson.loads(replace_nul(data))
    assert fixed["message"] == "a\ufffdb"
    literal = orjson.dumps({"m": "\\u0000 and \\\x00"})
    assert orjson.loads(replace_nul(literal)) == {"m": "\\u0000 and \\\ufffd"}


@pytest.mark.parametrize("message", ["", "   ", "\n\t"])
def test_empty_message_gets_a_placeholder(message: str) -> None:
    """The server rejects blank messages, so they are sent as a visible placeholder."""
    out, flags = decoded(entry(message))
    assert out["message"] == EMPTY_MESSAGE and flags == ALTERED


def test_non_string_message_becomes_its_str() -> None:
    """A message that is not a string is sent as str(message)."""
    out, flags = decoded(entry(12345))
    assert out["message"] == "12345" and flags == ALTERED


@pytest.mark.parametrize("bad", [0, -1, 2**31, 2**80, 42.5, "12", True])
def test_bad_line_number_is_removed(bad: Any) -> None:
    """lineNumber outside 1..2**31-1 or not an int would fail the batch; it is dropped."""
    out, flags = decoded({**entry(), "lineNumber": bad, "sourceFile": "app.py"})
    assert "lineNumber" not in out and out["sourceFile"] == "app.py"
    assert flags == ALTERED


def test_good_line_number_is_kept() -> None:
    """A valid lineNumber stays on the fast path."""
    out, flags = decoded({**entry(), "lineNumber": 2**31 - 1})
    assert out["lineNumber"] == 2**31 - 1 and flags == 0


def test_metadata_that_is_not_a_dict_is_wrapped() -> None:
    """Metadata must be an object on the server: other values go under 'value'."""
    out, _ = decoded({**entry(), "metadata": [1, {2}]})
    assert out["metadata"] == {"value": [1, [2]]}


def test_large_message_is_truncated_with_a_marker() -> None:
    """An entry over the limit keeps its head and says how much was cut."""
    out, flags = decoded(entry("x" * 100_000), 4_096)
    assert flags == TRUNCATED
    assert out["message"].startswith("xxx") and "truncated by logwell" in out["message"]
    assert len(orjson.dumps(out)) <= 4_096


def test_large_metadata_is_replaced_first() -> None:
    """Huge metadata is replaced by a note before the message is cut."""
    out, flags = decoded(entry("keep me", blob="y" * 50_000), 4_096)
    assert flags == TRUNCATED and out["message"] == "keep me"
    assert "removed" in out["metadata"]["logwell_truncated"]


def test_levels_are_normalized() -> None:
    """Case and common aliases map to the server's five levels."""
    assert normalize_level("INFO") == "info"
    assert normalize_level("warning") == "warn"
    assert normalize_level("CRITICAL") == "fatal"
    assert normalize_level("verbose") is None and normalize_level(3) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    | st.frozensets(st.integers(), max_size=3),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(message=st.text() | st.integers() | st.none(), metadata=json_values,
       limit=st.integers(min_value=1_024, max_value=20_000))
def test_any_input_encodes_to_valid_json_the_server_accepts(
    message: Any, metadata: Any, limit: int
) -> None:
    """Whatever comes in, encode() returns parseable JSON within the limit, no NUL after replace."""
    data, flags = encode({"level": "info", "message": message, "metadata": metadata}, limit)
    data = replace_nul(data)
    out = orjson.loads(data)
    assert len(data) <= limit
    assert isinstance(out["message"], str) and out["message"].strip()
    assert b"\\u0000" not in data.replace(b"\\\\", b"")
    assert flags in (0, ALTERED, TRUNCATED, ALTERED | TRUNCATED)



