"""Cost of TypeScript stripping through the warm helper, next to a JavaScript execution.

Run from the repository root::

    .venv/bin/python -m bench.typescript_bench

Measured in one event loop, in the same run:

- helper start: the first start in an empty cache (downloads amaro from the
  npm registry) and the median of later starts (amaro loaded from the cache);
- ``TypeStripper.strip`` latency for ``1 + 1``, for a 50-line TypeScript cell
  and for a cell with an enum (transformed in place), calls interleaved so
  drift hits all alike;
- 200 strips in flight at once (pipelined through the one helper);
- the reference: the engine's sequential ``1+1`` latency (submit + wait, no
  HTTP, stateless), as ``bench.run`` measures it. The issue's target is
  TypeScript ``1 + 1`` at most 1.2x JavaScript ``1 + 1``; since the engine
  strips before it queues, the projected ratio is
  ``(engine p50 + strip p50) / engine p50``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import deno
import psutil

from bench.engine import stateless_settings
from supervisor.app import running
from supervisor.executions import build_run_request
from supervisor.typescript import TypeStripper

RATIO_TARGET = 1.2

ONE_PLUS_ONE = "1 + 1"

FIFTY_LINES = """\
interface User {
  id: number;
  name: string;
  email?: string;
  roles: ReadonlyArray<Role>;
}
type Role = "admin" | "editor" | "viewer";
type Index<T> = Record<string, T>;

function byId<T extends { id: number }>(items: T[]): Map<number, T> {
  const out = new Map<number, T>();
  for (const item of items) out.set(item.id, item);
  return out;
}

class Repository<T extends { id: number }> {
  private items: T[] = [];
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  add(item: T): this {
    this.items.push(item);
    return this;
  }
  find(id: number): T | undefined {
    return this.items.find((i) => i.id === id);
  }
  get size(): number {
    return this.items.length;
  }
}

const users: User[] = [
  { id: 1, name: "Ada", roles: ["admin"] },
  { id: 2, name: "Linus", email: "l@example.com", roles: ["editor", "viewer"] },
];
const repo = new Repository<User>("users");
for (const u of users) repo.add(u);

function summary(u: User, index?: Index<number>): string {
  const roles = u.roles.join(",") as string;
  return `${u.name} <${u.email ?? "n/a"}> [${roles}] ${index?.[u.name] ?? 0}`;
}

const lookup = byId(users) satisfies Map<number, User>;
const first = lookup.get(1)!;
const total: number = users.reduce((n: number, u: User): number => n + u.roles.length, 0);
await Promise.resolve<void>(undefined);
[summary(first), repo.size, total, repo.find(2)?.name as string | undefined];
"""

ENUM_CELL = """\
enum Level { Low = 1, Mid = 5, High = 10 }
const pick = (l: Level): string => Level[l];
pick(Level.Mid)
"""

CELLS = {"one_plus_one": ONE_PLUS_ONE, "fifty_lines": FIFTY_LINES, "enum": ENUM_CELL}


def _percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _starts(deno_path: str, cache_dir: Path, warm_starts: int) -> tuple[float, list[float]]:
    """Milliseconds of the first start (empty cache) and of later starts."""
    times: list[float] = []
    for _ in range(1 + warm_starts):
        stripper = TypeStripper(deno_path, cache_dir)
        started = time.perf_counter()
        await stripper.start()
        times.append((time.perf_counter() - started) * 1000)
        await stripper.aclose()
    return times[0], times[1:]


async def _strips(
    stripper: TypeStripper, strips: int, warmup: int
) -> tuple[dict[str, list[float]], float]:
    """Microseconds per strip for each cell, and ms for 200 strips in flight at once."""
    names = list(CELLS)
    for _ in range(warmup):
        for name in names:
            await stripper.strip(CELLS[name])
    timings: dict[str, list[float]] = {name: [] for name in names}
    for i in range(strips):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter_ns()
            await stripper.strip(CELLS[name])
            timings[name].append((time.perf_counter_ns() - started) / 1000)
    burst_started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(stripper.strip, FIFTY_LINES)
    return timings, (time.perf_counter() - burst_started) * 1000


async def _engine_p50_ms(deno_path: str, data_dir: Path, iterations: int) -> float:
    """Sequential JavaScript ``1+1`` through the engine: submit + wait, p50 in ms."""
    settings = stateless_settings(deno_path, data_dir)
    request = build_run_request(settings.sandbox, "1+1")
    totals: list[float] = []
    async with running(settings) as services:
        engine = services.engine
        for i in range(iterations + 20):
            await anyio.sleep(0.025)  # let the pool refill, as bench.run does
            started = time.perf_counter()
            record = await engine.submit(request)
            final = await engine.wait(record.execution_id, 10)
            if i >= 20 and final.result == "2":
                totals.append((time.perf_counter() - started) * 1000)
    return statistics.median(totals)


def typescript_overhead(
    strips: int = 2000, warmup: int = 200, engine_iterations: int = 100
) -> dict[str, Any]:
    """Strip latency (p50) for ``1 + 1`` and a 50-line cell; prints a few lines, returns figures."""
    deno_path = str(deno.find_deno_bin())

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp:
            cache_dir = Path(tmp) / "ts-cache"
            first_ms, warm_ms = await _starts(deno_path, cache_dir, 5)
            stripper = TypeStripper(deno_path, cache_dir)
            await stripper.start()
            try:
                timings, burst_ms = await _strips(stripper, strips, warmup)
                assert stripper.pid is not None
                rss_mb = psutil.Process(stripper.pid).memory_info().rss / 2**20
            finally:
                await stripper.aclose()
            engine_ms = await _engine_p50_ms(deno_path, Path(tmp) / "engine", engine_iterations)
        figures: dict[str, Any] = {
            "strips": strips,
            "first_start_ms": round(first_ms, 1),
            "warm_start_ms": round(statistics.median(warm_ms), 1),
            "helper_rss_mb": round(rss_mb, 1),
            "burst_200_ms": round(burst_ms, 1),
        }
        for name, values in timings.items():
            ordered = sorted(values)
            figures[f"{name}_p50_us"] = round(_percentile(ordered, 50), 1)
            figures[f"{name}_p90_us"] = round(_percentile(ordered, 90), 1)
        figures["engine_js_p50_ms"] = round(engine_ms, 3)
        ratio = (engine_ms + figures["one_plus_one_p50_us"] / 1000) / engine_ms
        figures["projected_ts_over_js_ratio"] = round(ratio, 3)
        figures["ratio_target"] = RATIO_TARGET
        figures["pass"] = ratio <= RATIO_TARGET
        return figures

    figures = anyio.run(run)
    print(
        f"TypeScript strip (warm helper, {strips} strips each): "
        f"1 + 1 p50 {figures['one_plus_one_p50_us']:.0f} µs "
        f"(p90 {figures['one_plus_one_p90_us']:.0f}), "
        f"50-line cell p50 {figures['fifty_lines_p50_us']:.0f} µs "
        f"(p90 {figures['fifty_lines_p90_us']:.0f}), "
        f"enum cell p50 {figures['enum_p50_us']:.0f} µs; "
        f"200 in flight {figures['burst_200_ms']:.1f} ms"
    )
    print(
        f"TypeScript 1 + 1 vs JavaScript 1 + 1 through the engine: "
        f"{figures['engine_js_p50_ms']:.2f} ms + strip = "
        f"{figures['projected_ts_over_js_ratio']:.3f}x "
        f"(target <= {RATIO_TARGET}x: {'PASS' if figures['pass'] else 'MISS'}); helper start: "
        f"first (download) {figures['first_start_ms']:.0f} ms, cached "
        f"{figures['warm_start_ms']:.0f} ms, RSS {figures['helper_rss_mb']:.0f} MB"
    )
    return figures


if __name__ == "__main__":
    typescript_overhead()
