"""A bounded pool of pre-spawned children; each one runs exactly one execution.

Spawning is done by ``spawn_concurrency`` tasks handing children over a
bounded stream, so replacement never runs ahead of demand: at most
``pool_size`` idle children exist, and at most ``spawn_concurrency`` start
at once, however many executions are waiting.

A child is in the pool as soon as it is started and has its runner script:
there is no handshake (it would cost every execution a round trip: ~0.3 ms
of the server's CPU and ~0.4 ms of the child's, measured A/B). It loads
while it waits; one handed out before it has finished loading reads its work
from the pipe when it has. Only the start-up check (:meth:`SandboxPool.check`)
asks a child to announce itself.

A replacement is not started the moment a child is handed out: starting Deno
takes ~13 ms of CPU, and on a small machine it would compete with the very
execution that child is about to run (measured: p50 of a sequential ``1+1``
4.7 ms with an immediate replacement, 2.6-2.9 ms with this hold-off). A
spawner waits until the child it handed out has been released, or for
``_HOLD_OFF_S`` at most. Under sustained load the hold-off only leaves cores
idle (measured: ~5 % of them), so a spawner whose child was taken by an
execution already waiting for one starts the next child at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

import anyio
import psutil
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from supervisor.config import SandboxSettings
from supervisor.errors import SandboxUnavailable
from supervisor.sandbox.argv import child_env, deno_argv
from supervisor.sandbox.cgroups import ChildCgroup, MemoryCgroups
from supervisor.sandbox.child import Child, ChildGone
from supervisor.sandbox.process import PipeProcess, start_process

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
# Room for the runner's growth while evaluating, above a fresh child's RSS.
_RSS_MARGIN_MB = 16
_MAX_BACKOFF_S = 5.0
_HOLD_OFF_S = 0.01


class SandboxPool:
    """Hands out started children and keeps replacements coming."""

    def __init__(
        self,
        settings: SandboxSettings,
        runner: Path,
        cgroups: MemoryCgroups | None = None,
        *,
        boot: bytes = b"",
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.cgroups = cgroups
        self.boot = boot
        self.baseline_rss_bytes = 48 * MIB
        self._env = child_env()
        self._spawn_limiter = anyio.Semaphore(max(1, settings.spawn_concurrency), fast_acquire=True)
        self._receive: MemoryObjectReceiveStream[Child] | None = None

    def rss_cap_bytes(self, heap_memory_max_mb: int) -> int:
        """The whole-process memory cap for a child with this heap limit."""
        extra = heap_memory_max_mb + self.settings.external_memory_max_mb + _RSS_MARGIN_MB
        return self.baseline_rss_bytes + extra * MIB

    async def check(self) -> str:
        """Start one child and have it announce itself, or raise :class:`SandboxUnavailable`.

        Also measures a loaded child's resident set, the baseline for memory caps.
        Returns the Deno and V8 versions the sandbox runs.
        """
        try:
            child = await self.spawn(self.settings.heap_memory_max_mb)
        except (OSError, ChildGone) as exc:
            raise SandboxUnavailable(
                f"cannot start the sandbox with Deno at {self.settings.deno_path!r}: {exc}"
            ) from None
        try:
            ready = await child.hello(self.settings.spawn_timeout_s)
        except (ChildGone, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self.settings.spawn_timeout_s:g} s"
            raise SandboxUnavailable(
                f"cannot start the sandbox with Deno at {self.settings.deno_path!r}: "
                f"{await _discard(child, reason)}"
            ) from None
        with contextlib.suppress(psutil.Error):
            self.baseline_rss_bytes = int(psutil.Process(child.pid).memory_info().rss)
        await child.close(self.settings.shutdown_grace_s)
        return f"Deno {ready.deno}, V8 {ready.v8}"

    async def spawn(self, heap_memory_max_mb: int) -> Child:
        """Start a child and give it the runner; it loads while its work is on the way.

        There is no handshake: the first frame it reads is its work (a child
        that fails to load fails that execution, with its exit status).
        """
        argv = deno_argv(
            self.settings.deno_path, str(self.runner), heap_memory_max_mb=heap_memory_max_mb
        )
        async with self._spawn_limiter:
            # Started in a worker thread, in its memory cgroup from the first instruction.
            process, cgroup = await anyio.to_thread.run_sync(self._start, argv, heap_memory_max_mb)
            child = Child(
                process,
                max_frame_bytes=self.settings.max_frame_bytes,
                heap_memory_max_mb=heap_memory_max_mb,
                cgroup=cgroup,
            )
            try:
                if self.boot:
                    await child.send_raw(self.boot)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise ChildGone(
                    await _discard(child, "the sandbox process closed its input")
                ) from None
            except BaseException:
                child.kill()
                await child.close(0)
                raise
        return child

    def _start(
        self, argv: list[str], heap_memory_max_mb: int
    ) -> tuple[PipeProcess, ChildCgroup | None]:
        def start() -> PipeProcess:
            return start_process(argv, self._env)

        if self.cgroups is None:
            return start(), None
        return self.cgroups.spawn_into(self.rss_cap_bytes(heap_memory_max_mb), start)

    async def acquire(self, heap_memory_max_mb: int) -> Child:
        """A started child with this heap limit: from the pool, or freshly spawned.

        Give it back with :meth:`release` when its execution is over.
        """
        if heap_memory_max_mb == self.settings.heap_memory_max_mb and self._receive is not None:
            try:
                child = self._receive.receive_nowait()  # no trip through the event loop
            except anyio.WouldBlock:
                child = await self._receive.receive()
        else:
            child = await self.spawn(heap_memory_max_mb)
        return child

    async def release(self, child: Child) -> None:
        """Close a child :meth:`acquire` handed out (it runs one execution only)."""
        try:
            await child.close(self.settings.shutdown_grace_s)
        finally:
            child.released.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the pool filled until cancelled; idle children are shut down on exit."""
        settings = self.settings
        buffer = max(0, settings.effective_pool_size - settings.spawn_concurrency)
        send, receive = anyio.create_memory_object_stream[Child](buffer)
        self._receive = receive
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(max(1, settings.spawn_concurrency)):
                    tg.start_soon(self._spawner, send)
                task_status.started()
        finally:
            self._receive = None
            with anyio.CancelScope(shield=True):
                send.close()
                async with receive:
                    async for child in receive:
                        child.kill()
                        await child.close(0)
                if self.cgroups is not None:
                    self.cgroups.close()

    async def _spawner(self, send: MemoryObjectSendStream[Child]) -> None:
        failures = 0
        while True:
            try:
                child = await self.spawn(self.settings.heap_memory_max_mb)
            except (OSError, ChildGone) as exc:
                failures += 1
                delay = min(_MAX_BACKOFF_S, 0.05 * math.pow(2, failures))
                logger.error("sandbox child failed to start (%s); retrying in %.2f s", exc, delay)
                await anyio.sleep(delay)
                continue
            failures = 0
            # An execution already waiting for this child: demand outruns supply.
            starved = send.statistics().tasks_waiting_receive > 0
            try:
                try:
                    send.send_nowait(child)
                except anyio.WouldBlock:
                    await send.send(child)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await child.close(0)
                raise
            if not starved:
                # Handed out: let its execution have the CPU first (module docstring).
                with anyio.move_on_after(_HOLD_OFF_S):
                    await child.released.wait()


async def _discard(child: Child, reason: str) -> str:
    """Kill a child that failed to start; returns ``reason`` with what it wrote to stderr."""
    child.kill()
    stderr = (await child.stderr_tail()).strip()
    await child.close(0)
    return f"{reason}: {stderr[-2000:]}" if stderr else reason
