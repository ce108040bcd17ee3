"""The printed report (tables) and the JSON figures."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from bench.cache import CacheCheck
from bench.engine import EngineRun
from bench.floor import Floor
from bench.interleave import Paired
from bench.plan import (
    BIG_HEAP_MB,
    BIG_STATE,
    CODE,
    P50_TARGET_MS,
    P99_TARGET_MS,
    SMALL_STATE,
    SNAPSHOT_TARGET,
    STATEFUL_TARGET,
    THROUGHPUT_TARGET,
)
from bench.stateful import SnapshotCost, StatefulRun
from bench.stats import Latency, Throughput, combine, fmt_ms, median


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _table(heads: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(heads), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


@dataclass
class Results:
    plan_name: str
    engine: EngineRun  # its throughput in rounds beside the ceiling
    rest: Paired
    rest_in_flight: int
    latency: Latency
    latency_httpx: Latency
    floor: Floor
    stateful: StatefulRun
    snapshot: SnapshotCost
    cache: CacheCheck


def render(r: Results) -> tuple[str, dict[str, Any]]:
    """The printed report and the JSON figures."""
    if r.engine.rounds is None:
        raise ValueError("the engine's throughput was not measured beside the ceiling")
    engine_rounds, rest_rounds = r.engine.rounds, r.rest
    # Each throughput against the ceiling slices it took turns with.
    engine_ceiling, rest_ceiling = engine_rounds.ceiling, rest_rounds.ceiling
    ceiling = combine(engine_ceiling, rest_ceiling)
    engine_ref, rest_ref = engine_ceiling.per_s, rest_ceiling.per_s
    engine, rest = engine_rounds.measured, rest_rounds.measured
    latency, floor = r.latency, r.floor
    engine_ratio, rest_ratio = engine_rounds.ratio, rest_rounds.ratio
    p50, p90, p99 = latency.pct(50), latency.pct(90), latency.pct(99)
    engine_lat = r.engine.latency
    cores = os.cpu_count() or 1

    # CPU cost per execution, and the throughput ratio it implies on a CPU-bound machine:
    # robust to other load on the machine, which the measured ratios are not.
    engine_ceiling_cost = engine_ceiling.cpu_ms_per("bench_children") or math.nan
    rest_ceiling_cost = rest_ceiling.cpu_ms_per("bench_children") or math.nan
    engine_cost = engine.cpu_ms_total(("bench", "bench_children"))
    rest_cost = rest.cpu_ms_total(("server", "server_children"))
    rest_cost_all = rest.cpu_ms_total(("server", "server_children", "bench"))

    rows: list[tuple[str, ...]] = [
        (
            f"1 ceiling: deno run empty.js x{cores} loops",
            f"{ceiling.per_s:7.1f} runs/s",
            f"slices: engine's {engine_ref:.1f}, REST's {rest_ref:.1f}",
            "reference",
            "",
        ),
        (
            f"2 engine throughput, {r.engine.in_flight} in flight",
            f"{engine.per_s:7.1f} exec/s",
            f"ceiling {engine_ref:.1f}/s",
            f"{engine_ratio:.2f} >= {THROUGHPUT_TARGET}",
            verdict(engine_ratio >= THROUGHPUT_TARGET),
        ),
        _rounds_row(engine_rounds),
        (
            "  CPU cost ratio (if CPU-bound)",
            f"{engine_cost:7.2f} ms/exec",
            f"ceiling {engine_ceiling_cost:.2f} ms/run",
            f"{engine_ceiling_cost / engine_cost:.2f}" if engine_cost else "-",
            "info",
        ),
        (
            f"3 REST throughput, {r.rest_in_flight} in flight",
            f"{rest.per_s:7.1f} exec/s",
            f"ceiling {rest_ref:.1f}/s",
            f"{rest_ratio:.2f} >= {THROUGHPUT_TARGET}",
            verdict(rest_ratio >= THROUGHPUT_TARGET),
        ),
        _rounds_row(rest_rounds),
        (
            "  CPU cost ratio, server only",
            f"{rest_cost:7.2f} ms/exec",
            f"ceiling {rest_ceiling_cost:.2f} ms/run",
            f"{rest_ceiling_cost / rest_cost:.2f}" if rest_cost else "-",
            "info",
        ),
        (
            "  CPU cost ratio, server + loadgen",
            f"{rest_cost_all:7.2f} ms/exec",
            f"ceiling {rest_ceiling_cost:.2f} ms/run",
            f"{rest_ceiling_cost / rest_cost_all:.2f}" if rest_cost_all else "-",
            "info",
        ),
        (
            "4 REST latency p50 (POST + GET ?wait)",
            f"{p50:7.2f} ms",
            f"target <= {P50_TARGET_MS:g} ms",
            f"{p50 / P50_TARGET_MS:.2f}x target",
            verdict(p50 <= P50_TARGET_MS),
        ),
        ("  REST latency p90", f"{p90:7.2f} ms", "", "", "info"),
        (
            "  REST latency p99",
            f"{p99:7.2f} ms",
            f"target <= {P99_TARGET_MS:g} ms",
            f"{p99 / P99_TARGET_MS:.2f}x target",
            verdict(p99 <= P99_TARGET_MS),
        ),
        (
            "  p50 of POST / of GET ?wait",
            f"{latency.pct(50, 'submit'):.2f} / {latency.pct(50, 'wait'):.2f} ms",
            "",
            "",
            "info",
        ),
        (
            "  same with httpx as the client, p50 / p99",
            f"{r.latency_httpx.pct(50):.2f} / {r.latency_httpx.pct(99):.2f} ms",
            "client CPU included",
            "",
            "info",
        ),
    ]
    if engine_lat is not None:
        rows.append(
            (
                "  engine in-process submit+wait p50/p99",
                f"{engine_lat.pct(50):.2f} / {engine_lat.pct(99):.2f} ms",
                "no HTTP",
                "",
                "info",
            )
        )
    rows += [
        (
            "5 floor: mini-racer eval 1+1 (warm ctx)",
            f"{floor.eval_us:7.1f} us",
            "",
            f"REST p50 = {1000 * p50 / floor.eval_us:.0f}x",
            "floor",
        ),
        (
            "  mini-racer new context + eval",
            f"{floor.fresh_context_us:7.1f} us",
            "",
            "",
            "info",
        ),
    ]

    stateful, snap, cache = r.stateful.throughput, r.snapshot, r.cache
    stateful_ratio = stateful.per_s / engine.per_s if engine.per_s else 0.0
    stateful_cost = stateful.cpu_ms_total(("bench", "bench_children"))
    snap_total = snap.snapshot_ms + snap.restore_ms
    rows += [
        (
            f"6 stateful 1+1 on a small heap, {r.stateful.in_flight} in flight",
            f"{stateful.per_s:7.1f} exec/s",
            f"stateless engine {engine.per_s:.1f}/s",
            f"{stateful_ratio:.2f} >= {STATEFUL_TARGET}",
            verdict(stateful_ratio >= STATEFUL_TARGET),
        ),
        (
            "  CPU cost ratio (if CPU-bound)",
            f"{stateful_cost:7.2f} ms/exec",
            f"stateless {engine_cost:.2f} ms/exec",
            f"{engine_cost / stateful_cost:.2f}" if stateful_cost else "-",
            "info",
        ),
        (
            "7 snapshot + restore, 100k objects",
            f"{snap_total:7.1f} ms",
            f"raw v8 ser+de {snap.raw_ms:.1f} ms",
            f"{snap.ratio:.2f} <= {SNAPSHOT_TARGET}",
            verdict(snap.ratio <= SNAPSHOT_TARGET),
        ),
        (
            "  snapshot / restore (differences of medians)",
            f"{snap.snapshot_ms:.1f} / {snap.restore_ms:.1f} ms",
            f"raw {median(snap.raw_serialize):.1f} / {median(snap.raw_deserialize):.1f} ms",
            f"heap {snap.heap_bytes / 1e6:.1f} MB",
            "info",
        ),
        (
            "  resume with 1 (restore + new snapshot)",
            f"{snap.resume_ms:7.1f} ms",
            f"stateless 1: {median(snap.stateless_one):.1f} ms",
            "",
            "info",
        ),
        (
            f"8 --cache-dir: S3 requests in {cache.gets} restores",
            f"{len(cache.cached_requests):7d}",
            "target 0",
            "",
            verdict(cache.ok),
        ),
        (
            "  restore (exists + get) cached / from S3",
            f"{median(cache.cached_ms):.2f} / {median(cache.s3_ms):.2f} ms",
            f"{cache.heap_bytes / 1e6:.1f} MB, moto on loopback",
            "",
            "info",
        ),
    ]

    lines = [
        f"mcp-v8 speed benchmark ({r.plan_name}): {r.engine.sandbox_version}, "
        f"{cores} CPUs, max_concurrent_executions={r.engine.max_concurrent}, code {CODE!r}",
        "",
        *_table(("measure", "figure", "reference", "ratio / target", ""), rows),
        "",
        "CPU per completed execution in ms (rusage and psutil at the window edges):",
        *_table(
            ("", "supervisor", "deno", "loadgen", "cores busy", "foreign cores"),
            [
                (
                    "ceiling (empty script)",
                    "-",
                    fmt_ms(ceiling.cpu_ms_per("bench_children")),
                    "-",
                    f"{ceiling.busy_cores:.2f}",
                    f"{ceiling.foreign_cores:.2f}",
                ),
                (
                    "engine, in-process",
                    fmt_ms(engine.cpu_ms_per("bench")),
                    fmt_ms(engine.cpu_ms_per("bench_children")),
                    "-",
                    f"{engine.busy_cores:.2f}",
                    f"{engine.foreign_cores:.2f}",
                ),
                (
                    "engine, stateful small heap",
                    fmt_ms(stateful.cpu_ms_per("bench")),
                    fmt_ms(stateful.cpu_ms_per("bench_children")),
                    "-",
                    f"{stateful.busy_cores:.2f}",
                    f"{stateful.foreign_cores:.2f}",
                ),
                (
                    "REST server + loadgen",
                    fmt_ms(rest.cpu_ms_per("server")),
                    fmt_ms(rest.cpu_ms_per("server_children")),
                    fmt_ms(rest.cpu_ms_per("bench")),
                    f"{rest.busy_cores:.2f}",
                    f"{rest.foreign_cores:.2f}",
                ),
            ],
        ),
        "deno: CPU of reaped children (for the engine and REST, sandbox children running the",
        "joined runner, not an empty script); foreign: cores busy with processes outside",
        "this benchmark.",
        *_budget_lines(ceiling, engine, rest),
        "",
        "Caveats: everything shares the same cores. The REST load generator (a minimal",
        "keep-alive HTTP/1.1 client in this process, bench/loadgen.py, also used for the",
        "latency target) competes with the server, so REST throughput is a lower bound. Other load",
        "on the machine (foreign cores) distorts the measured ratios; the CPU cost ratios",
        "do not depend on it. Absolute figures drift 10-15 % between runs; ratios less.",
        "",
        f"Snapshot and restore ({snap.reps} runs each, {BIG_HEAP_MB} MB heap limit, sequential):",
        "snapshot = stateful minus stateless run of the code that builds the state; restore =",
        "resuming with a failing cell (which takes no snapshot) minus the same cell stateless;",
        "raw = v8.serialize + v8.deserialize of the same array in one fresh Deno process.",
    ]
    foreign = max(
        ceiling.foreign_cores, engine.foreign_cores, rest.foreign_cores, stateful.foreign_cores
    )
    if foreign > 0.15:
        lines.append(
            f"WARNING: up to {foreign:.2f} cores were busy with other processes during the run."
        )
    failures = {
        "ceiling": ceiling.failures,
        "engine": engine.failures,
        "rest": rest.failures,
        "latency": latency.failures + r.latency_httpx.failures,
        "stateful": stateful.failures,
        "snapshot": len(snap.failures),
    }
    if any(failures.values()):
        lines.append(f"FAILURES (wrong or missing results): {failures}")
        lines.extend(f"  snapshot: {failure}" for failure in snap.failures[:5])

    figures: dict[str, Any] = {
        "plan": r.plan_name,
        "sandbox": r.engine.sandbox_version,
        "cpus": cores,
        "code": CODE,
        "max_concurrent_executions": r.engine.max_concurrent,
        "ceiling": {
            **ceiling.as_json(),
            "engine_slices_per_s": [round(c.per_s, 2) for c in engine_rounds.ceilings],
            "rest_slices_per_s": [round(c.per_s, 2) for c in rest_rounds.ceilings],
        },
        "engine": {
            **engine.as_json(),
            "in_flight": r.engine.in_flight,
            "ratio": round(engine_ratio, 3),
            "reference_per_s": round(engine_ref, 2),
            "round_ratios": [round(x, 3) for x in engine_rounds.round_ratios],
            "cpu_cost_ratio": (
                round(engine_ceiling_cost / engine_cost, 3) if engine_cost else None
            ),
            "target": THROUGHPUT_TARGET,
            "pass": engine_ratio >= THROUGHPUT_TARGET,
            "latency": engine_lat.as_json() if engine_lat is not None else None,
        },
        "rest": {
            **rest.as_json(),
            "in_flight": r.rest_in_flight,
            "ratio": round(rest_ratio, 3),
            "reference_per_s": round(rest_ref, 2),
            "round_ratios": [round(x, 3) for x in rest_rounds.round_ratios],
            "cpu_cost_ratio_server": (
                round(rest_ceiling_cost / rest_cost, 3) if rest_cost else None
            ),
            "cpu_cost_ratio_with_loadgen": (
                round(rest_ceiling_cost / rest_cost_all, 3) if rest_cost_all else None
            ),
            "target": THROUGHPUT_TARGET,
            "pass": rest_ratio >= THROUGHPUT_TARGET,
        },
        "latency": {
            **latency.as_json(),
            "p50_target_ms": P50_TARGET_MS,
            "p99_target_ms": P99_TARGET_MS,
            "pass": p50 <= P50_TARGET_MS and p99 <= P99_TARGET_MS,
            "client": "minimal keep-alive HTTP/1.1 (bench/loadgen.py)",
        },
        "latency_httpx": r.latency_httpx.as_json(),
        "floor": {
            "mini_racer_eval_us": round(floor.eval_us, 2),
            "mini_racer_new_context_us": round(floor.fresh_context_us, 1),
            "evals": floor.evals,
            "v8": floor.v8_version,
        },
        "stateful": {
            **stateful.as_json(),
            "in_flight": r.stateful.in_flight,
            "code": CODE,
            "heap_code": SMALL_STATE,
            "runs_all": r.stateful.runs,
            "runs_same_heap_out": r.stateful.same_heap,
            "stateless_engine_per_s": round(engine.per_s, 2),
            "ratio": round(stateful_ratio, 3),
            "cpu_cost_ratio": round(engine_cost / stateful_cost, 3) if stateful_cost else None,
            "target": STATEFUL_TARGET,
            "pass": stateful_ratio >= STATEFUL_TARGET,
        },
        "snapshot": {"state_code": BIG_STATE, **snap.as_json()},
        "cache": cache.as_json(),
        "failures": failures,
    }
    return "\n".join(lines), figures


def _rounds_row(rounds: Paired) -> tuple[str, ...]:
    ratios = rounds.round_ratios
    return (
        f"  {len(ratios)} rounds, ceiling and load in turns",
        f"{min(ratios):.2f}-{max(ratios):.2f}",
        "ratio of each round",
        "pooled above",
        "info",
    )


def _budget_lines(ceiling: Throughput, engine: Throughput, rest: Throughput) -> list[str]:
    """What a throughput ratio of THROUGHPUT_TARGET leaves per execution above the empty
    script, in CPU, against what the engine and REST spend there (the table above)."""
    figures = {
        "empty": ceiling.cpu_ms_per("bench_children"),
        "engine": engine.cpu_ms_per("bench"),
        "engine_deno": engine.cpu_ms_per("bench_children"),
        "server": rest.cpu_ms_per("server"),
        "rest_deno": rest.cpu_ms_per("server_children"),
        "client": rest.cpu_ms_per("bench"),
    }
    ms = {name: value for name, value in figures.items() if value is not None}
    if len(ms) < len(figures):
        return []
    budget = ms["empty"] * (1 / THROUGHPUT_TARGET - 1)
    engine_extra = ms["engine_deno"] - ms["empty"]
    rest_extra = ms["rest_deno"] - ms["empty"]
    engine_spent = ms["engine"] + engine_extra
    rest_spent = ms["server"] + rest_extra + ms["client"]
    return [
        f"Budget: a ratio of {THROUGHPUT_TARGET} leaves {budget:.2f} ms of CPU per execution "
        "above the empty script. Spent there:",
        f"  engine {engine_spent:.2f} ms (supervisor {ms['engine']:.2f}, children "
        f"{engine_extra:+.2f}); REST {rest_spent:.2f} ms (server {ms['server']:.2f}, "
        f"children {rest_extra:+.2f}, load generator {ms['client']:.2f}).",
    ]
