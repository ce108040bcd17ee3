"""Validation of run requests: sizes, ranges, types and defaults."""

from __future__ import annotations

import math
from typing import Any

import pytest

from supervisor.config import SandboxSettings
from supervisor.errors import InvalidRequest, PayloadTooLarge
from supervisor.executions.requests import build_run_request
from tests._requirements import guards

SETTINGS = SandboxSettings(
    deno_path="deno", heap_memory_max_mb=24, execution_timeout_s=12.5, max_code_bytes=100
)


def test_defaults_come_from_the_settings() -> None:
    request = build_run_request(SETTINGS, "1 + 1")
    assert request.code == "1 + 1"
    assert request.heap_memory_max_mb == 24
    assert request.execution_timeout_secs == 12.5


def test_explicit_values_override_the_defaults() -> None:
    request = build_run_request(SETTINGS, "x", heap_memory_max_mb=64, execution_timeout_secs=3)
    assert request.heap_memory_max_mb == 64
    assert type(request.heap_memory_max_mb) is int
    assert request.execution_timeout_secs == 3.0
    assert type(request.execution_timeout_secs) is float


def test_a_whole_float_heap_is_accepted_as_an_int() -> None:
    request = build_run_request(SETTINGS, "x", heap_memory_max_mb=16.0)
    assert request.heap_memory_max_mb == 16
    assert type(request.heap_memory_max_mb) is int


@pytest.mark.parametrize("heap", [1, 16384])
def test_heap_range_ends_are_accepted(heap: int) -> None:
    assert build_run_request(SETTINGS, "x", heap_memory_max_mb=heap).heap_memory_max_mb == heap


@pytest.mark.parametrize("timeout", [1, 300, 0.5 + 0.5, 299.5])
def test_timeout_range_ends_and_fractions_are_accepted(timeout: float) -> None:
    request = build_run_request(SETTINGS, "x", execution_timeout_secs=timeout)
    assert request.execution_timeout_secs == timeout


def test_missing_code_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="code is required"):
        build_run_request(SETTINGS, None)


@pytest.mark.parametrize("code", [42, b"1 + 1", ["1"], {"code": "1"}, True])
def test_code_that_is_not_a_string_is_an_invalid_request(code: Any) -> None:
    with pytest.raises(InvalidRequest, match="code must be a string") as info:
        build_run_request(SETTINGS, code)
    assert type(info.value) is InvalidRequest


def test_empty_code_is_allowed() -> None:
    assert build_run_request(SETTINGS, "").code == ""


def test_code_of_exactly_the_limit_is_accepted() -> None:
    assert build_run_request(SETTINGS, "x" * 100).code == "x" * 100


@guards("limits:input-size")
def test_code_over_the_limit_is_payload_too_large_naming_both_sizes() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        build_run_request(SETTINGS, "x" * 101)
    assert "101 bytes" in info.value.message
    assert "100 bytes" in info.value.message
    assert info.value.http_status == 413


def test_the_code_limit_counts_utf8_bytes_not_characters() -> None:
    code = "漢" * 34  # 34 characters, 102 bytes
    with pytest.raises(PayloadTooLarge, match="102 bytes"):
        build_run_request(SETTINGS, code)


@pytest.mark.parametrize("code", ["\ud800", "let s = 'a\udc00b'", "\udc00\ud800"])
def test_a_lone_surrogate_in_code_is_an_invalid_request(code: str) -> None:
    with pytest.raises(InvalidRequest, match="unpaired surrogate") as info:
        build_run_request(SETTINGS, code)
    assert type(info.value) is InvalidRequest


def test_the_surrogate_message_names_its_position() -> None:
    with pytest.raises(InvalidRequest, match="at character 3"):
        build_run_request(SETTINGS, "abc\ud800")


@pytest.mark.parametrize(
    ("heap", "message"),
    [
        (0, "between 1 and 16384"),
        (-8, "between 1 and 16384"),
        (16385, "between 1 and 16384"),
        (math.nan, "between 1 and 16384"),
        (math.inf, "between 1 and 16384"),
        (-math.inf, "between 1 and 16384"),
        (8.5, "whole number"),
        (True, "must be a number, got bool"),
        (False, "must be a number, got bool"),
        ("64", "must be a number, got str"),
        ([64], "must be a number, got list"),
    ],
)
def test_a_bad_heap_is_an_invalid_request(heap: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        build_run_request(SETTINGS, "x", heap_memory_max_mb=heap)
    assert type(info.value) is InvalidRequest
    assert "heap_memory_max_mb" in info.value.message


@pytest.mark.parametrize("field", ["heap_memory_max_mb", "execution_timeout_secs"])
def test_an_integer_too_large_for_a_float_is_an_invalid_request(field: str) -> None:
    with pytest.raises(InvalidRequest, match="between"):
        fields: dict[str, Any] = {field: 10**400}
        build_run_request(SETTINGS, "x", **fields)


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        (0, "between 1 and 300"),
        (0.5, "between 1 and 300"),
        (301, "between 1 and 300"),
        (300.001, "between 1 and 300"),
        (-1, "between 1 and 300"),
        (math.nan, "between 1 and 300"),
        (math.inf, "between 1 and 300"),
        (True, "must be a number, got bool"),
        ("30", "must be a number, got str"),
    ],
)
def test_a_bad_timeout_is_an_invalid_request(timeout: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        build_run_request(SETTINGS, "x", execution_timeout_secs=timeout)
    assert type(info.value) is InvalidRequest
    assert "execution_timeout_secs" in info.value.message
