"""Limits enforced by the OS on a child's whole process, beyond V8's own flags.

``--max-old-space-size`` does not count ArrayBuffers or wasm memory, so the
resident set of each running child is also watched; a child over its cap is
killed. On Linux a sample is one ``pread`` of ``/proc/<pid>/statm`` (~2 µs);
elsewhere psutil reads it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from collections.abc import Callable

import anyio
import psutil

logger = logging.getLogger(__name__)

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_reader(pid: int) -> Callable[[], int | None]:
    """A function returning the resident bytes of ``pid``, or None once it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:

        def from_proc() -> int | None:
            try:
                return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_BYTES
            except (OSError, IndexError, ValueError):
                return None

        from_proc.close = lambda: os.close(fd)  # type: ignore[attr-defined]
        return from_proc
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return lambda: None

    def from_psutil() -> int | None:
        try:
            return int(proc.memory_info().rss)
        except psutil.Error:
            return None

    return from_psutil


async def watch_rss(
    pid: int, cap_bytes: int, interval_s: float, on_exceeded: Callable[[int], None]
) -> None:
    """Poll the resident set of ``pid`` until it exits or exceeds ``cap_bytes``."""
    read = _rss_reader(pid)
    try:
        while (rss := read()) is not None:
            if rss > cap_bytes:
                on_exceeded(rss)
                return
            await anyio.sleep(interval_s)
    finally:
        close = getattr(read, "close", None)
        if close is not None:
            close()


def cap_cpu_seconds(pid: int, seconds: int) -> None:
    """Set RLIMIT_CPU on ``pid``: a backstop that ends a spinning child even if the
    supervisor itself dies before the deadline (the kernel sends SIGXCPU, then SIGKILL)."""
    prlimit = getattr(resource, "prlimit", None)
    if prlimit is None:  # not Linux
        return
    with contextlib.suppress(OSError, ValueError):
        prlimit(pid, resource.RLIMIT_CPU, (seconds, seconds + 1))
