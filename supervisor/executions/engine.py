"""The execution engine: queueing, one sandbox per execution, statuses, output."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
from anyio.abc import TaskGroup, TaskStatus

from protocol import ImportBinding, ImportName
from supervisor.config import SandboxSettings
from supervisor.errors import (
    CorruptSnapshot,
    HeapNotFound,
    InvalidRequest,
    NotFound,
    SandboxUnavailable,
    StorageError,
)
from supervisor.executions.output import OutputSink
from supervisor.executions.requests import RunRequest
from supervisor.executions.warm import Key, WarmChildren
from supervisor.heaps import SnapshotStore
from supervisor.sandbox import CallHandler, Child, Limits, Outcome, SandboxPool, execute
from supervisor.sessions import SessionStore
from supervisor.store import (
    ByteRange,
    ExecutionRecord,
    ExecutionStatus,
    ExecutionStore,
    LineRange,
    NotPersisted,
    OutputPage,
)
from supervisor.typescript import TypeStripper, needs_helper
from supervisor.wasm import WasmModule


def restore_source_text(snapshot: bytes) -> str:
    """The JSON header of a snapshot (function sources included), as text; "" if unreadable."""
    if len(snapshot) < 8 or snapshot[:4] != b"MV8S":
        return ""
    length = int.from_bytes(snapshot[4:8], "big")
    return snapshot[8 : 8 + length].decode("utf-8", "replace")


logger = logging.getLogger(__name__)

_FLUSH_INTERVAL_S = 0.05


def utc_now() -> str:
    """Timestamps as ISO 8601 in UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class _Live:
    """What the engine holds for an execution that has not finished."""

    sink: OutputSink
    source: str  # the code as the sandbox runs it (types stripped, static imports taken out)
    imports: tuple[ImportBinding, ...] = ()
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    flush_lock: anyio.Lock = field(default_factory=lambda: anyio.Lock(fast_acquire=True))


class Engine:
    """Accepts executions, runs each in its own sandbox child, records what happened."""

    def __init__(
        self,
        settings: SandboxSettings,
        pool: SandboxPool,
        store: ExecutionStore,
        *,
        heaps: SnapshotStore | None = None,
        sessions: SessionStore | None = None,
        calls: CallHandler | None = None,
        typescript: TypeStripper | None = None,
        wasm: tuple[WasmModule, ...] = (),
        warm: WarmChildren | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store
        self.heaps = heaps
        self.sessions = sessions
        self.calls = calls
        self.typescript = typescript
        self.wasm = wasm
        self.warm = warm
        self._slots = anyio.Semaphore(max(1, settings.max_concurrent_executions), fast_acquire=True)
        self._live: dict[str, _Live] = {}
        # Set when an execution starts while the output flusher is parked.
        self._flusher_wake: anyio.Event | None = None
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; running executions are cancelled with it."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._flusher)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            if self.warm is not None:
                await self.warm.aclose()

    @property
    def stateful(self) -> bool:
        """Whether runs end with a snapshot (heaps are stored)."""
        return self.heaps is not None

    async def submit(self, request: RunRequest) -> ExecutionRecord:
        """Store a new execution and start it; returns at once with its record.

        An input heap that is not stored fails here with :class:`HeapNotFound`.
        """
        if self._tg is None:
            raise RuntimeError("the engine is not running")
        if request.heap is not None and (
            self.heaps is None or not await self.heaps.exists(request.heap)
        ):
            raise HeapNotFound(f"heap not found: {request.heap}")
        source, imports = await self._to_javascript(request.code)
        record = ExecutionRecord(
            execution_id=str(uuid.uuid4()),
            status=ExecutionStatus.QUEUED,
            code=request.code,
            heap_memory_max_mb=request.heap_memory_max_mb,
            execution_timeout_secs=request.execution_timeout_secs,
            created_at=utc_now(),
            input_heap=request.heap,
            session=request.session,
            tags=request.tags,
        )
        await self.store.create(record)
        live = _Live(OutputSink(self.settings.output_limit_bytes), source=source, imports=imports)
        self._live[record.execution_id] = live
        if self._flusher_wake is not None:
            self._flusher_wake.set()
        self._tg.start_soon(self._run_one, record, live)
        return record

    async def get(self, execution_id: str) -> ExecutionRecord:
        """An execution's record, or :class:`NotFound`."""
        record = await self.store.get(execution_id)
        if record is None:
            raise NotFound(f"no execution with id {execution_id!r}")
        return record

    async def wait(self, execution_id: str, timeout_s: float | None = None) -> ExecutionRecord:
        """Wait until the execution is final (or ``timeout_s`` passes) and return its record."""
        live = self._live.get(execution_id)
        if live is not None:
            with anyio.move_on_after(timeout_s):
                await live.done.wait()
        return await self.get(execution_id)

    async def list(self, *, limit: int = 100, offset: int = 0) -> list[ExecutionRecord]:
        """Executions, newest first."""
        return await self.store.list(limit=limit, offset=offset)

    async def output(self, execution_id: str, page: LineRange | ByteRange) -> OutputPage:
        """A page of an execution's output (what has been written so far, if it still runs)."""
        result = await self.store.read_output(execution_id, page)
        if result is None:
            raise NotFound(f"no execution with id {execution_id!r}")
        return result

    async def cancel(self, execution_id: str) -> ExecutionRecord:
        """Stop an execution (its sandbox is killed); a final execution is left as it is."""
        live = self._live.get(execution_id)
        if live is None:
            return await self.get(execution_id)
        live.scope.cancel()
        await live.done.wait()
        return await self.get(execution_id)

    async def _run_one(self, record: ExecutionRecord, live: _Live) -> None:
        execution_id = record.execution_id
        extra = {"execution_id": execution_id}
        child: Child | None = None
        outcome: Outcome | None = None
        status = ExecutionStatus.CANCELLED
        error: str | None = "cancelled before it finished"
        heap: str | None = None
        key = Key.of(live.source, tuple(binding.specifier for binding in live.imports))
        try:
            with live.scope:
                async with self._slots:
                    restore = await self._load_heap(record)
                    child = await self._child_for(record, live, key)
                    outcome = await execute(
                        child,
                        live.source,
                        self._limits(record),
                        live.sink.write,
                        stateful=self.stateful,
                        restore=restore,
                        calls=self.calls,
                        wasm=self._wasm_for(live.source, restore),
                        imports=live.imports,
                        on_started=lambda: self.store.mark_running(execution_id, utc_now()),
                    )
                    if outcome.snapshot is not None:
                        heap = await self._keep_snapshot(record, outcome.snapshot, restore)
            if outcome is not None:
                status, error = ExecutionStatus(outcome.status), outcome.error
        except (HeapNotFound, CorruptSnapshot, StorageError) as exc:
            status, error, outcome = ExecutionStatus.FAILED, exc.message, None
        except Exception:
            incident = uuid.uuid4().hex[:12]
            logger.exception(
                "execution failed inside the supervisor (incident %s)", incident, extra=extra
            )
            status, error = ExecutionStatus.FAILED, f"internal error (incident {incident})"
        finally:
            with anyio.CancelScope(shield=True):
                if child is not None and outcome is None:
                    child.kill()
                await self._finish(record, live, status, outcome, error, heap)
                if child is not None:
                    await self.pool.release(child)
            # A child for the next run like this one is set aside now, not while
            # this one runs: preparing it (starting Deno, evaluating the modules)
            # would compete for the CPU with this execution (as the pool's
            # replacements would, see sandbox/pool.py).
            if self.warm is not None and key and self._tg is not None:
                self.warm.prepare(key, self._tg)

    async def _child_for(self, record: ExecutionRecord, live: _Live, key: Key) -> Child:
        """A child set aside for this run (imports evaluated, inspector loaded), or a plain one."""
        if self.warm is None or not key:
            return await self.pool.acquire(record.heap_memory_max_mb)
        warm = await self.warm.take(key, record.heap_memory_max_mb)
        if warm is None:
            return await self.pool.acquire(record.heap_memory_max_mb)
        for stream, text in warm.output:
            live.sink.write(stream, text)
        return warm.child

    async def _finish(
        self,
        record: ExecutionRecord,
        live: _Live,
        status: ExecutionStatus,
        outcome: Outcome | None,
        error: str | None,
        heap: str | None,
    ) -> None:
        execution_id = record.execution_id
        try:
            await self._flush(execution_id, live, final=True)
            await self.store.finish(
                execution_id,
                status,
                result=outcome.result if outcome else None,
                error=error,
                completed_at=utc_now(),
                heap=heap,
                not_persisted=tuple(
                    NotPersisted(name=lost.name, reason=lost.reason)
                    for lost in (outcome.lost if outcome and heap else ())
                ),
            )
        except StorageError:
            logger.exception(
                "could not record the end of an execution", extra={"execution_id": execution_id}
            )
        finally:
            self._live.pop(execution_id, None)
            live.done.set()

    async def _load_heap(self, record: ExecutionRecord) -> bytes | None:
        """The verified snapshot to resume from, if the run names one."""
        if record.input_heap is None or self.heaps is None:
            return None
        return await self.heaps.get(record.input_heap)

    async def _keep_snapshot(
        self, record: ExecutionRecord, snapshot: bytes, restored: bytes | None
    ) -> str:
        """Store a run's snapshot, tag it and log it in its session; returns its hash."""
        assert self.heaps is not None
        if restored is not None and record.input_heap is not None and snapshot == restored:
            # Unchanged state: the bytes it resumed from (verified against their
            # hash when loaded) are stored already. Comparing 4 MB takes ~0.1 ms,
            # hashing them ~2 ms, and a read-only run needs no write.
            heap = record.input_heap
        else:
            heap = await self.heaps.put(snapshot)
        if self.sessions is not None:
            sessions = self.sessions
            if record.tags:
                await anyio.to_thread.run_sync(sessions.set_tags, heap, dict(record.tags))
            if record.session is not None:
                session = record.session
                await anyio.to_thread.run_sync(
                    lambda: sessions.append(
                        session,
                        input_heap=record.input_heap,
                        output_heap=heap,
                        code=record.code,
                        timestamp=utc_now(),
                    )
                )
        return heap

    def _wasm_for(self, code: str, restore: bytes | None) -> tuple[tuple[str, bytes, bool], ...]:
        """The preloaded modules this run may use: named in its code or in restored functions."""
        if not self.wasm:
            return ()
        restored = restore_source_text(restore) if restore else ""
        return tuple(
            (module.name, module.data, not module.has_imports)
            for module in self.wasm
            if module.mentioned_in(code) or module.mentioned_in(restored)
        )

    async def _to_javascript(self, code: str) -> tuple[str, tuple[ImportBinding, ...]]:
        """Strip TypeScript types and take static imports out, keeping lines and columns.

        Code the stripper cannot parse runs as it is, so V8 reports the syntax
        error with its position; constructs that need transformation are
        refused (:class:`InvalidRequest`). Without a working stripper (no
        package registry on first use, say) code runs as JavaScript.
        """
        if self.typescript is None or not needs_helper(code):
            return code, ()
        try:
            prepared = await self.typescript.prepare(code)
        except InvalidRequest as exc:
            if "syntax error" in exc.message:
                return code, ()
            raise
        except SandboxUnavailable as exc:
            logger.warning("running code unstripped: %s", exc.message)
            return code, ()
        imports = tuple(
            ImportBinding(
                specifier=decl.specifier,
                default=decl.default,
                namespace=decl.namespace,
                named=[ImportName(imported=i, local=local) for i, local in decl.named],
            )
            for decl in prepared.imports
        )
        return prepared.code, imports

    def _limits(self, record: ExecutionRecord) -> Limits:
        return Limits(
            timeout_s=record.execution_timeout_secs,
            heap_memory_max_mb=record.heap_memory_max_mb,
            rss_cap_bytes=self.pool.rss_cap_bytes(record.heap_memory_max_mb),
            output_limit_bytes=self.settings.output_limit_bytes,
            poll_interval_s=self.settings.memory_poll_interval_s,
        )

    async def _flush(self, execution_id: str, live: _Live, *, final: bool = False) -> None:
        async with live.flush_lock:
            lines = live.sink.take(final=final)
            if lines:
                await self.store.append_output(execution_id, lines)

    async def _flusher(self) -> None:
        """Write output of running executions every 50 ms, so it can be read while they run.

        With nothing running it waits for the next execution instead of waking
        the server 20 times a second.
        """
        while True:
            if not self._live:
                self._flusher_wake = anyio.Event()
                try:
                    await self._flusher_wake.wait()
                finally:
                    self._flusher_wake = None
            await anyio.sleep(_FLUSH_INTERVAL_S)
            for execution_id, live in list(self._live.items()):
                try:
                    await self._flush(execution_id, live)
                except StorageError:
                    logger.exception("could not store output", extra={"execution_id": execution_id})
