"""The benchmark compares a throughput with ceiling slices that took turns with it."""

from __future__ import annotations

import pytest

from bench.interleave import paired
from bench.stats import Throughput

pytestmark = pytest.mark.anyio


async def test_rounds_alternate_in_abba_order_and_pool_their_counts() -> None:
    order: list[str] = []
    ceiling_counts = iter([100, 120, 80])
    window_counts = iter([90, 60, 70])

    def ceiling() -> Throughput:
        order.append("ceiling")
        return Throughput(completed=next(ceiling_counts), window_s=1.0, failures=0)

    async def window() -> Throughput:
        order.append("window")
        return Throughput(completed=next(window_counts), window_s=1.0, failures=0)

    rounds = await paired(3, ceiling, window)

    # A drift that slows everything down over the run weighs on both alike.
    assert order == ["ceiling", "window", "window", "ceiling", "ceiling", "window"]
    assert rounds.ceiling.completed == 300
    assert rounds.measured.completed == 220
    # Pooled counts, not a mean of the rounds' ratios.
    assert rounds.ratio == pytest.approx(220 / 300)
    assert rounds.round_ratios == pytest.approx([0.9, 0.5, 70 / 80])
