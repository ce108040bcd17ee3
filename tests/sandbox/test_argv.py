"""Deno's command line and environment: the sandbox's permissions live here."""

from __future__ import annotations

import pytest

from supervisor.sandbox.argv import (
    HEAP_BASELINE_MB,
    UNWRITABLE_DENO_DIR,
    child_env,
    deno_argv,
)
from tests._requirements import guards

RUNNER = "/opt/mcp-v8/runner-0123456789abcdef.js"
ALLOWED_ENV = {"LANG", "LC_ALL", "TZ", "DENO_DIR", "DENO_NO_UPDATE_CHECK", "NO_COLOR"}


def argv(heap: int = 8) -> list[str]:
    return deno_argv("/usr/local/bin/deno", RUNNER, heap_memory_max_mb=heap)


def flags(args: list[str]) -> list[str]:
    """The options Deno itself reads: everything between ``run`` and the script."""
    return args[2 : args.index(RUNNER)]


def test_argv_runs_the_runner_with_the_given_deno() -> None:
    args = argv()
    assert args[:2] == ["/usr/local/bin/deno", "run"]
    assert args[-1] == RUNNER


@guards("sandbox:no-permissions")
def test_no_permission_is_granted_except_inspector_access() -> None:
    args = argv()
    assert [a for a in args if a.startswith("--allow")] == ["--allow-sys=inspector"]
    assert not {"-A", "--allow-all"} & set(args)
    assert not [a for a in args if a.startswith(("--unsafely", "--unstable"))]


@pytest.mark.parametrize(
    "flag", ["--no-prompt", "--no-remote", "--no-npm", "--no-config", "--no-lock"]
)
@guards("sandbox:no-permissions", "sandbox:no-remote-code")
def test_lockdown_flags_are_given_to_deno(flag: str) -> None:
    assert flag in flags(argv())


def test_every_flag_comes_before_the_script_so_deno_reads_it() -> None:
    args = argv()
    assert args.index(RUNNER) == len(args) - 1
    assert all(a.startswith("--") for a in flags(args))


@pytest.mark.parametrize("heap", [1, 8, 64, 16384])
def test_the_v8_heap_is_the_requested_heap_plus_the_baseline(heap: int) -> None:
    expected = f"--v8-flags=--max-old-space-size={heap + HEAP_BASELINE_MB}"
    v8_flags = [a for a in argv(heap) if a.startswith("--v8-flags")]
    assert v8_flags == [expected]


@guards("sandbox:no-env")
def test_child_env_drops_everything_outside_the_allow_list() -> None:
    parent = {
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_ACCESS_KEY_ID": "id",
        "GITHUB_TOKEN": "ghp_x",
        "DENO_AUTH_TOKENS": "token@example.com",
        "PATH": "/usr/bin:/bin",
        "LD_LIBRARY_PATH": "/opt/lib",
        "LD_PRELOAD": "/tmp/evil.so",
        "PYTHONPATH": "/work",
        "NODE_PATH": "/node",
        "HOME": "/root",
        "DENO_CERT": "/etc/ca.pem",
        "HTTPS_PROXY": "http://proxy:8080",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
    }
    env = child_env(parent)
    assert set(env) <= ALLOWED_ENV
    assert "secret" not in env.values()
    assert env["LANG"] == "C.UTF-8"
    assert env["TZ"] == "UTC"
    assert "LC_ALL" not in env


@guards("sandbox:no-persistence")
def test_child_env_points_deno_dir_at_an_unwritable_path() -> None:
    env = child_env({"DENO_DIR": "/home/user/.cache/deno"})
    assert env["DENO_DIR"] == UNWRITABLE_DENO_DIR
    assert UNWRITABLE_DENO_DIR.startswith("/dev/null/")


def test_child_env_turns_off_update_checks_and_colour() -> None:
    env = child_env({})
    assert env == {"DENO_DIR": UNWRITABLE_DENO_DIR, "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}


def test_child_env_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = child_env()
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "PATH" not in env
    assert env["LC_ALL"] == "C.UTF-8"
    assert set(env) <= ALLOWED_ENV
