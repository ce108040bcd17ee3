"""Counting and CPU accounting: throughput windows, latency percentiles, medians."""

from __future__ import annotations

import contextlib
import inspect
import math
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import psutil


def _machine_busy_s() -> float:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return float(sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0))


def cpu_sample(server: psutil.Process | None = None) -> dict[str, float]:
    """CPU seconds consumed so far, by who consumed them, with a wall-clock stamp."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    sample = {
        "wall": time.perf_counter(),
        "bench": me.ru_utime + me.ru_stime,
        "bench_children": kids.ru_utime + kids.ru_stime,
        "machine": _machine_busy_s(),
    }
    if server is not None:
        with contextlib.suppress(psutil.Error):
            t = server.cpu_times()
            sample["server"] = t.user + t.system
            sample["server_children"] = t.children_user + t.children_system
    return sample


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Seconds spent between two samples, per key present in both."""
    return {k: after[k] - before[k] for k in before if k in after}


# Keys of a CPU sample that this benchmark's own processes account for.
OURS = ("bench", "bench_children", "server", "server_children")


@dataclass
class Throughput:
    """Completions counted in a steady-state window, with the CPU spent meanwhile."""

    completed: int
    window_s: float
    failures: int
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else 0.0

    def cpu_ms_per(self, key: str) -> float | None:
        if key not in self.cpu_s or self.completed == 0:
            return None
        return 1000.0 * self.cpu_s[key] / self.completed

    @property
    def busy_cores(self) -> float:
        """Cores the whole machine kept busy during the window."""
        return self.cpu_s.get("machine", 0.0) / self.window_s if self.window_s > 0 else 0.0

    @property
    def foreign_cores(self) -> float:
        """Cores busy with processes outside this benchmark (other users of the machine).

        Approximate: children count when reaped, so in-flight ones blur the edges.
        """
        ours = sum(v for k, v in self.cpu_s.items() if k in OURS)
        return max(0.0, self.busy_cores - ours / self.window_s) if self.window_s > 0 else 0.0

    def cpu_ms_total(self, keys: tuple[str, ...]) -> float:
        """CPU ms per execution summed over ``keys``."""
        return sum(self.cpu_ms_per(k) or 0.0 for k in keys)

    def as_json(self) -> dict[str, Any]:
        return {
            "per_s": round(self.per_s, 2),
            "completed": self.completed,
            "failures": self.failures,
            "window_s": round(self.window_s, 3),
            "busy_cores": round(self.busy_cores, 2),
            "foreign_cores": round(self.foreign_cores, 2),
            "cpu_ms_per_execution": {
                k: round(v, 3)
                for k in self.cpu_s
                if k != "wall" and (v := self.cpu_ms_per(k)) is not None
            },
        }


@dataclass
class Latency:
    """Sequential round trips: submit, then wait for the final record."""

    total_ms: list[float]
    submit_ms: list[float]
    wait_ms: list[float]
    failures: int

    def pct(self, q: float, which: str = "total") -> float:
        values: list[float] = sorted(getattr(self, f"{which}_ms"))
        if not values:
            return math.nan
        # nearest-rank percentile
        rank = max(1, math.ceil(q / 100 * len(values)))
        return values[rank - 1]

    def as_json(self) -> dict[str, Any]:
        return {
            "iterations": len(self.total_ms),
            "failures": self.failures,
            "p50_ms": round(self.pct(50), 3),
            "p90_ms": round(self.pct(90), 3),
            "p99_ms": round(self.pct(99), 3),
            "max_ms": round(max(self.total_ms, default=math.nan), 3),
            "mean_ms": round(statistics.fmean(self.total_ms), 3) if self.total_ms else None,
            "submit_p50_ms": round(self.pct(50, "submit"), 3),
            "wait_p50_ms": round(self.pct(50, "wait"), 3),
        }


def count_in_window(times: list[float], start: float, end: float) -> int:
    return sum(1 for t in times if start <= t <= end)


def combine(a: Throughput, b: Throughput) -> Throughput:
    return Throughput(
        completed=a.completed + b.completed,
        window_s=a.window_s + b.window_s,
        failures=a.failures + b.failures,
        cpu_s={k: a.cpu_s[k] + b.cpu_s[k] for k in a.cpu_s if k in b.cpu_s},
    )


async def windowed(
    workers: int,
    one: Callable[[], Awaitable[bool]] | Callable[[], bool],
    warmup_s: float,
    window_s: float,
    sample: Callable[[], dict[str, float]],
) -> Throughput:
    """Run ``workers`` loops of ``one`` (True: a correct completion) and count a window.

    ``one`` is a coroutine function, looped in a task per worker, or a plain
    (blocking) function, looped in a thread per worker.
    """
    finished: list[float] = []
    failures: list[int] = []
    stamps: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    stop_at = t0 + warmup_s + window_s

    def count(ok: bool) -> None:
        if ok:
            finished.append(time.perf_counter())
        else:
            failures.append(1)

    async def worker() -> None:
        if not inspect.iscoroutinefunction(one):
            await anyio.to_thread.run_sync(blocking_worker)
            return
        while time.perf_counter() < stop_at:
            count(await cast(Callable[[], Awaitable[bool]], one)())

    def blocking_worker() -> None:
        while time.perf_counter() < stop_at:
            count(cast(Callable[[], bool], one)())

    async def sampler() -> None:
        await anyio.sleep(warmup_s)
        stamps["before"] = sample()
        await anyio.sleep(window_s)
        stamps["after"] = sample()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler)
        for _ in range(workers):
            tg.start_soon(worker)
    before, after = stamps["before"], stamps["after"]
    return Throughput(
        completed=count_in_window(finished, before["wall"], after["wall"]),
        window_s=after["wall"] - before["wall"],
        failures=len(failures),
        cpu_s=cpu_delta(before, after),
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
