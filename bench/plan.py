"""What the benchmark runs, its targets, and how long each part lasts."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Plan:
    """How long each part runs."""

    rounds: int  # engine and REST throughput each alternate with the ceiling this many times
    ceiling_slice_s: float  # the ceiling's part of a round
    warmup_s: float  # before each throughput window, not counted
    engine_s: float  # the engine's part of a round
    rest_s: float  # REST's part of a round
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
    rounds=4,
    ceiling_slice_s=2.0,
    warmup_s=0.7,
    engine_s=2.0,
    rest_s=2.0,
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
    rounds=2,
    ceiling_slice_s=1.0,
    warmup_s=0.4,
    engine_s=1.0,
    rest_s=1.0,
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
