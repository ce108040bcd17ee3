"""OS behaviour of children: the shutdown ladder, broken channels, process groups.

These use the fake deno (a tiny Python program), so they need no Deno.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psutil
import pytest

from supervisor.config import SandboxSettings
from supervisor.errors import SandboxUnavailable
from supervisor.sandbox import Child, Limits, SandboxPool, ShutdownRung, execute
from tests._requirements import guards
from tests.fakes import write_fake_deno

pytestmark = pytest.mark.anyio

LIMITS = Limits(
    timeout_s=5,
    heap_memory_max_mb=8,
    rss_cap_bytes=1 << 40,
    output_limit_bytes=1 << 20,
    poll_interval_s=0.01,
)


@pytest.fixture
def fake_pool(tmp_path: Path) -> SandboxPool:
    deno = write_fake_deno(tmp_path)
    settings = SandboxSettings(deno_path=str(deno), shutdown_grace_s=0.2)
    return SandboxPool(settings, tmp_path / "unused-runner.js")


@pytest.fixture
async def child(fake_pool: SandboxPool) -> AsyncIterator[Child]:
    started = await fake_pool.spawn(8)
    yield started
    started.kill()
    await started.close(0)


async def run(child: Child, code: str, **overrides: float) -> tuple[str, str | None, list[str]]:
    output: list[str] = []
    limits = Limits(**{**LIMITS.__dict__, **overrides})
    outcome = await execute(child, code, limits, lambda _stream, text: output.append(text))
    return outcome.status, outcome.error or outcome.result, output


async def test_a_well_behaved_child_returns_its_output_and_result(child: Child) -> None:
    status, result, output = await run(child, "echo:hello")
    assert (status, result, output) == ("completed", "hello", ["hello\n"])
    assert await child.close(1) is ShutdownRung.EXITED


@guards("channel:untrusted-frames")
async def test_a_child_writing_garbage_fails_its_execution_with_a_protocol_error(
    child: Child,
) -> None:
    status, error, _ = await run(child, "garbage")
    assert status == "failed"
    assert error is not None and "frame protocol" in error


@guards("channel:untrusted-frames")
async def test_a_child_announcing_an_oversized_frame_fails_with_the_limit_named(
    child: Child,
) -> None:
    status, error, _ = await run(child, "huge")
    assert status == "failed"
    assert error is not None and "frame limit" in error


@guards("channel:untrusted-frames")
async def test_a_child_that_exits_without_answering_fails_with_its_exit_status(
    child: Child,
) -> None:
    status, error, _ = await run(child, "exit:3")
    assert status == "failed"
    assert error is not None and "exit status 3" in error


async def test_a_child_that_never_answers_is_timed_out_and_killed(child: Child) -> None:
    started = time.monotonic()
    status, error, _ = await run(child, "hang", timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert status == "timed_out"
    assert error == "execution timed out after 0.3 s"
    assert elapsed < 0.3 + 0.1
    with anyio.fail_after(2):
        await child.process.wait()


@guards("lifecycle:shutdown-ladder")
async def test_a_child_that_traps_sigterm_is_killed_by_the_last_rung(child: Child) -> None:
    status, _result, _ = await run(child, "trap-term")
    assert status == "completed"
    started = time.monotonic()
    rung = await child.close(0.2)
    assert rung is ShutdownRung.SIGKILL
    assert time.monotonic() - started < 2
    assert child.process.returncode is not None


@guards("lifecycle:kill-group")
async def test_killing_a_child_kills_everything_in_its_process_group(
    child: Child, tmp_path: Path
) -> None:
    marker = tmp_path / "grandchild.pid"
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, child, f"grandchild:{marker}")
        with anyio.fail_after(5):
            while not marker.exists() or not marker.read_text():
                await anyio.sleep(0.01)
        grandchild = psutil.Process(int(marker.read_text()))
        child.kill()
    with anyio.fail_after(5):
        while grandchild.is_running() and grandchild.status() != psutil.STATUS_ZOMBIE:
            await anyio.sleep(0.01)
    await child.close(0)


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        pytest.param("bad-protocol", "protocol 999", id="another-protocol-version"),
        pytest.param("silent", "no answer within 0.3 s", id="never-answers"),
        pytest.param("die-at-start", "cannot load", id="dies-while-loading"),
    ],
)
async def test_a_sandbox_that_cannot_announce_itself_is_reported_unusable_at_start_up(
    tmp_path: Path, mode: str, problem: str
) -> None:
    deno = write_fake_deno(tmp_path, mode)
    settings = SandboxSettings(deno_path=str(deno), spawn_timeout_s=0.3)
    pool = SandboxPool(settings, tmp_path / "runner.js")
    with pytest.raises(SandboxUnavailable, match="cannot start the sandbox") as caught:
        await pool.check()
    assert problem in str(caught.value)


async def test_a_child_that_dies_while_loading_fails_its_execution_saying_how(
    tmp_path: Path,
) -> None:
    # Children are handed out without a handshake: the execution notices.
    deno = write_fake_deno(tmp_path, "die-at-start")
    child = await SandboxPool(SandboxSettings(deno_path=str(deno)), tmp_path / "runner.js").spawn(8)
    try:
        status, error, output = await run(child, "echo:never")
    finally:
        await child.close(0)
    assert status == "failed"
    assert error is not None
    assert "ended without a result (exit status 3)" in error
    assert output == []


async def test_a_missing_deno_binary_is_reported_unusable_at_start_up(tmp_path: Path) -> None:
    settings = SandboxSettings(deno_path=str(tmp_path / "no-such-deno"))
    with pytest.raises(SandboxUnavailable, match="no-such-deno"):
        await SandboxPool(settings, tmp_path / "runner.js").check()


def test_no_child_is_left_behind_by_this_module() -> None:
    leftovers = [p for p in psutil.Process(os.getpid()).children(recursive=True) if p.is_running()]
    assert [p for p in leftovers if p.status() != psutil.STATUS_ZOMBIE] == []
