"""Configuration validation: defaults, bounds, and messages that help."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logwell import (
    API_KEY_REGEX,
    DEFAULT_CONFIG,
    Logwell,
    LogwellError,
    LogwellErrorCode,
    validate_api_key_format,
    validate_config,
)

KEY = "lw_" + "A" * 32
BASE: dict[str, Any] = {"api_key": KEY, "endpoint": "https://logs.example.com"}


def invalid(config: dict[str, Any]) -> LogwellError:
    with pytest.raises(LogwellError) as caught:
        validate_config(config)  # type: ignore[arg-type]
    assert caught.value.code is LogwellErrorCode.INVALID_CONFIG
    return caught.value


def test_defaults_fill_a_minimal_config() -> None:
    """A config with only the key and endpoint gets every default."""
    merged = validate_config(BASE)  # type: ignore[arg-type]
    for name, value in DEFAULT_CONFIG.items():
        assert merged[name] == value  # type: ignore[literal-required]
    assert merged["batch_size"] == 50 and merged["flush_interval"] == 5.0
    assert merged["timeout"] == 30.0 and merged["shutdown_timeout"] <= 5.0


def test_endpoint_loses_its_trailing_slash() -> None:
    """The SDK appends /v1/ingest, so a trailing slash is removed."""
    merged = validate_config({**BASE, "endpoint": "http://localhost:3000/"})  # type: ignore[typeddict-item]
    assert merged["endpoint"] == "http://localhost:3000"


@pytest.mark.parametrize(
    ("config", "phrase"),
    [
        ({"endpoint": "https://x.example"}, "missing 'api_key'"),
        ({"api_key": KEY}, "missing 'endpoint'"),
        ({**BASE, "endpoint": "logs.example.com"}, "http:// or https://"),
        ({**BASE, "endpoint": "ftp://logs.example.com"}, "http:// or https://"),
        ({**BASE, "endpoint": "https://u:p@logs.example.com"}, "credentials"),
        ({**BASE, "endpoint": "http://host:notaport"}, "not a valid URL"),
        ({**BASE, "batch_size": 0}, "between 1 and 100"),
        ({**BASE, "batch_size": 101}, "between 1 and 100"),
        ({**BASE, "batch_size": 5.0}, "whole number"),
        ({**BASE, "batch_size": True}, "whole number"),
        ({**BASE, "flush_interval": 0}, "flush_interval"),
        ({**BASE, "flush_interval": float("nan")}, "flush_interval"),
        ({**BASE, "max_retries": -1}, "max_retries"),
        ({**BASE, "timeout": "30"}, "number of seconds"),
        ({**BASE, "max_entry_bytes": 600_000}, "max_entry_bytes"),
        ({**BASE, "max_batch_bytes": 8192, "max_entry_bytes": 8191}, "leave room"),
        ({**BASE, "capture_source_location": "yes"}, "True or False"),
        ({**BASE, "service": 3}, "non-empty string"),
        ({**BASE, "on_error": "print"}, "callable"),
        ({**BASE, "batchsize": 10}, "Did you mean 'batch_size'"),
        ({**BASE, "ca_certs": "/nonexistent/ca.pem"}, "PEM file"),
        ([("api_key", KEY)], "must be a dict"),
    ],
)
def test_invalid_config_names_the_problem(config: Any, phrase: str) -> None:
    """Each mistake raises INVALID_CONFIG with a message saying what to fix."""
    assert phrase in str(invalid(config))


@pytest.mark.parametrize("key", ["lw_short", "xx_" + "a" * 32, "lw_" + "a" * 31 + "!", 12345])
def test_malformed_key_is_refused_without_being_repeated(key: Any) -> None:
    """A malformed key is described by shape, never echoed back."""
    error = invalid({**BASE, "api_key": key})
    if isinstance(key, str):
        assert key not in str(error) and key[3:] not in repr(error)


def test_constructor_raises_before_any_process_starts() -> None:
    """Logwell() validates first, so a bad config starts no shipper."""
    with pytest.raises(LogwellError, match="batch_size"):
        Logwell({**BASE, "batch_size": 1000})  # type: ignore[typeddict-item]


@given(st.text(alphabet="ABCxyz019_-", min_size=32, max_size=32))
def test_well_formed_keys_are_accepted(body: str) -> None:
    """Every 'lw_' + 32 URL-safe characters key matches the format."""
    assert validate_api_key_format("lw_" + body)
    assert API_KEY_REGEX.match("lw_" + body)


@given(st.text(max_size=40))
def test_key_format_agrees_with_the_regex(text: str) -> None:
    """validate_api_key_format never disagrees with API_KEY_REGEX."""
    assert validate_api_key_format(text) == bool(API_KEY_REGEX.fullmatch(text))


@given(st.integers(min_value=-1000, max_value=1000))
def test_batch_size_bounds(size: int) -> None:
    """batch_size is accepted exactly in 1..100, the server's per-request cap."""
    config = {**BASE, "batch_size": size}
    if 1 <= size <= 100:
        assert validate_config(config)["batch_size"] == size  # type: ignore[arg-type]
    else:
        invalid(config)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_timeouts_accept_only_sane_numbers(value: float) -> None:
    """shutdown_timeout takes finite seconds in its range and nothing else."""
    config = {**BASE, "shutdown_timeout": value}
    if 0.0 <= value <= 600.0:
        assert validate_config(config)["shutdown_timeout"] == value  # type: ignore[arg-type]
    else:
        invalid(config)
