"""Speed benchmark: mcp-v8 against references measured in the same run.

Run from the repository root::

    .venv/bin/python -m bench.run                  # full run, ~60 s
    .venv/bin/python -m bench.run --quick          # ~25 s
    .venv/bin/python -m bench.run --json out.json  # also write the figures
    .venv/bin/python -m bench.run --profile [cpu|wall]  # then profile the engine

What is measured (1-5: stateless ``1+1``; 6-8: stateful):

1. the bare ceiling: ``deno run`` of an empty script with exactly the argv and
   environment of a sandbox child, in one loop per core; measured in two
   halves, at the start and at the end of the run, so drift shows;
2. engine throughput: executions completed per second through
   :class:`supervisor.executions.Engine` in this process, with twice
   ``max_concurrent_executions`` in flight (then, for reference, the engine's
   own sequential latency, without HTTP);
3. REST throughput: the real server (``mcp-v8 --stateless --http-port``) as a
   subprocess, driven by ``httpx.AsyncClient`` with 4 executions in flight;
4. REST latency at low load: sequential ``POST /api/exec`` then
   ``GET /api/executions/{id}?wait=10``, pausing between iterations so the
   pool refills;
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
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import math
import os
import pstats
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import anyio
import httpx
import psutil

from supervisor.app import running
from supervisor.config import HttpSettings, SandboxSettings, Settings, StorageSettings
from supervisor.executions import Engine, RunRequest, build_run_request
from supervisor.heaps import CachedSnapshotStore, S3SnapshotStore, SnapshotStore
from supervisor.sandbox.argv import child_env, deno_argv
from supervisor.store import ExecutionRecord, ExecutionStatus

CODE = "1+1"
EXPECTED = "2"

THROUGHPUT_TARGET = 0.8
P50_TARGET_MS = 5.0
P99_TARGET_MS = 20.0
STATEFUL_TARGET = 0.5  # stateful exec/s over stateless engine exec/s, at least
SNAPSHOT_TARGET = 2.0  # snapshot + restore over raw v8.serialize + v8.deserialize, at most

# The small heap every stateful 1+1 resumes from.
SMALL_STATE = "var counter = 0; const config = {a: 1, b: [1, 2, 3]}"
# About 6 MB of JS heap: 100k small objects (about 4 MB serialized).
BIG_STATE = (
    "globalThis.items = Array.from({length: 100000}, "
    '(_, i) => ({id: i, name: "item" + i, v: i * 1.5}))'
)
BIG_HEAP_MB = 256
# A run that fails takes no snapshot: resuming with it costs the restore alone.
RESTORE_ONLY = 'throw new Error("restore only")'
ONE = "1"
CACHE_GETS = 20


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """How long each part runs."""

    ceiling_half_s: float  # each of the two ceiling halves
    warmup_s: float
    engine_s: float
    rest_s: float
    rest_concurrency: int
    latency_warmup: int
    latency_iterations: int
    engine_latency_iterations: int
    latency_pause_s: float
    floor_s: float
    stateful_s: float  # the stateful throughput window
    snapshot_reps: int  # repetitions of each snapshot-cost measurement (median kept)
    snapshot_pause_s: float  # between sequential runs there, so the pool refills


FULL = Plan(
    ceiling_half_s=2.5,
    warmup_s=0.7,
    engine_s=5.0,
    rest_s=5.0,
    rest_concurrency=4,
    latency_warmup=30,
    latency_iterations=300,
    engine_latency_iterations=150,
    latency_pause_s=0.025,
    floor_s=1.0,
    stateful_s=5.0,
    snapshot_reps=5,
    snapshot_pause_s=0.15,
)
QUICK = Plan(
    ceiling_half_s=1.0,
    warmup_s=0.4,
    engine_s=2.0,
    rest_s=2.0,
    rest_concurrency=4,
    latency_warmup=15,
    latency_iterations=100,
    engine_latency_iterations=50,
    latency_pause_s=0.025,
    floor_s=0.3,
    stateful_s=2.0,
    snapshot_reps=3,
    snapshot_pause_s=0.1,
)


# --------------------------------------------------------------------------- CPU accounting


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


# --------------------------------------------------------------------------- cleanup


_popen_lock = threading.Lock()
_popens: set[subprocess.Popen[bytes]] = set()


def _track(proc: subprocess.Popen[bytes]) -> None:
    with _popen_lock:
        _popens.add(proc)


def _untrack(proc: subprocess.Popen[bytes]) -> None:
    with _popen_lock:
        _popens.discard(proc)


def kill_leftovers() -> None:
    """SIGKILL every process this benchmark started that is still alive, by pid."""
    with _popen_lock:
        tracked = list(_popens)
    for proc in tracked:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    for proc in tracked:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
T = TypeVar("T")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP outside an event loop: unwind like Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signum}")


def _install_stop_handlers() -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _interrupt)


def run_async(func: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run`` with a clean stop on SIGTERM/SIGHUP (and Ctrl-C, which anyio handles).

    Raising from a signal handler in the middle of the event loop would skip the
    supervisor's own cleanup; here the signal cancels the work instead, then
    :class:`KeyboardInterrupt` is raised once everything has unwound.
    """

    async def main() -> tuple[bool, list[T]]:
        interrupted = False
        result: list[T] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
                    async for _ in signals:
                        interrupted = True
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            result.append(await func())
            tg.cancel_scope.cancel()
        return interrupted, result

    try:
        interrupted, result = anyio.run(main)
    finally:
        _install_stop_handlers()  # asyncio resets them to SIG_DFL on the way out
    if interrupted or not result:
        raise KeyboardInterrupt("stopped by a signal")
    return result[0]


# --------------------------------------------------------------------------- 1. ceiling


def deno_binary() -> str:
    """The Deno the server uses by default (the pinned one in the venv)."""
    try:
        import deno

        return str(deno.find_deno_bin())
    except (ImportError, FileNotFoundError):
        return "deno"


def measure_ceiling(deno: str, tmp: Path, plan: Plan) -> Throughput:
    """``deno run`` of an empty script, one loop per core, with a sandbox child's argv and env."""
    loops = os.cpu_count() or 1
    script = tmp / "empty.js"
    script.write_text("")
    heap = SandboxSettings(deno_path=deno).heap_memory_max_mb
    argv = deno_argv(deno, str(script), heap_memory_max_mb=heap)
    env = child_env()
    stop = threading.Event()
    finished: list[float] = []
    failures: list[int] = []

    def loop() -> None:
        while not stop.is_set():
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            _track(proc)
            rc = proc.wait()
            _untrack(proc)
            if rc == 0:
                finished.append(time.perf_counter())
            else:
                failures.append(rc)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(loops)]
    try:
        for t in threads:
            t.start()
        time.sleep(plan.warmup_s / 2)
        before = cpu_sample()
        time.sleep(plan.ceiling_half_s)
        after = cpu_sample()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    return Throughput(
        completed=count_in_window(finished, before["wall"], after["wall"]),
        window_s=after["wall"] - before["wall"],
        failures=len(failures),
        cpu_s=cpu_delta(before, after),
    )


def combine(a: Throughput, b: Throughput) -> Throughput:
    return Throughput(
        completed=a.completed + b.completed,
        window_s=a.window_s + b.window_s,
        failures=a.failures + b.failures,
        cpu_s={k: a.cpu_s[k] + b.cpu_s[k] for k in a.cpu_s if k in b.cpu_s},
    )


# --------------------------------------------------------------------------- 2. engine


@dataclass
class EngineRun:
    throughput: Throughput
    sandbox_version: str
    max_concurrent: int
    in_flight: int
    latency: Latency | None = None
    profile: str | None = None


async def _windowed(
    workers: int,
    one: Callable[[], Awaitable[bool]],
    warmup_s: float,
    window_s: float,
    sample: Callable[[], dict[str, float]],
) -> Throughput:
    """Run ``workers`` loops of ``one`` (True: a correct completion) and count a window."""
    finished: list[float] = []
    failures: list[int] = []
    stamps: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    stop_at = t0 + warmup_s + window_s

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            if await one():
                finished.append(time.perf_counter())
            else:
                failures.append(1)

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


async def measure_engine(
    deno: str, data_dir: Path, plan: Plan, *, profile: str | None = None
) -> EngineRun:
    """Sustained ``1+1`` executions through the engine in this process, then latency.

    With ``profile`` ("cpu": a sampling profiler on CPU time; "wall": cProfile),
    the throughput window is profiled and the sequential latency part is skipped.
    """
    settings = Settings(
        sandbox=SandboxSettings(deno_path=deno),
        http=HttpSettings(),
        storage=StorageSettings(data_dir=data_dir, stateless=True),
    )
    request = build_run_request(settings.sandbox, CODE)
    in_flight = 2 * settings.sandbox.max_concurrent_executions
    async with running(settings) as services:
        engine = services.engine

        async def one() -> bool:
            record = await engine.submit(request)
            final = await engine.wait(record.execution_id, 30)
            return final.status is ExecutionStatus.COMPLETED and final.result == EXPECTED

        profiler: Profiler | None = None
        if profile == "cpu":
            profiler = SamplingProfiler()
        elif profile == "wall":
            profiler = WallProfiler()
        # The profiler, if any, is on exactly during the counted window.
        edges = iter((profiler.start, profiler.stop)) if profiler else iter(())

        def sample() -> dict[str, float]:
            for toggle in edges:
                toggle()
                break
            return cpu_sample()

        await anyio.sleep(0.3)  # let the pool fill
        # Sampling needs a longer window to collect enough ticks.
        window_s = plan.engine_s * (3 if profile == "cpu" else 1)
        result = await _windowed(in_flight, one, plan.warmup_s, window_s, sample)
        latency = None
        if profile is None:
            latency = Latency([], [], [], 0)
            iterations = plan.engine_latency_iterations
            for i in range(plan.latency_warmup + iterations):
                await anyio.sleep(plan.latency_pause_s)
                t0 = time.perf_counter()
                record = await engine.submit(request)
                t1 = time.perf_counter()
                final = await engine.wait(record.execution_id, 10)
                t2 = time.perf_counter()
                if i < plan.latency_warmup:
                    continue
                if final.result != EXPECTED:
                    latency.failures += 1
                    continue
                latency.total_ms.append(1000 * (t2 - t0))
                latency.submit_ms.append(1000 * (t1 - t0))
                latency.wait_ms.append(1000 * (t2 - t1))
    report = None
    if profiler is not None:
        report = profiler.report(result.completed, result.cpu_ms_per("bench"))
    return EngineRun(
        throughput=result,
        sandbox_version=services.sandbox_version,
        max_concurrent=settings.sandbox.max_concurrent_executions,
        in_flight=in_flight,
        latency=latency,
        profile=report,
    )


class Profiler:
    """Profiles the event-loop thread between ``start`` and ``stop``."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def report(self, executions: int, cpu_ms_per_exec: float | None) -> str:
        raise NotImplementedError


_Key = tuple[str, int, str]  # filename, first line, function name


def _where(key: _Key) -> str:
    filename, line, name = key
    filename = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", filename)
    filename = filename.replace(str(Path.cwd()) + "/", "")
    return f"{name} ({filename}:{line})" if line else name


def _top_lines(rows: list[tuple[_Key, float, float]], n: int, top: int, unit: str) -> list[str]:
    """``rows`` of (key, value, count): the ``top`` largest values, per execution."""
    out: list[str] = []
    for key, value, count in sorted(rows, key=lambda r: r[1], reverse=True)[:top]:
        out.append(f"  {1000 * value / n:8.3f} ms {count / n:7.2f}{unit}  {_where(key)}")
    return out


class SamplingProfiler(Profiler):
    """Samples the main thread's stack every ``interval_s`` of process CPU time.

    ``ITIMER_PROF`` counts user and system time of the whole process, so kernel
    work done in a syscall (fork/exec, cgroupfs writes) lands on its caller.
    Low overhead, unlike cProfile with a CPU clock; statistical, of course, and
    coarse: the kernel fires the timer on scheduler ticks.
    """

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.stacks: dict[tuple[_Key, ...], int] = {}
        self._previous: Any = None

    def _on_signal(self, _signum: int, frame: FrameType | None) -> None:
        stack: list[_Key] = []
        while frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, code.co_firstlineno, code.co_name))
            frame = frame.f_back
        key = tuple(stack)
        self.stacks[key] = self.stacks.get(key, 0) + 1

    def start(self) -> None:
        self._previous = signal.signal(signal.SIGPROF, self._on_signal)
        signal.setitimer(signal.ITIMER_PROF, self.interval_s, self.interval_s)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)

    def report(self, executions: int, cpu_ms_per_exec: float | None, top: int = 25) -> str:
        n = max(1, executions)
        samples = sum(self.stacks.values())
        # The timer only fires on scheduler ticks, however short the interval: weigh
        # each sample by the CPU time rusage measured over the same window.
        ms_per_sample = (cpu_ms_per_exec or 0.0) * n / max(1, samples)
        own: dict[_Key, int] = {}
        inclusive: dict[_Key, int] = {}
        for stack, count in self.stacks.items():
            if stack:
                own[stack[0]] = own.get(stack[0], 0) + count
            for key in set(stack):
                inclusive[key] = inclusive.get(key, 0) + count

        def rows(counts: dict[_Key, int]) -> list[str]:
            ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)
            ranked = [
                (k, c)
                for k, c in ranked
                if k[2] not in ("_run_once", "run_forever", "run_until_complete", "run", "_run")
                and k[0] != __file__
                and not k[0].startswith("<frozen runpy")
                and k[2] != "<module>"
            ]
            return [
                f"  {count * ms_per_sample / n:8.3f} ms {100 * count / max(1, samples):5.1f} %  "
                f"{_where(key)}"
                for key, count in ranked[:top]
            ]

        return (
            "\n".join(
                [
                    f"CPU sampling profile of the engine throughput window: {executions} "
                    f"executions, {samples} stack samples (SIGPROF on process CPU time),",
                    f"  scaled to the {_ms(cpu_ms_per_exec)} ms of supervisor CPU per execution "
                    "that rusage measured (statistical: +-1/sqrt(samples) per line)",
                    "",
                    f"  top {top} by own CPU: ms per execution, share of samples",
                    *rows(own),
                    "",
                    f"  top {top} by inclusive CPU (callees included)",
                    *rows(inclusive),
                ]
            )
            + "\n"
        )


class WallProfiler(Profiler):
    """cProfile with its default (wall) clock, in the event-loop thread.

    Time blocked in a call (fork/exec, a thread start, a slow cgroupfs write)
    counts, which matters for latency: nothing else runs on the loop meanwhile.
    Time idle in ``epoll.poll`` is shown apart.
    """

    def __init__(self) -> None:
        self.profiler = cProfile.Profile()

    def start(self) -> None:
        self.profiler.enable()

    def stop(self) -> None:
        self.profiler.disable()

    def report(self, executions: int, cpu_ms_per_exec: float | None, top: int = 25) -> str:
        stats = pstats.Stats(self.profiler)
        raw: dict[_Key, tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
        n = max(1, executions)
        idle = sum(v[2] for k, v in raw.items() if "select.epoll" in k[2])
        total = sum(v[2] for v in raw.values())
        skip = ("_run_once", "run_forever", "run", "_run")
        kept = {k: v for k, v in raw.items() if "select.epoll" not in k[2] and k[2] not in skip}
        lines = [
            f"cProfile (wall clock, event-loop thread) of the engine throughput window "
            f"({executions} executions, profiler overhead included):",
            f"  {1000 * (total - idle) / n:.3f} ms outside epoll.poll + "
            f"{1000 * idle / n:.3f} ms idle in it, per execution",
            "",
            f"  top {top} by own time: ms per execution, calls per execution",
            *_top_lines([(k, v[2], v[1]) for k, v in kept.items()], n, top, "x"),
            "",
            f"  top {top} by cumulative time",
            *_top_lines([(k, v[3], v[1]) for k, v in kept.items()], n, top, "x"),
        ]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- 3, 4. REST


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mcp_v8_command() -> str:
    local = Path(sys.executable).parent / "mcp-v8"
    return str(local) if local.exists() else "mcp-v8"


@dataclass
class Server:
    base_url: str
    process: psutil.Process
    log: Path


@contextlib.contextmanager
def rest_server(deno: str, tmp: Path, timeout_s: float = 30.0) -> Iterator[Server]:
    """The real server as a subprocess, until it answers ``GET /api/executions``."""
    port = free_port()
    log = tmp / "server.log"
    argv = [
        mcp_v8_command(),
        "--stateless",
        "--http-port",
        str(port),
        "--data-dir",
        str(tmp / "rest-data"),
        "--deno-path",
        deno,
        "--log-level",
        "WARNING",
    ]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C is ours to handle; we stop it with SIGTERM
        )
    _track(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=base, timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with status {proc.returncode}:\n{_tail(log)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/api/executions", params={"limit": 1}).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the server did not answer in {timeout_s:g} s:\n{_tail(log)}"
                    )
                time.sleep(0.05)
        yield Server(base_url=base, process=psutil.Process(proc.pid), log=log)
    finally:
        stop_server(proc)
        _untrack(proc)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful: it stops its own children), then SIGKILL it and what it left."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.kill()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def measure_rest_throughput(server: Server, plan: Plan) -> Throughput:
    """POST /api/exec + GET ?wait=30 with ``rest_concurrency`` executions in flight."""
    n = plan.rest_concurrency
    limits = httpx.Limits(max_connections=2 * n, max_keepalive_connections=2 * n)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits) as client:

        async def one() -> bool:
            posted = await client.post("/api/exec", json={"code": CODE})
            if posted.status_code != 200:
                return False
            execution_id = posted.json()["execution_id"]
            got = await client.get(f"/api/executions/{execution_id}", params={"wait": "30"})
            body = got.json()
            return bool(
                got.status_code == 200
                and body["status"] == "completed"
                and body["result"] == EXPECTED
            )

        return await _windowed(
            n, one, plan.warmup_s, plan.rest_s, lambda: cpu_sample(server.process)
        )


def measure_rest_latency(server: Server, plan: Plan) -> Latency:
    """Sequential POST + GET ?wait=10 of ``1+1``, pausing so the pool refills."""
    result = Latency([], [], [], 0)
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        for i in range(plan.latency_warmup + plan.latency_iterations):
            time.sleep(plan.latency_pause_s)
            t0 = time.perf_counter()
            posted = client.post("/api/exec", json={"code": CODE})
            t1 = time.perf_counter()
            ok = posted.status_code == 200
            if ok:
                execution_id = posted.json()["execution_id"]
                got = client.get(f"/api/executions/{execution_id}", params={"wait": "10"})
                body = got.json()
                ok = got.status_code == 200 and body.get("result") == EXPECTED
            t2 = time.perf_counter()
            if i < plan.latency_warmup:
                continue
            if not ok:
                result.failures += 1
                continue
            result.total_ms.append(1000 * (t2 - t0))
            result.submit_ms.append(1000 * (t1 - t0))
            result.wait_ms.append(1000 * (t2 - t1))
    return result


# --------------------------------------------------------------------------- 5. floor


@dataclass
class Floor:
    eval_us: float
    evals: int
    fresh_context_us: float
    v8_version: str


def measure_floor(plan: Plan) -> Floor:
    """``1+1`` in-process with mini-racer: one warm context, and a fresh context per eval."""
    from py_mini_racer import MiniRacer

    ctx = MiniRacer()
    try:
        for _ in range(200):
            ctx.eval(CODE)
        batch = 500
        evals = 0
        t0 = time.perf_counter()
        while True:
            for _ in range(batch):
                ctx.eval(CODE)
            evals += batch
            elapsed = time.perf_counter() - t0
            if elapsed >= plan.floor_s:
                break
        eval_us = 1e6 * elapsed / evals
        version = str(ctx.v8_version)
    finally:
        ctx.close()
    fresh = 20
    t0 = time.perf_counter()
    for _ in range(fresh):
        other = MiniRacer()
        other.eval(CODE)
        other.close()
    fresh_us = 1e6 * (time.perf_counter() - t0) / fresh
    return Floor(eval_us=eval_us, evals=evals, fresh_context_us=fresh_us, v8_version=version)


# --------------------------------------------------------------------------- 6, 7, 8. stateful


def stateful_settings(deno: str, data_dir: Path, **sandbox: Any) -> Settings:
    """A stateful engine with its heaps and session log under ``data_dir``."""
    return Settings(
        sandbox=SandboxSettings(deno_path=deno, **sandbox),
        http=HttpSettings(),
        storage=StorageSettings(
            data_dir=data_dir,
            stateless=False,
            heap_dir=data_dir / "heaps",
            session_db_path=data_dir / "sessions",
        ),
    )


async def _run_to_end(engine: Engine, request: RunRequest) -> tuple[ExecutionRecord, float]:
    """Submit, wait for the final record; returns it with the ms from submit to completion."""
    t0 = time.perf_counter()
    record = await engine.submit(request)
    final = await engine.wait(record.execution_id, 120)
    return final, 1000 * (time.perf_counter() - t0)


@dataclass
class StatefulRun:
    throughput: Throughput
    in_flight: int
    heap: str
    runs: int  # all runs, warm-up included
    same_heap: int  # of those, runs whose output heap is their input heap (unchanged state)


async def measure_stateful(deno: str, data_dir: Path, plan: Plan) -> StatefulRun:
    """Sustained stateful ``1+1`` executions, each resuming from the same small heap."""
    settings = stateful_settings(deno, data_dir)
    in_flight = 2 * settings.sandbox.max_concurrent_executions
    async with running(settings) as services:
        engine = services.engine
        made, _ = await _run_to_end(
            engine, build_run_request(settings.sandbox, SMALL_STATE, stateful=True)
        )
        if made.status is not ExecutionStatus.COMPLETED or made.heap is None:
            raise RuntimeError(f"could not make the small heap: {made.status} {made.error}")
        heap = made.heap
        request = build_run_request(settings.sandbox, CODE, stateful=True, heap=heap)
        runs = same = 0

        async def one() -> bool:
            nonlocal runs, same
            record = await engine.submit(request)
            final = await engine.wait(record.execution_id, 30)
            runs += 1
            same += final.heap == heap
            return final.status is ExecutionStatus.COMPLETED and final.result == EXPECTED

        await anyio.sleep(0.3)  # let the pool fill
        result = await _windowed(in_flight, one, plan.warmup_s, plan.stateful_s, cpu_sample)
    return StatefulRun(throughput=result, in_flight=in_flight, heap=heap, runs=runs, same_heap=same)


def _big_state(rep: int) -> str:
    """The 6 MB state, with a per-repetition value: every snapshot is a new heap to write."""
    return f"{BIG_STATE}; globalThis.rep = {rep}"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class SnapshotCost:
    """Submit-to-completion times (ms) of stateless and stateful runs on the 6 MB state."""

    reps: int
    stateless_create: list[float] = field(default_factory=list)
    stateful_create: list[float] = field(default_factory=list)
    stateless_one: list[float] = field(default_factory=list)
    resume_one: list[float] = field(default_factory=list)
    stateless_throw: list[float] = field(default_factory=list)
    resume_throw: list[float] = field(default_factory=list)
    raw_serialize: list[float] = field(default_factory=list)
    raw_deserialize: list[float] = field(default_factory=list)
    heap_bytes: int = 0
    raw_bytes: int = 0
    heap: bytes = b""  # one of the heaps, for the cache check
    failures: list[str] = field(default_factory=list)

    @property
    def snapshot_ms(self) -> float:
        """Stateful minus stateless run of the code that builds the state."""
        return _median(self.stateful_create) - _median(self.stateless_create)

    @property
    def restore_ms(self) -> float:
        """Resuming with a failing cell (which takes no snapshot) minus the same, stateless."""
        return _median(self.resume_throw) - _median(self.stateless_throw)

    @property
    def resume_ms(self) -> float:
        """Resuming with ``1`` minus a stateless ``1``: restore and a new snapshot."""
        return _median(self.resume_one) - _median(self.stateless_one)

    @property
    def raw_ms(self) -> float:
        return _median(
            [s + d for s, d in zip(self.raw_serialize, self.raw_deserialize, strict=True)]
        )

    @property
    def ratio(self) -> float:
        raw = self.raw_ms
        return (self.snapshot_ms + self.restore_ms) / raw if raw > 0 else math.nan

    def as_json(self) -> dict[str, Any]:
        def rounded(values: list[float]) -> list[float]:
            return [round(v, 2) for v in values]

        return {
            "snapshot_ms": round(self.snapshot_ms, 2),
            "restore_ms": round(self.restore_ms, 2),
            "snapshot_plus_restore_ms": round(self.snapshot_ms + self.restore_ms, 2),
            "resume_with_1_ms": round(self.resume_ms, 2),
            "raw_serialize_ms": round(_median(self.raw_serialize), 2),
            "raw_deserialize_ms": round(_median(self.raw_deserialize), 2),
            "raw_ms": round(self.raw_ms, 2),
            "ratio": round(self.ratio, 3),
            "target": SNAPSHOT_TARGET,
            "pass": self.ratio <= SNAPSHOT_TARGET,
            "heap_bytes": self.heap_bytes,
            "raw_serialized_bytes": self.raw_bytes,
            "heap_memory_max_mb": BIG_HEAP_MB,
            "repetitions": self.reps,
            "runs_ms": {
                "stateless_create": rounded(self.stateless_create),
                "stateful_create": rounded(self.stateful_create),
                "stateless_1": rounded(self.stateless_one),
                "resume_1": rounded(self.resume_one),
                "stateless_throw": rounded(self.stateless_throw),
                "resume_throw": rounded(self.resume_throw),
                "raw_serialize": rounded(self.raw_serialize),
                "raw_deserialize": rounded(self.raw_deserialize),
            },
            "failures": self.failures,
        }


async def measure_snapshot_runs(deno: str, tmp: Path, plan: Plan) -> SnapshotCost:
    """The 6 MB state through a stateless engine, then a stateful one (both 256 MB children).

    Each is run once more than ``plan.snapshot_reps`` (the first is a warm-up),
    sequentially, pausing so the pool refills: the stateful and stateless times
    differ by the snapshot or restore alone, since everything else is the same.
    """
    cost = SnapshotCost(reps=plan.snapshot_reps)
    reps = range(-1, plan.snapshot_reps)  # -1: the warm-up, not kept

    def check(what: str, final: ExecutionRecord, ok: bool) -> None:
        if not ok:
            cost.failures.append(f"{what}: {final.status} {final.error or final.result}")

    stateless = Settings(
        sandbox=SandboxSettings(deno_path=deno, heap_memory_max_mb=BIG_HEAP_MB),
        http=HttpSettings(),
        storage=StorageSettings(data_dir=tmp / "snapshot-stateless", stateless=True),
    )
    sandbox = stateless.sandbox
    async with running(stateless) as services:
        engine = services.engine
        await anyio.sleep(0.3)
        for rep in reps:
            for code, into in (
                (_big_state(rep), cost.stateless_create),
                (ONE, cost.stateless_one),
                (RESTORE_ONLY, cost.stateless_throw),
            ):
                await anyio.sleep(plan.snapshot_pause_s)
                final, ms = await _run_to_end(engine, build_run_request(sandbox, code))
                completed = final.status is ExecutionStatus.COMPLETED
                check(f"stateless {code[:20]!r}", final, completed == (code != RESTORE_ONLY))
                if rep >= 0:
                    into.append(ms)

    settings = stateful_settings(deno, tmp / "snapshot-stateful", heap_memory_max_mb=BIG_HEAP_MB)
    async with running(settings) as services:
        engine = services.engine
        await anyio.sleep(0.3)
        for rep in reps:
            await anyio.sleep(plan.snapshot_pause_s)
            made, ms = await _run_to_end(
                engine, build_run_request(sandbox, _big_state(rep), stateful=True)
            )
            check("stateful create", made, made.heap is not None)
            if made.heap is None:
                continue
            if rep >= 0:
                cost.stateful_create.append(ms)
            await anyio.sleep(plan.snapshot_pause_s)
            final, ms = await _run_to_end(
                engine,
                build_run_request(sandbox, ONE, stateful=True, heap=made.heap),
            )
            check("resume 1", final, final.result == ONE)
            if rep >= 0:
                cost.resume_one.append(ms)
            await anyio.sleep(plan.snapshot_pause_s)
            final, ms = await _run_to_end(
                engine, build_run_request(sandbox, RESTORE_ONLY, stateful=True, heap=made.heap)
            )
            check("resume throw", final, final.heap is None and "restore only" in str(final.error))
            if rep >= 0:
                cost.resume_throw.append(ms)
            if not cost.heap and engine.heaps is not None:
                cost.heap = await engine.heaps.get(made.heap)
                cost.heap_bytes = len(cost.heap)
    return cost


RAW_SCRIPT = f"""\
import {{ deserialize, serialize }} from "node:v8";
{BIG_STATE};
const t0 = performance.now();
const bytes = serialize(globalThis.items);
const t1 = performance.now();
const back = deserialize(bytes);
const t2 = performance.now();
if (back.length !== 100000) throw new Error("round trip lost items");
const figures = {{ serialize_ms: t1 - t0, deserialize_ms: t2 - t1, bytes: bytes.byteLength }};
console.log(JSON.stringify(figures));
"""


def measure_raw_serializer(deno: str, tmp: Path, cost: SnapshotCost) -> None:
    """The reference: ``v8.serialize`` + ``v8.deserialize`` of the same state, in one Deno process.

    One fresh process per repetition, with a sandbox child's argv and environment,
    as each snapshot and restore also happens in a fresh child.
    """
    script = tmp / "raw-serializer.js"
    script.write_text(RAW_SCRIPT)
    argv = deno_argv(deno, str(script), heap_memory_max_mb=BIG_HEAP_MB)
    for _ in range(cost.reps):
        proc = subprocess.Popen(
            argv,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _track(proc)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            _untrack(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"the raw serializer script failed: {err.decode(errors='replace')}")
        figures = json.loads(out)
        cost.raw_serialize.append(float(figures["serialize_ms"]))
        cost.raw_deserialize.append(float(figures["deserialize_ms"]))
        cost.raw_bytes = int(figures["bytes"])


@dataclass
class CacheCheck:
    """A heap restored through the S3 cache: S3 requests counted, times of both paths."""

    gets: int
    heap_bytes: int
    put_requests: list[str]
    cached_requests: list[str]  # S3 requests made while restoring from the cache
    s3_requests: list[str]  # S3 requests of the uncached restores (for contrast)
    cached_ms: list[float]
    s3_ms: list[float]

    @property
    def ok(self) -> bool:
        return not self.cached_requests

    def as_json(self) -> dict[str, Any]:
        return {
            "restores": self.gets,
            "heap_bytes": self.heap_bytes,
            "s3_requests_during_cached_restores": len(self.cached_requests),
            "s3_requests_of_put": self.put_requests,
            "s3_requests_per_uncached_restore": (
                self.s3_requests[: len(self.s3_requests) // max(1, len(self.s3_ms))]
            ),
            "cached_restore_p50_ms": round(_median(self.cached_ms), 3),
            "s3_restore_p50_ms": round(_median(self.s3_ms), 3),
            "target_requests": 0,
            "pass": self.ok,
        }


async def _cache_restores(endpoint: str, cache_dir: Path, heap: bytes, reps: int) -> CacheCheck:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    bucket = "mcp-v8-bench"
    await anyio.to_thread.run_sync(partial(client.create_bucket, Bucket=bucket))
    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    s3 = S3SnapshotStore(bucket, client=client)
    cached = CachedSnapshotStore(s3, cache_dir, size_limit_bytes=1 << 30)
    try:
        digest = await cached.put(heap)
        put_requests = list(calls)

        async def restore(store: SnapshotStore) -> float:
            # What the engine does for a run with an input heap: exists, then get.
            t0 = time.perf_counter()
            if not await store.exists(digest) or await store.get(digest) != heap:
                raise RuntimeError("the stored heap did not come back")
            return 1000 * (time.perf_counter() - t0)

        calls.clear()
        cached_ms = [await restore(cached) for _ in range(CACHE_GETS)]
        cached_requests = list(calls)
        calls.clear()
        s3_ms = [await restore(s3) for _ in range(reps)]
        s3_requests = list(calls)
    finally:
        cached.close()
    return CacheCheck(
        gets=CACHE_GETS,
        heap_bytes=len(heap),
        put_requests=put_requests,
        cached_requests=cached_requests,
        s3_requests=s3_requests,
        cached_ms=cached_ms,
        s3_ms=s3_ms,
    )


def measure_cache(tmp: Path, heap: bytes, plan: Plan) -> CacheCheck:
    """``--cache-dir``: restores of a cached heap, over a real S3-protocol server (moto)."""
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")  # moto's server logs every request
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        return run_async(
            partial(
                _cache_restores,
                f"http://127.0.0.1:{port}",
                tmp / "heap-cache",
                heap or os.urandom(6 * 1024 * 1024),
                plan.snapshot_reps,
            )
        )
    finally:
        server.stop()
        werkzeug.setLevel(level)


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(heads: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(heads), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


@dataclass
class Results:
    plan_name: str
    ceiling_a: Throughput
    ceiling_b: Throughput
    engine: EngineRun
    rest: Throughput
    rest_in_flight: int
    latency: Latency
    floor: Floor
    stateful: StatefulRun
    snapshot: SnapshotCost
    cache: CacheCheck


def render(r: Results) -> tuple[str, dict[str, Any]]:
    """The printed report and the JSON figures."""
    ceiling = combine(r.ceiling_a, r.ceiling_b)
    ref = ceiling.per_s
    engine, rest, latency, floor = r.engine.throughput, r.rest, r.latency, r.floor
    engine_ratio = engine.per_s / ref if ref else 0.0
    rest_ratio = rest.per_s / ref if ref else 0.0
    p50, p90, p99 = latency.pct(50), latency.pct(90), latency.pct(99)
    engine_lat = r.engine.latency
    cores = os.cpu_count() or 1

    # CPU cost per execution, and the throughput ratio it implies on a CPU-bound machine:
    # robust to other load on the machine, which the measured ratios are not.
    ceiling_cost = ceiling.cpu_ms_per("bench_children") or math.nan
    engine_cost = engine.cpu_ms_total(("bench", "bench_children"))
    rest_cost = rest.cpu_ms_total(("server", "server_children"))
    rest_cost_all = rest.cpu_ms_total(("server", "server_children", "bench"))

    rows: list[tuple[str, ...]] = [
        (
            f"1 ceiling: deno run empty.js x{cores} loops",
            f"{ref:7.1f} runs/s",
            f"halves {r.ceiling_a.per_s:.1f} / {r.ceiling_b.per_s:.1f}",
            "reference",
            "",
        ),
        (
            f"2 engine throughput, {r.engine.in_flight} in flight",
            f"{engine.per_s:7.1f} exec/s",
            f"ceiling {ref:.1f}/s",
            f"{engine_ratio:.2f} >= {THROUGHPUT_TARGET}",
            verdict(engine_ratio >= THROUGHPUT_TARGET),
        ),
        (
            "  CPU cost ratio (if CPU-bound)",
            f"{engine_cost:7.2f} ms/exec",
            f"ceiling {ceiling_cost:.2f} ms/run",
            f"{ceiling_cost / engine_cost:.2f}" if engine_cost else "-",
            "info",
        ),
        (
            f"3 REST throughput, {r.rest_in_flight} in flight",
            f"{rest.per_s:7.1f} exec/s",
            f"ceiling {ref:.1f}/s",
            f"{rest_ratio:.2f} >= {THROUGHPUT_TARGET}",
            verdict(rest_ratio >= THROUGHPUT_TARGET),
        ),
        (
            "  CPU cost ratio, server only",
            f"{rest_cost:7.2f} ms/exec",
            f"ceiling {ceiling_cost:.2f} ms/run",
            f"{ceiling_cost / rest_cost:.2f}" if rest_cost else "-",
            "info",
        ),
        (
            "  CPU cost ratio, server + loadgen",
            f"{rest_cost_all:7.2f} ms/exec",
            f"ceiling {ceiling_cost:.2f} ms/run",
            f"{ceiling_cost / rest_cost_all:.2f}" if rest_cost_all else "-",
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
            f"raw {_median(snap.raw_serialize):.1f} / {_median(snap.raw_deserialize):.1f} ms",
            f"heap {snap.heap_bytes / 1e6:.1f} MB",
            "info",
        ),
        (
            "  resume with 1 (restore + new snapshot)",
            f"{snap.resume_ms:7.1f} ms",
            f"stateless 1: {_median(snap.stateless_one):.1f} ms",
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
            f"{_median(cache.cached_ms):.2f} / {_median(cache.s3_ms):.2f} ms",
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
                    _ms(ceiling.cpu_ms_per("bench_children")),
                    "-",
                    f"{ceiling.busy_cores:.2f}",
                    f"{ceiling.foreign_cores:.2f}",
                ),
                (
                    "engine, in-process",
                    _ms(engine.cpu_ms_per("bench")),
                    _ms(engine.cpu_ms_per("bench_children")),
                    "-",
                    f"{engine.busy_cores:.2f}",
                    f"{engine.foreign_cores:.2f}",
                ),
                (
                    "engine, stateful small heap",
                    _ms(stateful.cpu_ms_per("bench")),
                    _ms(stateful.cpu_ms_per("bench_children")),
                    "-",
                    f"{stateful.busy_cores:.2f}",
                    f"{stateful.foreign_cores:.2f}",
                ),
                (
                    "REST server + httpx loadgen",
                    _ms(rest.cpu_ms_per("server")),
                    _ms(rest.cpu_ms_per("server_children")),
                    _ms(rest.cpu_ms_per("bench")),
                    f"{rest.busy_cores:.2f}",
                    f"{rest.foreign_cores:.2f}",
                ),
            ],
        ),
        "deno: CPU of reaped children (for the engine and REST, sandbox children running the",
        "joined runner, not an empty script); foreign: cores busy with processes outside",
        "this benchmark.",
        "",
        "Caveats: everything shares the same cores. The REST load generator (httpx, in this",
        "process) competes with the server, so REST throughput is a lower bound. Other load",
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
        "latency": latency.failures,
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
            "halves_per_s": [round(r.ceiling_a.per_s, 2), round(r.ceiling_b.per_s, 2)],
        },
        "engine": {
            **engine.as_json(),
            "in_flight": r.engine.in_flight,
            "ratio": round(engine_ratio, 3),
            "cpu_cost_ratio": round(ceiling_cost / engine_cost, 3) if engine_cost else None,
            "target": THROUGHPUT_TARGET,
            "pass": engine_ratio >= THROUGHPUT_TARGET,
            "latency": engine_lat.as_json() if engine_lat is not None else None,
        },
        "rest": {
            **rest.as_json(),
            "in_flight": r.rest_in_flight,
            "ratio": round(rest_ratio, 3),
            "cpu_cost_ratio_server": round(ceiling_cost / rest_cost, 3) if rest_cost else None,
            "cpu_cost_ratio_with_loadgen": (
                round(ceiling_cost / rest_cost_all, 3) if rest_cost_all else None
            ),
            "target": THROUGHPUT_TARGET,
            "pass": rest_ratio >= THROUGHPUT_TARGET,
        },
        "latency": {
            **latency.as_json(),
            "p50_target_ms": P50_TARGET_MS,
            "p99_target_ms": P99_TARGET_MS,
            "pass": p50 <= P50_TARGET_MS and p99 <= P99_TARGET_MS,
        },
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


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~25 s run with shorter windows")
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

    _step("1/9 ceiling, first half")
    ceiling_a = measure_ceiling(deno, tmp, plan)
    _step("2/9 engine throughput (in-process)")
    engine = run_async(partial(measure_engine, deno, tmp / "engine-data", plan))
    _step("3/9 stateful engine throughput (small heap)")
    stateful = run_async(partial(measure_stateful, deno, tmp / "stateful-data", plan))
    _step("4/9 REST server start, latency")
    with rest_server(deno, tmp) as server:
        latency = measure_rest_latency(server, plan)
        _step("5/9 REST throughput")
        rest = run_async(partial(measure_rest_throughput, server, plan))
    _step("6/9 mini-racer floor")
    floor = measure_floor(plan)
    _step("7/9 snapshot and restore of 100k objects, raw v8 serializer")
    snapshot = run_async(partial(measure_snapshot_runs, deno, tmp, plan))
    measure_raw_serializer(deno, tmp, snapshot)
    _step("8/9 --cache-dir restores over moto S3")
    cache = measure_cache(tmp, snapshot.heap, plan)
    _step("9/9 ceiling, second half")
    ceiling_b = measure_ceiling(deno, tmp, plan)

    text, figures = render(
        Results(
            plan_name=plan_name,
            ceiling_a=ceiling_a,
            ceiling_b=ceiling_b,
            engine=engine,
            rest=rest,
            rest_in_flight=plan.rest_concurrency,
            latency=latency,
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
    _install_stop_handlers()
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
