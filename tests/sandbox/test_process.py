"""A child process on raw pipes: I/O, exit, and failures, with tiny Python children."""

from __future__ import annotations

import os
import sys

import anyio
import pytest

from supervisor.sandbox.process import start_process

pytestmark = pytest.mark.anyio

ECHO = "import sys\nfor line in sys.stdin: sys.stdout.write(line.upper()); sys.stdout.flush()"


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_child_reads_its_stdin_answers_and_its_exit_status_is_reaped() -> None:
    process = await anyio.to_thread.run_sync(start_process, python(ECHO), {})
    await process.stdin.send(b"hello\n" * 20_000)  # more than a pipe holds
    await process.stdin.aclose()
    received = bytearray()
    with anyio.fail_after(10):
        while True:
            try:
                received += await process.stdout.receive()
            except anyio.EndOfStream:
                break
        assert await process.wait() == 0
    assert received == b"HELLO\n" * 20_000
    assert process.returncode == 0
    await process.aclose()


async def test_without_pidfds_the_exit_is_still_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    process = await anyio.to_thread.run_sync(start_process, python("raise SystemExit(3)"), {})
    with anyio.fail_after(10):
        assert await process.wait() == 3
    await process.aclose()


async def test_writing_to_a_child_that_is_gone_raises_broken_resource() -> None:
    process = await anyio.to_thread.run_sync(start_process, python("pass"), {})
    with anyio.fail_after(10):
        await process.wait()
        with pytest.raises(anyio.BrokenResourceError):
            await process.stdin.send(b"x" * 200_000)
    await process.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await process.stdout.receive()


async def test_a_killed_child_reports_the_signal_and_a_missing_program_leaks_nothing() -> None:
    process = await anyio.to_thread.run_sync(start_process, python("input()"), {})
    os.kill(process.pid, 9)
    with anyio.fail_after(10):
        assert await process.wait() == -9
    await process.aclose()
    before = open_fds()
    with pytest.raises(OSError):
        start_process(["/nonexistent/deno"], {})
    assert open_fds() == before
