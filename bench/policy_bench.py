"""Policy decision latency in-process: the example fetch and fs policies through regopy.

Run from the repository root::

    .venv/bin/python -m bench.policy_bench

Each decision is ``await engine.decide(category, input)`` on a :class:`PolicyEngine` loaded
from ``policies/`` exactly as ``--policies-json`` with a ``file://`` URL loads it, so it
includes building the regopy input, the compiled query and reading the answer. Inputs rotate
over allowed and denied requests (a denied host, a loopback address, a write outside the out
directory) so no single path is measured alone. Target: p50 at most 200 µs.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import anyio

from supervisor.policy import PolicyEngine, load_policies

POLICIES = Path(__file__).resolve().parent.parent / "policies"
P50_TARGET_US = 200.0


def _fetch(host: str, ip: str, method: str = "GET") -> dict[str, Any]:
    return {
        "operation": "fetch",
        "url": f"https://{host}/public/data?page=1",
        "method": method,
        "headers": {"accept": "application/json", "user-agent": "mcp-v8"},
        "url_parsed": {
            "scheme": "https",
            "host": host,
            "port": None,
            "path": "/public/data",
            "query": "page=1",
        },
        "resolved_ip": ip,
    }


CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("fetch", _fetch("api.example.com", "93.184.215.14"), True),
    ("fetch", _fetch("evil.example.net", "93.184.215.15"), False),
    ("fetch", _fetch("api.example.com", "127.0.0.1"), False),
    ("fetch", _fetch("api.example.com", "93.184.215.14", method="POST"), False),
    ("fs", {"operation": "readFile", "path": "/tmp/sandbox/data.txt", "encoding": "utf8"}, True),
    ("fs", {"operation": "writeFile", "path": "/tmp/sandbox/out/result.json"}, True),
    ("fs", {"operation": "writeFile", "path": "/tmp/sandbox/data.txt"}, False),
]


def _percentile(sorted_us: list[float], pct: float) -> float:
    index = min(len(sorted_us) - 1, max(0, round(pct / 100 * (len(sorted_us) - 1))))
    return sorted_us[index]


async def _measure(engine: PolicyEngine, decisions: int, warmup: int) -> list[list[float]]:
    """Microseconds per decision, one list per case of :data:`CASES`."""
    for i in range(warmup):
        category, policy_input, _ = CASES[i % len(CASES)]
        await engine.decide(category, policy_input)
    timings: list[list[float]] = [[] for _ in CASES]
    for i in range(decisions):
        category, policy_input, expected = CASES[i % len(CASES)]
        started = time.perf_counter_ns()
        decision = await engine.decide(category, policy_input)
        timings[i % len(CASES)].append((time.perf_counter_ns() - started) / 1000)
        if decision.allowed is not expected:
            raise AssertionError(f"{category} {policy_input}: {decision}")
    return timings


def policy_latency(decisions: int = 2000, warmup: int = 200) -> dict[str, Any]:
    """Decision latency of the local Rego example policies; prints one line, returns figures."""
    url = f"file://{POLICIES}"
    load_started = time.perf_counter()
    engine = load_policies(
        json.dumps({"fetch": {"policies": [{"url": url}]}, "fs": {"policies": [{"url": url}]}})
    )
    load_ms = (time.perf_counter() - load_started) * 1000

    async def run() -> list[list[float]]:
        try:
            return await _measure(engine, decisions, warmup)
        finally:
            await engine.aclose()

    per_case = [sorted(case) for case in anyio.run(run)]
    timings = sorted(t for case in per_case for t in case)
    p50, p99 = _percentile(timings, 50), _percentile(timings, 99)
    case_p50 = [_percentile(case, 50) for case in per_case]
    slowest = max(range(len(CASES)), key=lambda i: case_p50[i])
    slowest_name = f"{CASES[slowest][0]} {'allowed' if CASES[slowest][2] else 'denied'}"
    figures: dict[str, Any] = {
        "decisions": decisions,
        "p50_us": round(p50, 1),
        "p99_us": round(p99, 1),
        "mean_us": round(statistics.fmean(timings), 1),
        "max_us": round(timings[-1], 1),
        "slowest_case": slowest_name,
        "slowest_case_p50_us": round(case_p50[slowest], 1),
        "case_p50_us": [round(v, 1) for v in case_p50],
        "load_ms": round(load_ms, 1),
        "p50_target_us": P50_TARGET_US,
        "pass": p50 <= P50_TARGET_US,
    }
    print(
        f"policy decision (local Rego, policies/ fetch+fs, {decisions} decisions): "
        f"p50 {p50:.0f} µs, p99 {p99:.0f} µs, mean {figures['mean_us']:.0f} µs "
        f"(target p50 <= {P50_TARGET_US:.0f} µs: {'PASS' if figures['pass'] else 'MISS'}); "
        f"slowest case ({slowest_name}) p50 {case_p50[slowest]:.0f} µs; load {load_ms:.0f} ms"
    )
    return figures


if __name__ == "__main__":
    policy_latency()
