"""What common kinds of cell cost next to ``1+1``: latency and the child's CPU.

Run from the repository root::

    .venv/bin/python -m bench.cells_bench

Each cell runs sequentially through the engine (submit + wait, no HTTP,
stateless, a warm pool), the kinds interleaved so drift hits all alike. For
each kind: p50 latency, its ratio to ``1+1``, and the CPU of the sandbox
children per run (rusage of reaped children, which includes the start-up of
the replacement child each run triggers). No targets: this shows where a
cell's kind, not its work, costs time.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from bench.ceiling import deno_binary
from bench.engine import stateless_settings
from supervisor.app import running
from supervisor.executions import build_run_request
from supervisor.store import ExecutionStatus

CELLS = {
    "1+1": "1+1",
    "console.log": "console.log('hello'); 1",
    "setTimeout 0": "setTimeout(() => {}, 0); 1",
    "await (REPL mode)": "await Promise.resolve(1)",
    "throws": "throw new Error('no')",
}
ITERATIONS = 60
WARMUP = 5
PAUSE_S = 0.03


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def measure() -> dict[str, tuple[float, float]]:
    """p50 latency (ms) and child CPU per run (ms) for each kind of cell."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = stateless_settings(deno_binary(), Path(tmp))
        latencies: dict[str, list[float]] = {name: [] for name in CELLS}
        cpu: dict[str, float] = dict.fromkeys(CELLS, 0.0)
        async with running(settings) as services:
            engine = services.engine
            await anyio.sleep(0.5)
            for i in range(WARMUP + ITERATIONS):
                for name, code in CELLS.items():
                    await anyio.sleep(PAUSE_S)  # the pool refills
                    before = _children_cpu_s()
                    t0 = time.perf_counter()
                    record = await engine.submit(build_run_request(settings.sandbox, code))
                    final = await engine.wait(record.execution_id, 30)
                    elapsed = time.perf_counter() - t0
                    expected = ExecutionStatus.FAILED if name == "throws" else None
                    if final.status not in (ExecutionStatus.COMPLETED, expected):
                        raise RuntimeError(f"{name}: {final.status} {final.error}")
                    if i >= WARMUP:
                        latencies[name].append(1000 * elapsed)
                        # The child of this run is reaped by the time the pause ends.
                        await anyio.sleep(PAUSE_S)
                        cpu[name] += 1000 * (_children_cpu_s() - before)
        return {
            name: (statistics.median(latencies[name]), cpu[name] / ITERATIONS) for name in CELLS
        }


def main() -> None:
    figures = anyio.run(measure)
    base = figures["1+1"][0]
    print(f"cells through the engine, sequential, {ITERATIONS} runs each (p50 latency, child CPU):")
    for name, (p50, cpu_ms) in figures.items():
        print(f"  {name:20s} {p50:6.2f} ms  {p50 / base:5.2f}x  child CPU {cpu_ms:5.1f} ms/run")


if __name__ == "__main__":
    main()
