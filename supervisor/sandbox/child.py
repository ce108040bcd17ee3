"""One sandbox child process: spawn, frame channel, and the shutdown ladder."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from enum import StrEnum

import anyio

from protocol import (
    PROTOCOL_VERSION,
    ChildFrame,
    FrameDecoder,
    FrameError,
    Hello,
    Ready,
    encode_frame,
)
from supervisor.sandbox.cgroups import ChildCgroup
from supervisor.sandbox.process import PipeProcess

logger = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024
_STDERR_TAIL_BYTES = 64 * 1024


class ShutdownRung(StrEnum):
    """Which step of the shutdown ladder ended the process."""

    EXITED = "exited"  # it had exited, or exited once stdin closed
    SIGTERM = "sigterm"
    SIGKILL = "sigkill"


class ChildGone(Exception):
    """The child closed its output or sent something that is not a frame."""


@dataclass(eq=False)
class Child:
    """A started process speaking the frame protocol on stdin/stdout."""

    process: PipeProcess
    max_frame_bytes: int
    heap_memory_max_mb: int
    ready: Ready | None = None
    spawned_at: float = field(default_factory=time.monotonic)
    _decoder: FrameDecoder[ChildFrame] = field(init=False)
    _closed: bool = False
    rung: ShutdownRung | None = None
    cgroup: ChildCgroup | None = None
    # Set by the pool once the child's one execution is over and it is closed.
    released: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder(ChildFrame, max_frame_bytes=self.max_frame_bytes)

    @property
    def pid(self) -> int:
        """The child's pid, which is also its process group id."""
        return self.process.pid

    async def send(self, frame: object, blob: bytes = b"") -> None:
        """Write one frame (and its binary attachment) to the child's stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send(encode_frame(frame, blob))  # type: ignore[arg-type]

    async def send_raw(self, data: bytes) -> None:
        """Write bytes that are not a frame (the runner script, before the channel starts)."""
        assert self.process.stdin is not None
        await self.process.stdin.send(data)

    async def receive_batch(self) -> list[tuple[ChildFrame, bytes]]:
        """Return the ``(frame, blob)`` pairs of the next read (at least one).

        Raises :class:`ChildGone` on EOF or on bytes that are not frames.
        """
        assert self.process.stdout is not None
        frames: list[tuple[ChildFrame, bytes]] = []
        while not frames:
            try:
                data = await self.process.stdout.receive(_READ_CHUNK)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise ChildGone("the sandbox process closed its output") from None
            try:
                frames = self._decoder.feed(data)
            except FrameError as exc:
                raise ChildGone(f"the sandbox process broke the frame protocol: {exc}") from None
        return frames

    async def hello(self, timeout_s: float) -> Ready:
        """Ask the child to announce itself; check its protocol version.

        Only the server's start-up check does: a child is otherwise given its
        work as soon as it is started, and reads it once it has loaded.
        """
        with anyio.fail_after(timeout_s):
            try:
                await self.send(Hello())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise ChildGone("the sandbox process closed its input") from None
            frames = await self.receive_batch()
        frame = frames[0][0]
        if len(frames) > 1 or not isinstance(frame, Ready):
            raise ChildGone(f"expected a ready frame, got {type(frame).__name__}")
        if frame.protocol != PROTOCOL_VERSION:
            raise ChildGone(
                f"sandbox speaks protocol {frame.protocol}, supervisor {PROTOCOL_VERSION}"
            )
        self.ready = frame
        return frame

    async def stderr_tail(self, timeout_s: float = 0.2) -> str:
        """What the child wrote to stderr (its last 64 KiB), read after it has exited."""
        stream = self.process.stderr
        if stream is None:
            return ""
        chunks = bytearray()
        with anyio.move_on_after(timeout_s):
            while True:
                try:
                    chunks += await stream.receive(_READ_CHUNK)
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    break
                if len(chunks) > 2 * _STDERR_TAIL_BYTES:
                    del chunks[:-_STDERR_TAIL_BYTES]
        return bytes(chunks[-_STDERR_TAIL_BYTES:]).decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL the child's whole process group at once (deadline, cancel, memory)."""
        _signal_group(self.pid, signal.SIGKILL)

    async def close(self, grace_s: float) -> ShutdownRung:
        """The shutdown ladder, bounded at every rung and shielded from cancellation.

        Close stdin, give the child ``grace_s`` to exit, SIGTERM its group, wait
        again, SIGKILL its group, reap. Returns (and records) the rung that fired.
        """
        if self.rung is not None:
            return self.rung
        with anyio.CancelScope(shield=True):
            rung = ShutdownRung.EXITED
            if self.process.returncode is None:
                if self.process.stdin is not None:
                    await self.process.stdin.aclose()
                if not await self._wait(grace_s):
                    rung = ShutdownRung.SIGTERM
                    _signal_group(self.pid, signal.SIGTERM)
                    if not await self._wait(grace_s):
                        rung = ShutdownRung.SIGKILL
                        _signal_group(self.pid, signal.SIGKILL)
                        await self._wait(None)
            else:
                await self._wait(None)
            await self.process.aclose()
            if self.cgroup is not None:
                self.cgroup.release()
        self.rung = rung
        logger.debug("child %s shut down (%s)", self.pid, rung)
        return rung

    async def _wait(self, timeout_s: float | None) -> bool:
        if timeout_s is None:
            await self.process.wait()
            return True
        with anyio.move_on_after(timeout_s):
            await self.process.wait()
            return True
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
