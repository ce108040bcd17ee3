"""6, 7. Stateful throughput on a small heap; snapshot and restore cost of a 6 MB state."""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from bench.plan import (
    BIG_HEAP_MB,
    BIG_STATE,
    CODE,
    EXPECTED,
    ONE,
    RESTORE_ONLY,
    SMALL_STATE,
    SNAPSHOT_TARGET,
    Plan,
)
from bench.procs import track, untrack
from bench.stats import Throughput, cpu_sample, median, windowed
from supervisor.app import running, settle_gc
from supervisor.config import HttpSettings, SandboxSettings, Settings, StorageSettings
from supervisor.executions import Engine, RunRequest, build_run_request
from supervisor.sandbox.argv import child_env, deno_argv
from supervisor.store import ExecutionRecord, ExecutionStatus


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
        settle_gc()  # as the server does once it has started
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
        result = await windowed(in_flight, one, plan.warmup_s, plan.stateful_s, cpu_sample)
    return StatefulRun(throughput=result, in_flight=in_flight, heap=heap, runs=runs, same_heap=same)


def _big_state(rep: int) -> str:
    """The 6 MB state, with a per-repetition value: every snapshot is a new heap to write."""
    return f"{BIG_STATE}; globalThis.rep = {rep}"


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
        return median(self.stateful_create) - median(self.stateless_create)

    @property
    def restore_ms(self) -> float:
        """Resuming with a failing cell (which takes no snapshot) minus the same, stateless."""
        return median(self.resume_throw) - median(self.stateless_throw)

    @property
    def resume_ms(self) -> float:
        """Resuming with ``1`` minus a stateless ``1``: restore and a new snapshot."""
        return median(self.resume_one) - median(self.stateless_one)

    @property
    def raw_ms(self) -> float:
        return median(
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
            "raw_serialize_ms": round(median(self.raw_serialize), 2),
            "raw_deserialize_ms": round(median(self.raw_deserialize), 2),
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
        track(proc)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            untrack(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"the raw serializer script failed: {err.decode(errors='replace')}")
        figures = json.loads(out)
        cost.raw_serialize.append(float(figures["serialize_ms"]))
        cost.raw_deserialize.append(float(figures["deserialize_ms"]))
        cost.raw_bytes = int(figures["bytes"])
