"""Subprocesses this benchmark starts: tracking, cleanup, and stopping on SIGTERM/SIGHUP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TypeVar

import anyio
import psutil

_popen_lock = threading.Lock()
_popens: set[subprocess.Popen[bytes]] = set()


def track(proc: subprocess.Popen[bytes]) -> None:
    with _popen_lock:
        _popens.add(proc)


def untrack(proc: subprocess.Popen[bytes]) -> None:
    with _popen_lock:
        _popens.discard(proc)


def kill_leftovers() -> None:
    """SIGKILL every process this benchmark started that is still alive, by pid."""
    with _popen_lock:
        tracked = list(_popens)
    for proc in tracked:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    for proc in tracked:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
T = TypeVar("T")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP outside an event loop: unwind like Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signum}")


def install_stop_handlers() -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _interrupt)


def run_async(func: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run`` with a clean stop on SIGTERM/SIGHUP (and Ctrl-C, which anyio handles).

    Raising from a signal handler in the middle of the event loop would skip the
    supervisor's own cleanup; here the signal cancels the work instead, then
    :class:`KeyboardInterrupt` is raised once everything has unwound.
    """

    async def main() -> tuple[bool, list[T]]:
        interrupted = False
        result: list[T] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
                    async for _ in signals:
                        interrupted = True
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            result.append(await func())
            tg.cancel_scope.cancel()
        return interrupted, result

    try:
        interrupted, result = anyio.run(main)
    finally:
        install_stop_handlers()  # asyncio resets them to SIG_DFL on the way out
    if interrupted or not result:
        raise KeyboardInterrupt("stopped by a signal")
    return result[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
