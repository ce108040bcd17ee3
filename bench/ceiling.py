"""1. The bare ceiling: ``deno run`` of an empty script, one loop per core."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from bench.plan import Plan
from bench.procs import track, untrack
from bench.stats import Throughput, count_in_window, cpu_delta, cpu_sample
from supervisor.config import SandboxSettings
from supervisor.sandbox.argv import child_env, deno_argv


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
            track(proc)
            rc = proc.wait()
            untrack(proc)
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
        time.sleep(plan.ceiling_slice_s)
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
