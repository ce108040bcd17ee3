"""5. The floor: ``1+1`` in-process with mini-racer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.plan import CODE, Plan


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
