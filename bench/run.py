"""Speed benchmark: mcp-v8 against references measured in the same run.

Run from the repository root::

    .venv/bin/python -m bench.run                  # full run, ~85 s
    .venv/bin/python -m bench.run --quick          # ~30 s
    .venv/bin/python -m bench.run --json out.json  # also write the figures
    .venv/bin/python -m bench.run --profile [cpu|wall]  # then profile the engine

What is measured (1-5: stateless ``1+1``; 6-8: stateful):

1. the bare ceiling: ``deno run`` of an empty script with exactly the argv and
   environment of a sandbox child, in one loop per core; measured in slices
   that take turns with the throughput windows of 2 and 3 (``plan.rounds``
   each, in ABBA order, :mod:`bench.interleave`), each throughput compared
   with its own slices pooled: the machine's speed drifts within a minute;
2. engine throughput: executions completed per second through
   :class:`supervisor.executions.Engine` in this process, with twice
   ``max_concurrent_executions`` in flight (then, for reference, the engine's
   own sequential latency, without HTTP);
3. REST throughput: the real server (``mcp-v8 --stateless --http-port``) as a
   subprocess, driven by a minimal keep-alive HTTP/1.1 client (``loadgen``)
   with 4 executions in flight;
4. REST latency at low load: sequential ``POST /api/exec`` then
   ``GET /api/executions/{id}?wait=10``, pausing between iterations so the
   pool refills; with a minimal keep-alive client (the target) and, for
   information, with httpx, alternating;
5. the floor: ``1+1`` in-process with mini-racer (one warm V8 context);
6. stateful throughput: ``1+1`` through a stateful engine in this process (heaps
   and session log in a temporary directory), every run resuming from the same
   small heap, compared with the stateless engine figure of 2;
7. snapshot cost of a ~6 MB state (100k small objects; 256 MB heap limit),
   sequential runs, median of several: snapshot = the code that builds the
   state run statefully minus the same run stateless (creation cancels out);
   restore = resuming from that heap with a cell that throws (a failed run takes
   no snapshot) minus the same cell stateless; also, as the issue words it,
   resuming with ``1`` minus a stateless ``1`` (a restore plus a new snapshot).
   The reference: ``v8.serialize`` + ``v8.deserialize`` of the same array in one
   fresh Deno process with a sandbox child's argv and environment;
8. ``--cache-dir``: a :class:`CachedSnapshotStore` over an S3 store on a moto
   server on loopback; the S3 requests made while restoring a cached heap
   (``exists`` then ``get``, as the engine does) are counted (target 0), and
   cached restores are timed against uncached ones.

Throughput is counted in a steady-state window after a warm-up: completions
whose finish time falls inside the window, divided by its length. CPU time is
sampled at the window's edges (this process, its reaped children, the server
process and its reaped children, and the whole machine), which gives the CPU
cost of one execution, split by who spends it, without a profiler. The ratio
of CPU costs (ceiling CPU per run / CPU per execution) is printed beside each
measured throughput ratio: it does not depend on other load on the machine.

The parts live in their own modules: ``ceiling``, ``interleave``, ``engine``
(with ``profiling``), ``rest``, ``floor``, ``stateful`` (6, 7) and ``cache``
(8); ``plan`` holds the targets and durations, ``stats`` the counting and CPU
accounting, ``report`` the tables and JSON, ``procs`` the tracking and cleanup
of subprocesses. This module parses the arguments, runs the parts in order and
stops everything on Ctrl-C or SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from bench.cache import measure_cache
from bench.ceiling import deno_binary, measure_ceiling
from bench.engine import measure_engine
from bench.floor import measure_floor
from bench.interleave import paired
from bench.plan import FULL, QUICK
from bench.procs import install_stop_handlers, kill_leftovers, run_async
from bench.report import Results, render
from bench.rest import measure_rest_latency, measure_rest_throughput, rest_server
from bench.stateful import measure_raw_serializer, measure_snapshot_runs, measure_stateful


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~30 s run with shorter windows")
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    p.add_argument(
        "--profile",
        nargs="?",
        const="cpu",
        choices=["cpu", "wall"],
        help="afterwards, run the engine throughput window again under a profiler and print "
        "the top costs per execution: cpu (default) samples the stack on CPU time; wall "
        "is cProfile's wall clock, which also shows calls that block the event loop",
    )
    return p.parse_args(argv)


def _step(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace, tmp: Path) -> int:
    plan = QUICK if args.quick else FULL
    plan_name = "quick" if args.quick else "full"
    deno = deno_binary()
    started = time.perf_counter()

    # Engine and REST throughput each take turns with slices of the ceiling, their
    # reference: the machine's speed drifts within a minute.
    ceiling = partial(measure_ceiling, deno, tmp, plan)
    _step(f"1/8 engine throughput (in-process), {plan.rounds} rounds beside the ceiling")
    engine = run_async(partial(measure_engine, deno, tmp / "engine-data", plan, ceiling=ceiling))
    _step("2/8 REST server start")
    with rest_server(deno, tmp) as server:
        _step(f"3/8 REST throughput, {plan.rounds} rounds beside the ceiling")
        rest = run_async(
            partial(paired, plan.rounds, ceiling, partial(measure_rest_throughput, server, plan))
        )
        _step("4/8 REST latency")
        latency, latency_httpx = run_async(partial(measure_rest_latency, server, plan))
    _step("5/8 stateful engine throughput (small heap)")
    stateful = run_async(partial(measure_stateful, deno, tmp / "stateful-data", plan))
    _step("6/8 mini-racer floor")
    floor = measure_floor(plan)
    _step("7/8 snapshot and restore of 100k objects, raw v8 serializer")
    snapshot = run_async(partial(measure_snapshot_runs, deno, tmp, plan))
    measure_raw_serializer(deno, tmp, snapshot)
    _step("8/8 --cache-dir restores over moto S3")
    cache = measure_cache(tmp, snapshot.heap, plan)

    text, figures = render(
        Results(
            plan_name=plan_name,
            engine=engine,
            rest=rest,
            rest_in_flight=plan.rest_concurrency,
            latency=latency,
            latency_httpx=latency_httpx,
            floor=floor,
            stateful=stateful,
            snapshot=snapshot,
            cache=cache,
        )
    )
    figures["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(text)
    print(f"\n(total {figures['elapsed_s']} s)")

    if args.profile:
        _step(f"profiling the engine window ({args.profile})")
        profiled = run_async(
            partial(measure_engine, deno, tmp / "profile-data", plan, profile=args.profile)
        )
        print()
        print(profiled.profile)
        figures["profile_engine_per_s"] = round(profiled.throughput.per_s, 2)

    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_stop_handlers()
    try:
        with tempfile.TemporaryDirectory(prefix="mcp-v8-bench-") as name:
            try:
                return run_all(args, Path(name))
            finally:
                kill_leftovers()
    except KeyboardInterrupt:
        print("\ninterrupted; subprocesses stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
