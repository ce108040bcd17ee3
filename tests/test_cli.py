"""The command line: flag conflicts, bad values and an unusable Deno are reported clearly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.cli import build_parser, settings_from_args


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--http-port", "1", "--sse-port", "2"], "--sse-port"),
        (["--stateless", "--directory-path", "x"], "--directory-path"),
        (["--stateless", "--session-db-path", "x"], "--session-db-path"),
        (["--directory-path", "x", "--s3-bucket", "b"], "--s3-bucket"),
        (["--cache-dir", "x"], "requires --s3-bucket"),
        (["--stateless", "--session-id", "s"], "--session-id"),
        (["--s3-endpoint-url", "http://x"], "requires --s3-bucket"),
        (["--execution-timeout", "0"], "between 1 and 300"),
        (["--execution-timeout", "301"], "between 1 and 300"),
        (["--heap-memory-max", "0"], "--heap-memory-max"),
        (["--http-port", "70000"], "port"),
        (["--max-concurrent-executions", "many"], "whole number"),
        (["--npm-registry", "ftp://mirror"], "--npm-registry must be an http"),
        (["--module-cdn", "esm.sh"], "--module-cdn must be an http"),
    ],
)
def test_conflicting_or_bad_flags_exit_with_status_2_and_name_the_problem(
    args: list[str], needle: str
) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert needle in done.stderr


def test_an_unusable_deno_binary_stops_start_up_with_an_error_naming_it(tmp_path: Path) -> None:
    fake = tmp_path / "not-deno"
    fake.write_text("#!/bin/sh\necho 'I am not deno' >&2\nexit 1\n")
    fake.chmod(0o755)
    done = run_cli("--stateless", "--deno-path", str(fake), "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 1
    assert "not-deno" in done.stderr
    assert "I am not deno" in done.stderr


def test_flags_become_settings_with_units_in_their_names(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "--stateless",
            "--http-port",
            "3000",
            "--execution-timeout",
            "5",
            "--heap-memory-max",
            "32",
            "--allowed-host",
            "example.com",
            "--data-dir",
            str(tmp_path),
        ]
    )
    settings = settings_from_args(args, parser)
    assert settings.sandbox.execution_timeout_s == 5.0
    assert settings.sandbox.heap_memory_max_mb == 32
    assert settings.http.http_port == 3000
    assert settings.http.allowed_hosts == ("example.com",)
    assert settings.storage.data_dir == tmp_path


def test_module_flags_become_module_settings(tmp_path: Path) -> None:
    parser = build_parser()
    defaults = settings_from_args(parser.parse_args(["--data-dir", str(tmp_path)]), parser)
    assert not defaults.modules.enabled
    assert defaults.modules.npm_registry == "https://registry.npmjs.org/"
    assert defaults.modules.cdn is None
    args = parser.parse_args(
        [
            "--allow-external-modules",
            "--npm-registry",
            "http://127.0.0.1:4873",
            "--jsr-registry",
            "https://jsr.example.test",
            "--module-cdn",
            "https://esm.sh/",
            "--data-dir",
            str(tmp_path),
        ]
    )
    settings = settings_from_args(args, parser)
    assert settings.modules.enabled
    assert settings.modules.npm_registry == "http://127.0.0.1:4873/"
    assert settings.modules.jsr_registry == "https://jsr.example.test/"
    assert settings.modules.cdn == "https://esm.sh"


def test_import_policies_without_external_modules_are_refused(tmp_path: Path) -> None:
    policy = tmp_path / "import.rego"
    policy.write_text("package mcp.import\n\ndefault allow := true\n")
    done = run_cli(
        "--stateless",
        "--data-dir",
        str(tmp_path / "d"),
        "--policies-json",
        json.dumps({"import": {"policies": [{"url": policy.as_uri()}]}}),
    )
    assert done.returncode == 2
    assert "--allow-external-modules" in done.stderr


def test_an_unwritable_heap_directory_stops_start_up_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    heaps = blocker / "heaps"
    done = run_cli(
        "--directory-path",
        str(heaps),
        "--session-db-path",
        str(tmp_path / "sessions"),
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert done.returncode == 1
    assert str(heaps) in done.stderr
    assert "not writable" in done.stderr


def test_an_unusable_session_database_path_stops_start_up_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = run_cli(
        "--directory-path",
        str(tmp_path / "heaps"),
        "--session-db-path",
        str(blocker / "sessions"),
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert done.returncode == 1
    assert str(blocker / "sessions") in done.stderr


def test_a_broken_policy_stops_start_up_naming_the_file_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "fetch.rego"
    policy.write_text("package mcp.fetch\n\nallow if {\n  input.method ==\n}\n")
    done = run_cli(
        "--stateless",
        "--data-dir",
        str(tmp_path / "d"),
        "--policies-json",
        json.dumps({"fetch": {"policies": [{"url": policy.as_uri()}]}}),
    )
    assert done.returncode == 2
    assert "fetch.rego" in done.stderr
    assert re.search(r"line \d+|:\d+", done.stderr), done.stderr


def test_fetch_header_rules_without_fetch_policies_are_refused(tmp_path: Path) -> None:
    done = run_cli(
        "--stateless",
        "--data-dir",
        str(tmp_path / "d"),
        "--fetch-header",
        "host=api.example.com,header=X-Key,value=secret-value",
    )
    assert done.returncode == 2
    assert "--policies-json" in done.stderr
    assert "secret-value" not in done.stderr


def test_the_server_takes_its_start_up_objects_out_of_the_garbage_collectors_way() -> None:
    # In a fresh interpreter: gc.freeze() is process-wide, and so is the threshold.
    script = (
        "import gc; from supervisor.app import settle_gc; "
        "before = gc.get_freeze_count(); settle_gc(); "
        "print(before, gc.get_freeze_count() > 1000, gc.get_threshold())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split(maxsplit=2) == ["0", "True", "(20000, 20, 20)\n"]
