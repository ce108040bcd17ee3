"""Limits enforced by the OS on a child's whole process, beyond V8's own flags.

``--max-old-space-size`` does not count ArrayBuffers or wasm memory, so the
resident set of each running child is also watched; a child over its cap is
killed. On Linux a sample is one ``pread`` of ``/proc/<pid>/statm`` (~2 µs);
elsewhere psutil reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
from collections.abc import Callable

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


class RssWatch:
    """Polls the resident set of ``pid`` until :meth:`stop`, calling ``on_exceeded`` once if
    it passes ``cap_bytes``.

    Timer callbacks on the running event loop, not a task: stopping a task
    means cancelling it, and an anyio cancellation formats the repr of the
    cancelling task, measured at ~0.45 ms of CPU, on every execution's path.
    The first sample is taken one interval after the start (the child has only
    just been given its work then), so a run shorter than that, as most are,
    never opens the process's statistics at all.
    """

    def __init__(
        self, pid: int, cap_bytes: int, interval_s: float, on_exceeded: Callable[[int], None]
    ) -> None:
        self._pid = pid
        self._read: Callable[[], int | None] | None = None
        self._cap = cap_bytes
        self._interval = interval_s
        self._on_exceeded = on_exceeded
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(interval_s, self._tick)

    def _tick(self) -> None:
        if self._read is None:
            self._read = _rss_reader(self._pid)
        rss = self._read()
        if rss is None:
            self.stop()
        elif rss > self._cap:
            self.stop()
            self._on_exceeded(rss)
        else:
            self._handle = self._loop.call_later(self._interval, self._tick)

    def stop(self) -> None:
        """Stop polling (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        close = getattr(self._read, "close", None)
        if close is not None:
            close()
        self._read = lambda: None


def cap_cpu_seconds(pid: int, seconds: int) -> None:
    """Set RLIMIT_CPU on ``pid``: a backstop that ends a spinning child even if the
    supervisor itself dies before the deadline (the kernel sends SIGXCPU, then SIGKILL)."""
    prlimit = getattr(resource, "prlimit", None)
    if prlimit is None:  # not Linux
        return
    with contextlib.suppress(OSError, ValueError):
        prlimit(pid, resource.RLIMIT_CPU, (seconds, seconds + 1))
