"""2. Engine throughput and sequential latency, in this process (optionally profiled)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from bench.interleave import Paired, paired
from bench.plan import CODE, EXPECTED, Plan
from bench.profiling import Profiler, SamplingProfiler, WallProfiler
from bench.stats import Latency, Throughput, cpu_sample, windowed
from supervisor.app import running, settle_gc
from supervisor.config import HttpSettings, SandboxSettings, Settings, StorageSettings
from supervisor.executions import build_run_request
from supervisor.store import ExecutionStatus


@dataclass
class EngineRun:
    throughput: Throughput
    sandbox_version: str
    max_concurrent: int
    in_flight: int
    latency: Latency | None = None
    profile: str | None = None
    # The throughput in rounds beside the ceiling (None when profiled).
    rounds: Paired | None = None


def stateless_settings(deno: str, data_dir: Path) -> Settings:
    """A stateless server's settings with defaults, its data in ``data_dir``."""
    return Settings(
        sandbox=SandboxSettings(deno_path=deno),
        http=HttpSettings(),
        storage=StorageSettings(data_dir=data_dir, stateless=True),
    )


async def measure_engine(
    deno: str,
    data_dir: Path,
    plan: Plan,
    *,
    ceiling: Callable[[], Throughput] | None = None,
    profile: str | None = None,
) -> EngineRun:
    """Sustained ``1+1`` executions through the engine in this process, then latency.

    With ``ceiling``, throughput is measured in ``plan.rounds`` windows taking
    turns with slices of it (:mod:`bench.interleave`), the engine idle
    meanwhile. With ``profile`` ("cpu": a sampling profiler on CPU time;
    "wall": cProfile), one longer window is profiled and the sequential
    latency part is skipped.
    """
    settings = stateless_settings(deno, data_dir)
    request = build_run_request(settings.sandbox, CODE)
    in_flight = 2 * settings.sandbox.max_concurrent_executions
    async with running(settings) as services:
        engine = services.engine
        settle_gc()  # as the server does once it has started

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
        rounds = None
        if ceiling is not None and profile is None:
            rounds = await paired(
                plan.rounds,
                ceiling,
                lambda: windowed(in_flight, one, plan.warmup_s, plan.engine_s, sample),
            )
            result = rounds.measured
        else:
            # Sampling needs a longer window to collect enough ticks.
            window_s = plan.engine_s * plan.rounds * (3 if profile == "cpu" else 1)
            result = await windowed(in_flight, one, plan.warmup_s, window_s, sample)
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
        rounds=rounds,
    )
