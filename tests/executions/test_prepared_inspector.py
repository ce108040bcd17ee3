"""Cells with top-level await get a child whose inspector is already connected
(supervisor/executions/warm.py), with the same results as in a plain child. Real Deno."""

from __future__ import annotations

import anyio
import pytest

from supervisor.app import Services
from supervisor.executions.warm import Key
from tests.conftest import EngineFactory, run, submit

pytestmark = [pytest.mark.anyio, pytest.mark.deno]

REPL = Key(repl=True)


async def _set_aside(services: Services, key: Key) -> int:
    """Wait until a child is set aside for ``key``; returns how many were handed out so far."""
    warm = services.engine.warm
    assert warm is not None
    with anyio.fail_after(30):
        while warm.ready != key:
            await anyio.sleep(0.02)
    return warm.handed_out


def test_the_key_of_a_cell_follows_the_runners_rule_for_repl_mode() -> None:
    assert Key.of("await x", ()) == REPL
    assert Key.of("for await (const x of y) {}", ("npm:a",)) == Key(("npm:a",), repl=True)
    assert not Key.of("awaited + 1", ())
    assert not Key.of("1 + 1", ())
    assert Key.of("1 + 1", ("npm:a",)) == Key(("npm:a",))


async def test_a_cell_with_await_after_another_runs_in_a_prepared_child(
    engine_factory: EngineFactory,
) -> None:
    async with engine_factory() as services:
        first = await run(services, "await Promise.resolve(20) + 1")
        assert (first.status.value, first.result) == ("completed", "21")
        handed_out = await _set_aside(services, REPL)

        second = await run(services, "let x = await Promise.resolve(2);\nconsole.log(x); x * 21")
        assert (second.status.value, second.result) == ("completed", "42")
        assert services.engine.warm is not None
        assert services.engine.warm.handed_out == handed_out + 1

        # Errors still point at the user's lines in a prepared child.
        await _set_aside(services, REPL)
        failed = await run(services, "await 0;\n\nnull.x")
        assert failed.status.value == "failed"
        assert failed.error is not None
        assert "TypeError" in failed.error
        assert "code.js:3:" in failed.error
        assert services.engine.warm.handed_out == handed_out + 2


async def test_a_cell_without_await_leaves_the_prepared_child_to_the_next_with_await(
    engine_factory: EngineFactory,
) -> None:
    async with engine_factory() as services:
        await run(services, "await 1")
        handed_out = await _set_aside(services, REPL)
        plain = await run(services, "1 + 1")
        assert plain.result == "2"
        assert services.engine.warm is not None
        assert services.engine.warm.handed_out == handed_out
        assert services.engine.warm.ready == REPL
        later = await run(services, "await Promise.resolve('later')")
        assert later.result == "later"
        assert services.engine.warm.handed_out == handed_out + 1


async def test_a_prepared_child_resumes_a_heap_and_snapshots_it(
    engine_factory: EngineFactory,
) -> None:
    async with engine_factory(stateful=True) as services:
        first = await run(services, "var n = await Promise.resolve(1); n")
        assert first.heap is not None
        handed_out = await _set_aside(services, REPL)
        second = await run(services, "n = await Promise.resolve(n + 1); n", heap=first.heap)
        assert (second.status.value, second.result) == ("completed", "2")
        assert services.engine.warm is not None
        assert services.engine.warm.handed_out == handed_out + 1
        assert second.heap is not None
        third = await run(services, "n", heap=second.heap)
        assert third.result == "2"


async def test_the_next_child_is_prepared_once_the_run_is_over_not_while_it_runs(
    engine_factory: EngineFactory,
) -> None:
    """Preparing it (a Deno start, the inspector) would compete with the run for the CPU."""
    async with engine_factory() as services:
        warm = services.engine.warm
        assert warm is not None
        record = await submit(services, "await new Promise((r) => setTimeout(r, 1500)); 'done'")
        await anyio.sleep(1.0)  # far longer than preparing a child takes
        assert warm.ready is None, "a child was prepared while the run that needs one ran"
        with anyio.fail_after(30):
            final = await services.engine.wait(record.execution_id)
        assert final.result == "done"
        await _set_aside(services, REPL)  # and once it is over, one is
