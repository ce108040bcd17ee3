"""Cost of importing an already-cached npm package, next to the same execution without it.

Run from the repository root::

    .venv/bin/python -m bench.import_bench

One engine (stateless, external modules on), measured in the same run:

- the first import of ``npm:lodash-es@4.17.21`` in an empty module cache
  (registry download + bundling), once;
- then, interleaved so drift hits both alike, sequential submit + wait of
  ``import _ from "npm:lodash-es@4.17.21"; _.camelCase("a b")`` (the bundle
  comes from the module cache) and of the same cell without the import,
  ``"a b".length``. The issue's target: the import at most 2x the time of the
  execution without it (p50 against p50).

After the first import, each run importing lodash-es gets a child set aside
with it already evaluated (``supervisor/executions/warm.py``), the way the
pool hides Deno's start-up; the pauses between runs leave time for that, as
they do for the pool. Also printed: the set-aside children handed out, and the
CPU the import adds per execution (children reaped, both cells), which no
setting aside can hide under sustained load.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import deno

from bench.stats import cpu_sample
from supervisor.app import running
from supervisor.config import (
    HttpSettings,
    ModuleSettings,
    SandboxSettings,
    Settings,
    StorageSettings,
)
from supervisor.executions import build_run_request

RATIO_TARGET = 2.0
CPU_RUNS = 30
WITH_IMPORT = 'import _ from "npm:lodash-es@4.17.21";\n_.camelCase("a b")'
WITHOUT_IMPORT = '"a b".length'


def import_overhead(iterations: int = 60, warmup: int = 10) -> dict[str, Any]:
    """p50 latency of the two cells, the first (uncached) import, and their ratio."""
    deno_path = str(deno.find_deno_bin())

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
            settings = Settings(
                sandbox=SandboxSettings(deno_path=deno_path),
                http=HttpSettings(),
                storage=StorageSettings(data_dir=Path(tmp) / "data", stateless=True),
                modules=ModuleSettings(enabled=True, cache_dir=Path(tmp) / "modules"),
            )
            cells = {
                "import": build_run_request(settings.sandbox, WITH_IMPORT),
                "plain": build_run_request(settings.sandbox, WITHOUT_IMPORT),
            }
            timings: dict[str, list[float]] = {name: [] for name in cells}
            cpu = dict.fromkeys(cells, 0.0)
            async with running(settings) as services:
                engine = services.engine

                async def once(name: str) -> float:
                    await anyio.sleep(0.05)  # let the pool refill, as bench.run does
                    started = time.perf_counter()
                    record = await engine.submit(cells[name])
                    final = await engine.wait(record.execution_id, 120)
                    if final.status.value != "completed":
                        raise RuntimeError(f"{name}: {final.error}")
                    return (time.perf_counter() - started) * 1000

                first_ms = await once("import")
                for i in range(warmup + iterations):
                    order = ["import", "plain"] if i % 2 else ["plain", "import"]
                    for name in order:
                        elapsed = await once(name)
                        if i >= warmup:
                            timings[name].append(elapsed)
                handed_out = engine.warm.handed_out if engine.warm else 0
                # CPU per run, one cell at a time (sandbox children, set-aside ones included).
                for name in cells:
                    await anyio.sleep(0.5)
                    before = cpu_sample()["bench_children"] * 1000
                    for _ in range(CPU_RUNS):
                        await once(name)
                    await anyio.sleep(0.5)  # the last children are reaped
                    cpu[name] = (cpu_sample()["bench_children"] * 1000 - before) / CPU_RUNS
        with_import = statistics.median(timings["import"])
        plain = statistics.median(timings["plain"])
        ratio = with_import / plain
        return {
            "iterations": iterations,
            "first_import_ms": round(first_ms, 1),
            "cached_import_p50_ms": round(with_import, 2),
            "no_import_p50_ms": round(plain, 2),
            "ratio": round(ratio, 3),
            "ratio_target": RATIO_TARGET,
            "pass": ratio <= RATIO_TARGET,
            "set_aside_children_used": handed_out,
            "sandbox_cpu_per_run_ms": {name: round(ms, 2) for name, ms in cpu.items()},
        }

    return anyio.run(run)


def main() -> None:
    figures = import_overhead()
    print("cached npm import (lodash-es) vs the same cell without it, engine submit + wait")
    for key, value in figures.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
