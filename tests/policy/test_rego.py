"""Local Rego through regopy: decisions, and start-up errors that name the file and line."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.policy import LocalRegoPolicy, RegoProgram
from tests._requirements import guards
from tests.policy.conftest import WriteRego

pytestmark = pytest.mark.anyio

GET_ONLY = """package mcp.fetch

default allow := false

allow if input.method == "GET"
"""


async def test_true_allows(write_rego: WriteRego) -> None:
    policy = LocalRegoPolicy.from_path(write_rego("p.rego", GET_ONLY), ["fetch"])
    decision = await policy.decide("fetch", {"method": "GET"})
    assert decision.allowed
    assert decision.reason == ""


@guards("policy:fail-closed")
async def test_false_denies_naming_the_policy_and_category(write_rego: WriteRego) -> None:
    path = write_rego("p.rego", GET_ONLY)
    policy = LocalRegoPolicy.from_path(path, ["fetch"], name=f"file://{path}")
    decision = await policy.decide("fetch", {"method": "POST"})
    assert not decision.allowed
    assert decision.reason == f"denied by policy: file://{path} did not allow fetch"


@guards("policy:fail-closed")
async def test_undefined_denies(write_rego: WriteRego) -> None:
    source = 'package mcp.fs\n\nallow if input.path == "/tmp/ok"\n'
    policy = LocalRegoPolicy.from_path(write_rego("p.rego", source), ["fs"])
    assert (await policy.decide("fs", {"path": "/tmp/ok"})).allowed
    decision = await policy.decide("fs", {"path": "/etc/passwd"})
    assert not decision.allowed
    assert "did not allow fs" in decision.reason


@guards("policy:fail-closed")
async def test_a_value_other_than_true_denies(write_rego: WriteRego) -> None:
    source = 'package mcp.fetch\n\nallow := "yes"\n'
    policy = LocalRegoPolicy.from_path(write_rego("p.rego", source), ["fetch"])
    assert not (await policy.decide("fetch", {})).allowed


@guards("policy:fail-closed")
async def test_an_evaluation_error_denies_and_says_so(
    write_rego: WriteRego, caplog: pytest.LogCaptureFixture
) -> None:
    # Two values for one complete rule: a conflict, reported by rego-cpp at evaluation.
    source = (
        "package mcp.fetch\n\nallow := true if input.a == 1\n\nallow := false if input.b == 1\n"
    )
    policy = LocalRegoPolicy.from_path(write_rego("p.rego", source), ["fetch"])
    assert (await policy.decide("fetch", {"a": 1})).allowed
    with caplog.at_level(logging.WARNING):
        decision = await policy.decide("fetch", {"a": 1, "b": 1})
    assert not decision.allowed
    assert decision.reason.startswith("denied by policy: ")
    assert "failed to evaluate fetch" in decision.reason


@guards("policy:fail-closed")
async def test_an_input_regopy_cannot_take_denies(write_rego: WriteRego) -> None:
    policy = LocalRegoPolicy.from_path(write_rego("p.rego", GET_ONLY), ["fetch"])
    decision = await policy.decide("fetch", {"method": object()})
    assert not decision.allowed
    assert "input cannot be given to Rego" in decision.reason


async def test_a_category_the_policy_was_not_loaded_for_denies(write_rego: WriteRego) -> None:
    policy = LocalRegoPolicy.from_path(write_rego("p.rego", GET_ONLY), ["fetch"])
    decision = await policy.decide("fs", {"method": "GET"})
    assert not decision.allowed
    assert "was not compiled" in decision.reason


async def test_one_source_serves_several_categories(write_rego: WriteRego) -> None:
    fs = 'package mcp.fs\n\ndefault allow := false\n\nallow if input.operation == "stat"\n'
    directory = write_rego("d/fetch.rego", GET_ONLY).parent
    write_rego("d/fs.rego", fs)
    policy = LocalRegoPolicy.from_path(directory, ["fetch", "fs"])
    assert (await policy.decide("fetch", {"method": "GET"})).allowed
    assert (await policy.decide("fs", {"operation": "stat"})).allowed
    assert not (await policy.decide("fs", {"operation": "rm"})).allowed


async def test_a_directory_loads_every_module_below_it_but_tests(write_rego: WriteRego) -> None:
    main = write_rego(
        "d/main.rego", "package mcp.fetch\n\nimport data.mcp.lib\n\nallow if lib.ok\n"
    )
    write_rego("d/nested/lib.rego", 'package mcp.lib\n\nok if input.method == "GET"\n')
    # A test file is skipped: this one would not even parse.
    write_rego("d/main_test.rego", "package mcp.fetch_test\n\ntest_x if {\n")
    write_rego("d/notes.txt", "not rego")
    policy = LocalRegoPolicy.from_path(main.parent, ["fetch"])
    assert (await policy.decide("fetch", {"method": "GET"})).allowed
    assert not (await policy.decide("fetch", {"method": "PUT"})).allowed


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path} holds no .rego files"):
        LocalRegoPolicy.from_path(tmp_path, ["fetch"])


@guards("policy:fail-closed")
def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"Rego policy {tmp_path}/gone.rego does not exist"):
        LocalRegoPolicy.from_path(tmp_path / "gone.rego", ["fetch"])


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.rego"
    path.write_bytes(b"package mcp.fetch\n\xff\xfe\n")
    with pytest.raises(ConfigError, match=f"{path} cannot be read"):
        LocalRegoPolicy.from_path(path, ["fetch"])


@guards("policy:fail-closed")
def test_a_syntax_error_names_file_line_and_column(
    write_rego: WriteRego, capfd: pytest.CaptureFixture[str]
) -> None:
    source = (
        "package mcp.fetch\n\n# A comment with non-ASCII text: héllo wörld\n"
        "allow if {\n    input.method == \n}\n"
    )
    path = write_rego("broken.rego", source)
    with pytest.raises(ConfigError) as caught:
        LocalRegoPolicy.from_path(path, ["fetch"])
    assert f"{path}:5:18: Invalid boolean operator" in caught.value.message
    # rego-cpp prints compile errors on stdout at its default log level (an MCP stdio channel).
    assert capfd.readouterr().out == ""


def test_an_unclosed_brace_names_the_file_and_line(write_rego: WriteRego) -> None:
    path = write_rego("broken.rego", 'package mcp.fetch\n\nallow if {\n    input.method == "GET"\n')
    with pytest.raises(ConfigError, match=rf"{path}:3:\d+: this is unclosed"):
        LocalRegoPolicy.from_path(path, ["fetch"])


def test_an_error_in_one_module_of_a_directory_names_that_module(write_rego: WriteRego) -> None:
    write_rego("d/a.rego", GET_ONLY)
    bad = write_rego("d/b.rego", "package mcp.fetch\n\nx := 1\n}}}\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+:\d+: Syntax error"):
        LocalRegoPolicy.from_path(bad.parent, ["fetch"])


@guards("policy:fail-closed")
@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        # Not in regopy 1.5.2: a guarded call would otherwise deny silently forever.
        (
            'allow if {\n    input.a == 1\n    net.cidr_contains("10.0.0.0/8", input.ip)\n}\n',
            5,
            r"net\.cidr_contains\(\) is neither a built-in of regopy",
        ),
        ("allow if {\n    nosuchfn(input.a)\n}\n", 4, r"nosuchfn\(\) is neither"),
        ('allow if {\n    print("x")\n}\n', 4, "print\\(\\) is not allowed"),
        (
            "default allow := false\n\ndefault allow := true\n",
            5,
            "a second default for allow",
        ),
        # rego-cpp segfaults building this one.
        ("f(x) := 1\n\nf(x, y) := 2\n\nallow if f(1) == 1\n", 5, "function f takes 2"),
    ],
)
def test_what_regopy_would_accept_silently_or_crash_on_is_refused_with_its_line(
    write_rego: WriteRego, source: str, line: int, message: str
) -> None:
    path = write_rego("p.rego", "package mcp.fetch\n\n" + source)
    with pytest.raises(ConfigError, match=rf"{path}:{line}: {message}"):
        LocalRegoPolicy.from_path(path, ["fetch"])


def test_calls_in_strings_and_comments_and_user_functions_are_not_mistaken(
    write_rego: WriteRego,
) -> None:
    source = (
        "package mcp.fetch\n\nimport data.mcp.util\n\n"
        '# print("comment") and nosuchfn(x)\n'
        'note := "nosuchfn(x) print(y)"\n\n'
        "short(s) := s if count(s) < 10\n\n"
        "allow if {\n    short(input.method)\n    util.yes(input.method)\n}\n"
    )
    path = write_rego("d/p.rego", source)
    write_rego("d/util.rego", "package mcp.util\n\nyes(x) if x == x\n")
    assert LocalRegoPolicy.from_path(path.parent, ["fetch"]).decide_now("fetch", {"method": "GET"})


def test_recursion_is_refused_at_load(write_rego: WriteRego) -> None:
    path = write_rego("p.rego", "package mcp.fetch\n\nallow if b\n\nb if allow\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: Recursion detected"):
        LocalRegoPolicy.from_path(path, ["fetch"])


def test_a_build_error_without_position_names_the_policy(write_rego: WriteRego) -> None:
    path = write_rego("p.rego", "package mcp.fetch\n\nallow := true\n\nallow contains 1 if true\n")
    with pytest.raises(ConfigError, match=f"{path}: compiling data.mcp.fetch.allow failed: "):
        LocalRegoPolicy.from_path(path, ["fetch"])


@guards("policy:fail-closed")
def test_a_crash_of_regopy_while_compiling_stops_start_up_not_the_process(
    write_rego: WriteRego,
) -> None:
    # rego-cpp aborts (SIGABRT) on `with input as <rule>`; the trial build in a child sees it.
    source = (
        "package mcp.fetch\n\ndefault allow := false\n\nreq := {}\n\n"
        'allow if input.method == "GET"\n\ncheck if allow with input as req\n'
    )
    path = write_rego("p.rego", source)
    with pytest.raises(ConfigError, match=r"regopy crashed compiling it \(signal 6\)"):
        RegoProgram.from_path(path, ["data.mcp.fetch.check"])


def test_a_policy_for_a_category_must_declare_its_package(write_rego: WriteRego) -> None:
    path = write_rego("p.rego", GET_ONLY)
    with pytest.raises(ConfigError, match="configured for fs but none of its modules declares"):
        LocalRegoPolicy.from_path(path, ["fs"])


def test_a_module_without_a_package_is_refused(write_rego: WriteRego) -> None:
    path = write_rego("p.rego", "allow := true\n")
    with pytest.raises(ConfigError, match=f"{path}:1: no package declaration"):
        LocalRegoPolicy.from_path(path, ["fetch"])


def test_evaluations_from_several_threads_do_not_mix_inputs(write_rego: WriteRego) -> None:
    policy = LocalRegoPolicy.from_path(write_rego("p.rego", GET_ONLY), ["fetch"])
    start = threading.Barrier(4)

    def decide_many(method: str) -> set[bool]:
        start.wait()
        return {policy.decide_now("fetch", {"method": method}).allowed for _ in range(300)}

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(decide_many, ["GET", "POST", "GET", "PUT"]))
    assert results == [{True}, {False}, {True}, {False}]
