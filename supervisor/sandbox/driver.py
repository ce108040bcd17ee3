"""Drive one execution in one child: send the code, collect frames, enforce limits."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from protocol import (
    PROTOCOL_VERSION,
    Call,
    CallError,
    Done,
    ErrorInfo,
    ImportBinding,
    Lost,
    Output,
    OutputStream,
    Preload,
    Preloaded,
    PreloadModule,
    Ready,
    Reply,
    Run,
    WasmPreload,
)
from supervisor.sandbox.child import Child, ChildGone
from supervisor.sandbox.memory import RssWatch, cap_cpu_seconds

logger = logging.getLogger(__name__)

MIB = 1024 * 1024

OutcomeStatus = Literal["completed", "failed", "timed_out"]

# Answers one capability call of the user's code: a Reply frame and its blob.
CallHandler = Callable[[Call, bytes], Awaitable[tuple[Reply, bytes]]]

# Capability calls of one execution served at once; more wait their turn.
_CALLS_AT_ONCE = 16

_OOM_MARKERS = ("out of memory", "Reached heap limit", "Allocation failed")
_COLLECTED_AWAIT = "Invoke in DisallowJavascriptExecutionScope"


@dataclass(frozen=True)
class Limits:
    """What one execution may use."""

    timeout_s: float
    heap_memory_max_mb: int
    rss_cap_bytes: int
    output_limit_bytes: int
    poll_interval_s: float


@dataclass(frozen=True)
class Outcome:
    """How an execution ended, as the sandbox saw it.

    A stateful run that completed carries its new ``snapshot`` and the globals
    the snapshot could not keep (``lost``).
    """

    status: OutcomeStatus
    result: str | None = None
    error: str | None = None
    snapshot: bytes | None = None
    lost: tuple[Lost, ...] = ()


def format_error(info: ErrorInfo) -> str:
    """One string for a thrown error: its stack when it has one, else ``Name: message``."""
    head = f"{info.name}: {info.message}" if info.message else info.name
    if info.stack and info.stack.startswith(head):
        return info.stack
    return head if not info.stack else f"{head}\n{info.stack}"


async def execute(
    child: Child,
    code: str,
    limits: Limits,
    on_output: Callable[[OutputStream, str], None],
    *,
    stateful: bool = False,
    restore: bytes | None = None,
    calls: CallHandler | None = None,
    wasm: Sequence[tuple[str, bytes, bool]] = (),
    imports: Sequence[ImportBinding] = (),
    on_started: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """Run ``code`` in ``child`` (which may still be loading) and return the outcome.

    The deadline and the memory cap are enforced from outside the child: a
    tight loop or a microtask flood cannot delay them. ``on_started`` is
    awaited once the child has its work, so that whatever it does (recording
    the start) overlaps with the run instead of delaying it.
    """
    over_memory: list[int] = []

    outcome: Outcome | None = None
    gone: ChildGone | None = None
    cap_cpu_seconds(child.pid, math.ceil(limits.timeout_s) + 2)
    deadline_at = anyio.current_time() + limits.timeout_s
    answering = [0]  # capability calls being answered
    watch = _watch_memory(child, limits, over_memory)
    try:
        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(limits.timeout_s) as deadline:
                try:
                    await child.send(
                        Run(
                            protocol=PROTOCOL_VERSION,
                            code=code,
                            output_limit_bytes=limits.output_limit_bytes,
                            stateful=stateful,
                            restore=restore is not None,
                            wasm=[
                                WasmPreload(name=name, size=len(data), instantiate=instantiate)
                                for name, data, instantiate in wasm
                            ],
                            imports=list(imports),
                        ),
                        (restore or b"") + b"".join(data for _, data, _ in wasm),
                    )
                    if on_started is not None:
                        await on_started()
                    outcome = await _collect(child, on_output, stateful, calls, tg, answering)
                except ChildGone as exc:
                    gone = exc
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    gone = ChildGone("the sandbox process closed its input")
            # Replies nobody waits for any more. (Only then: a cancellation
            # costs ~0.45 ms of CPU, see RssWatch.)
            if answering[0]:
                tg.cancel_scope.cancel()
    finally:
        watch.stop()
    if deadline.cancelled_caught:
        child.kill()
        return Outcome("timed_out", error=f"execution timed out after {limits.timeout_s:g} s")
    if outcome is not None:
        return outcome
    assert gone is not None
    return await _explain_exit(child, gone, limits, over_memory, deadline_at)


async def preload(
    child: Child,
    modules: Sequence[tuple[str, str, bytes]],
    limits: Limits,
    *,
    repl: bool = False,
) -> list[tuple[OutputStream, str]]:
    """Have a child evaluate module bundles ``(specifier, format, source)`` ahead of its run.

    With ``repl`` it also connects the inspector that evaluates top-level await.

    Returns the console output the modules printed (it belongs to the run
    that will use the child). The memory cap holds as in a run, and
    ``limits.timeout_s`` bounds the whole evaluation; a child that fails,
    overruns or leaves the protocol raises :class:`ChildGone` (it is killed).
    """
    output: list[tuple[OutputStream, str]] = []
    over_memory: list[int] = []

    failure: str | None = None
    watch = _watch_memory(child, limits, over_memory)
    try:
        with anyio.move_on_after(limits.timeout_s) as deadline:
            try:
                await child.send(
                    Preload(
                        modules=[
                            PreloadModule(specifier=spec, format=fmt, size=len(source))
                            for spec, fmt, source in modules
                        ],
                        output_limit_bytes=limits.output_limit_bytes,
                        repl=repl,
                    ),
                    b"".join(source for _, _, source in modules),
                )
                failure = await _await_preloaded(child, output)
            except ChildGone as exc:
                failure = str(exc)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                failure = "the sandbox process closed its input"
    finally:
        watch.stop()
    if deadline.cancelled_caught:
        failure = f"evaluating the modules took over {limits.timeout_s:g} s"
    if over_memory:
        failure = f"evaluating the modules used {over_memory[0] // MIB} MiB, over the cap"
    if failure is not None:
        child.kill()
        raise ChildGone(failure)
    return output


def _watch_memory(child: Child, limits: Limits, over_memory: list[int]) -> RssWatch:
    """Kill ``child`` when its memory passes the cap, noting the size it reached."""

    def exceeded(rss: int) -> None:
        over_memory.append(rss)
        child.kill()

    return RssWatch(child.pid, limits.rss_cap_bytes, limits.poll_interval_s, exceeded)


async def _await_preloaded(child: Child, output: list[tuple[OutputStream, str]]) -> str | None:
    """Read frames until ``Preloaded``: None when it went well, else why not."""
    while True:
        for frame, _blob in await child.receive_batch():
            match frame:
                case Output(stream=stream, text=text):
                    output.append((stream, text))
                case Preloaded(ok=True):
                    return None
                case Preloaded(error=error):
                    info = error or ErrorInfo(name="Error", message="module evaluation failed")
                    return format_error(info)
                case _:
                    return f"the sandbox sent {type(frame).__name__} while preloading"


async def _collect(
    child: Child,
    on_output: Callable[[OutputStream, str], None],
    stateful: bool,
    calls: CallHandler | None,
    tg: TaskGroup,
    answering: list[int],
) -> Outcome:
    # Made with the first capability call: most runs make none.
    limiter: anyio.CapacityLimiter | None = None
    send_lock: anyio.Lock | None = None

    async def answer(request: Call, blob: bytes) -> None:
        assert limiter is not None and send_lock is not None
        answering[0] += 1
        try:
            async with limiter:
                if calls is None:
                    reply = Reply(
                        id=request.id,
                        ok=False,
                        error=CallError(
                            code="ENOTSUP",
                            message=f"{request.capability} is not enabled on this server",
                        ),
                    )
                    data = b""
                else:
                    reply, data = await calls(request, blob)
            async with send_lock:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await child.send(reply, data)
        finally:
            answering[0] -= 1

    while True:
        for frame, blob in await child.receive_batch():
            match frame:
                case Call():
                    if limiter is None:
                        limiter, send_lock = anyio.CapacityLimiter(_CALLS_AT_ONCE), anyio.Lock()
                    tg.start_soon(answer, frame, blob)
                case Output(stream=stream, text=text):
                    on_output(stream, text)
                case Done(ok=True, result=result, snapshot=has_snapshot, lost=lost):
                    if stateful and not has_snapshot:
                        raise ChildGone("the sandbox finished a stateful run without a snapshot")
                    return Outcome(
                        "completed",
                        result=result,
                        snapshot=blob if stateful else None,
                        lost=tuple(lost),
                    )
                case Done(error=error):
                    info = error or ErrorInfo(name="Error", message="execution failed")
                    return Outcome("failed", error=format_error(info))
                case Ready():
                    raise ChildGone("the sandbox process sent a ready frame it was not asked for")


async def _explain_exit(
    child: Child, gone: ChildGone, limits: Limits, over_memory: list[int], deadline_at: float
) -> Outcome:
    """Turn a child that stopped talking into a clear failure."""
    if over_memory:
        return Outcome(
            "failed",
            error=(
                f"memory limit exceeded: the sandbox used {over_memory[0] // MIB} MiB, over its "
                f"{limits.rss_cap_bytes // MIB} MiB cap (ArrayBuffers and wasm memory count)"
            ),
        )
    child.kill()
    with anyio.move_on_after(1):
        await child.process.wait()
    if child.cgroup is not None and child.cgroup.oom_killed():
        return Outcome(
            "failed",
            error=(
                "memory limit exceeded: the sandbox reached its "
                f"{limits.rss_cap_bytes // MIB} MiB memory cgroup limit "
                "(ArrayBuffers and wasm memory count)"
            ),
        )
    stderr = await child.stderr_tail()
    if any(marker in stderr for marker in _OOM_MARKERS):
        return Outcome(
            "failed",
            error=(
                "memory limit exceeded: the JavaScript heap outgrew "
                f"heap_memory_max_mb={limits.heap_memory_max_mb}"
            ),
        )
    if _COLLECTED_AWAIT in stderr:
        # V8 collects an awaited Promise that nothing references, i.e. one that
        # can never settle, and Deno aborts on the inspector's notice of it.
        # Whether that happens depends on garbage-collection timing, so the
        # execution ends exactly as any other that never settles: at its deadline.
        await anyio.sleep_until(deadline_at)
        return Outcome("timed_out", error=f"execution timed out after {limits.timeout_s:g} s")
    code = child.process.returncode
    how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
    logger.info("child %s ended without a result (%s): %s", child.pid, how, gone)
    return Outcome("failed", error=f"the sandbox process ended without a result ({how}): {gone}")
