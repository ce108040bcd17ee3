"""An engine with nothing to run leaves the CPU alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.conftest import EngineFactory, run

pytestmark = pytest.mark.anyio


def count_wakeups() -> tuple[list[int], Callable[[], None]]:
    """Count the times the event loop comes back from waiting for I/O or a timer."""
    selector: Any = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    select = selector.select
    count = [0]

    def counting(timeout: float | None = None) -> Any:
        events = select(timeout)
        count[0] += 1
        return events

    selector.select = counting
    return count, lambda: setattr(selector, "select", select)


async def test_an_idle_engine_does_not_wake_the_server_after_its_runs(
    engine_factory: EngineFactory,
) -> None:
    async with engine_factory() as services:
        record = await run(services, "console.log('hi'); 1")
        assert record.result == "1"
        await anyio.sleep(1)  # the pool has its replacement child again
        count, restore = count_wakeups()
        try:
            await anyio.sleep(1)
        finally:
            restore()
        # The sleep itself ends with one (two were seen); the output flusher used to add 20.
        assert count[0] <= 5, f"{count[0]} wakeups in a second with nothing to run"
        record = await run(services, "console.log('again'); 2")
        assert record.result == "2"
