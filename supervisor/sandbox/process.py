"""A sandbox child's OS process, driven through its raw pipes.

:func:`start_process` is called in a worker thread, never on the event loop:
the memory cgroup of a child is chosen by moving the spawning thread (see
``cgroups.py``), and forking is work the loop need not wait for. The pipes are
then read and written without blocking, with the loop's readiness callbacks,
and the exit is noticed through a pidfd. Compared with ``anyio.open_process``
this has no transports and protocols and no watcher thread per child, which
is measurable when every execution starts a process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence

import anyio

# A pipe holds 64 KiB by default: a larger read buffer would only be allocated and shrunk.
_MAX_READ = 64 * 1024
# Without pidfds (not Linux), how often a waiter checks whether the process has exited.
_EXIT_POLL_S = 0.005


class PipeWriter:
    """The write end of a child's stdin."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._closed = False

    async def send(self, data: bytes) -> None:
        """Write all of ``data``.

        Raises :class:`anyio.BrokenResourceError` once the child has closed its end.
        """
        view = memoryview(data)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
            except (BrokenPipeError, ConnectionResetError):
                raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        """Close the pipe (the child reads EOF)."""
        _close(self)


class PipeReader:
    """The read end of a child's stdout or stderr."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._closed = False

    async def receive(self, max_bytes: int = _MAX_READ) -> bytes:
        """The next bytes available; raises :class:`anyio.EndOfStream` at EOF."""
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, min(max_bytes, _MAX_READ))
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        """Close the pipe."""
        _close(self)


def _close(end: PipeReader | PipeWriter) -> None:
    if end._closed:
        return
    end._closed = True
    anyio.notify_closing(end._fd)  # wakes a task waiting on it
    with contextlib.suppress(OSError):
        os.close(end._fd)


class PipeProcess:
    """A started child: its pid, its three pipes, and its exit status once it has exited."""

    def __init__(
        self, popen: subprocess.Popen[bytes], stdin: int, stdout: int, stderr: int
    ) -> None:
        self._popen = popen
        self.stdin = PipeWriter(stdin)
        self.stdout = PipeReader(stdout)
        self.stderr = PipeReader(stderr)
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # pidfds: Linux 5.3+
            self._pidfd = os.pidfd_open(popen.pid)
        self._wait_lock = anyio.Lock(fast_acquire=True)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), or None while it runs."""
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the process to exit (and reap it); returns its exit status."""
        async with self._wait_lock:
            while (code := self._popen.poll()) is None:
                if self._pidfd is not None:
                    await anyio.wait_readable(self._pidfd)
                else:
                    await anyio.sleep(_EXIT_POLL_S)
            if self._pidfd is not None:
                anyio.notify_closing(self._pidfd)
                os.close(self._pidfd)
                self._pidfd = None
            return code

    async def aclose(self) -> None:
        """Close the pipes and wait for the process to exit."""
        for end in (self.stdin, self.stdout, self.stderr):
            await end.aclose()
        await self.wait()


def start_process(argv: Sequence[str], env: dict[str, str]) -> PipeProcess:
    """Start ``argv`` in a new session with piped stdin, stdout and stderr.

    Blocking (fork and exec): call it from a worker thread. Raises ``OSError``
    when the program cannot be started.
    """
    # Our ends stay close-on-exec; the child's ends become its 0, 1 and 2.
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=stdin_r,
            stdout=stdout_w,
            stderr=stderr_w,
            env=env,
            start_new_session=True,
        )
    except BaseException:
        for fd in (stdin_w, stdout_r, stderr_r):
            os.close(fd)
        raise
    finally:
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
    return PipeProcess(popen, stdin_w, stdout_r, stderr_r)
