"""When the pool starts replacement children (fake children: no Deno needed)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from supervisor.config import SandboxSettings
from supervisor.sandbox import SandboxPool
from supervisor.sandbox import pool as pool_module
from tests.fakes import write_fake_deno

pytestmark = pytest.mark.anyio

LONG_HOLD_OFF_S = 30.0


@pytest.fixture
def one_spawner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SandboxPool:
    monkeypatch.setattr(pool_module, "_HOLD_OFF_S", LONG_HOLD_OFF_S)
    settings = SandboxSettings(
        deno_path=str(write_fake_deno(tmp_path)),
        max_concurrent_executions=1,
        spawn_concurrency=1,
        shutdown_grace_s=0.2,
    )
    return SandboxPool(settings, tmp_path / "unused-runner.js")


async def test_at_low_load_a_replacement_waits_for_the_execution_it_would_compete_with(
    one_spawner: SandboxPool,
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(one_spawner.run)
        await anyio.sleep(1)  # a child is ready before anyone asks
        first = await one_spawner.acquire(8)
        with anyio.move_on_after(1) as waited:
            await one_spawner.acquire(8)
        assert waited.cancelled_caught, "no replacement while the first child still runs"
        await one_spawner.release(first)
        with anyio.fail_after(10):
            second = await one_spawner.acquire(8)
        await one_spawner.release(second)
        tg.cancel_scope.cancel()


async def test_when_executions_wait_for_children_replacements_start_at_once(
    one_spawner: SandboxPool,
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(one_spawner.run)
        first = await one_spawner.acquire(8)  # asked before any child was ready
        with anyio.fail_after(10):  # far less than the hold-off
            second = await one_spawner.acquire(8)
        await one_spawner.release(first)
        await one_spawner.release(second)
        tg.cancel_scope.cancel()
