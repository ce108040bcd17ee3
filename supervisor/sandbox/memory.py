"""Limits enforced by the OS on a child's whole process, beyond V8's own flags.

``--max-old-space-size`` does not count ArrayBuffers or wasm memory, so the
resident set of each running child is also watched; a child over its cap is
killed. Polling costs ~6 µs per sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import psutil

logger = logging.getLogger(__name__)


async def watch_rss(
    pid: int, cap_bytes: int, interval_s: float, on_exceeded: Callable[[int], None]
) -> None:
    """Poll the resident set of ``pid`` until it exits or exceeds ``cap_bytes``."""
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    while True:
        try:
            rss = int(proc.memory_info().rss)
        except psutil.Error:
            return
        if rss > cap_bytes:
            on_exceeded(rss)
            return
        await anyio.sleep(interval_s)


def cap_cpu_seconds(pid: int, seconds: int) -> None:
    """Set RLIMIT_CPU on ``pid``: a backstop that ends a spinning child even if the
    supervisor itself dies before the deadline (the kernel sends SIGXCPU, then SIGKILL)."""
    rlimit_cpu = getattr(psutil, "RLIMIT_CPU", None)
    if rlimit_cpu is None:  # not Linux
        return
    try:
        psutil.Process(pid).rlimit(rlimit_cpu, (seconds, seconds + 1))
    except (psutil.Error, OSError) as exc:
        logger.debug("could not cap CPU time of %s: %s", pid, exc)
