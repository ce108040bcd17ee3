"""A throughput and its ceiling, measured in alternating rounds.

The machine's speed moves within a minute (other virtual machines on the same
host): in one run, 3-second rounds of the REST load against the ceiling gave
ratios from 0.68 to 0.87. A window compared with a reference taken far from
it inherits that swing. Here both are measured in short rounds that take
turns, in ABBA order (ceiling first in even rounds, last in odd ones), so a
steady drift weighs on both alike; the ratio is that of the pooled counts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import reduce

import anyio

from bench.stats import Throughput, combine


@dataclass
class Paired:
    """Rounds of a measured throughput, each beside a slice of the ceiling."""

    ceilings: list[Throughput] = field(default_factory=list)
    windows: list[Throughput] = field(default_factory=list)

    @property
    def ceiling(self) -> Throughput:
        return reduce(combine, self.ceilings)

    @property
    def measured(self) -> Throughput:
        return reduce(combine, self.windows)

    @property
    def ratio(self) -> float:
        reference = self.ceiling.per_s
        return self.measured.per_s / reference if reference else 0.0

    @property
    def round_ratios(self) -> list[float]:
        return [
            w.per_s / c.per_s if c.per_s else 0.0
            for c, w in zip(self.ceilings, self.windows, strict=True)
        ]


async def paired(
    rounds: int,
    ceiling: Callable[[], Throughput],
    window: Callable[[], Awaitable[Throughput]],
) -> Paired:
    """``rounds`` of ``ceiling`` (blocking, run in a thread) and ``window``, in ABBA order."""
    result = Paired()

    async def take_ceiling() -> None:
        result.ceilings.append(await anyio.to_thread.run_sync(ceiling))

    async def take_window() -> None:
        result.windows.append(await window())

    for i in range(max(1, rounds)):
        order = (take_ceiling, take_window) if i % 2 == 0 else (take_window, take_ceiling)
        for step in order:
            await step()
    return result
