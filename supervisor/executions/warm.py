"""A child set aside with what the next execution will need already done.

Evaluating a bundle is the bulk of an import's cost (lodash-es: ~9 ms of a
fresh child's CPU, against ~3 ms for a whole ``1+1`` execution), and the pool
can hide it as it hides Deno's start-up: after an execution whose static
imports are ``S``, one ready child evaluates ``S``'s bundles (a ``Preload``)
and waits. The next execution importing exactly ``S``, in the same order and
with the default heap limit, gets that child; its imports are found already
loaded. A cell with top-level await is evaluated through the inspector,
whose loading costs ~20 ms of the first such cell in a child: after one, the
child set aside connects it too, and the next cell with await gets it ready.
Anything else takes a plain child from the pool, as before.

Nothing leaks between executions: the set-aside child has run no user code,
only the modules that execution is about to import anyway and the inspector
it would load itself. Its imports are decided by policy again when it is
handed out (policies may have changed); a denial sends the execution down
the plain path, where it fails as usual. Console output the modules printed
while evaluating is replayed as the start of the execution's output.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from protocol import OutputStream
from supervisor.brokers.models import BrokerError
from supervisor.config import SandboxSettings
from supervisor.executions.capabilities import Capabilities
from supervisor.sandbox import Child, ChildGone, Limits, SandboxPool, preload

logger = logging.getLogger(__name__)

# What the child decides by (runner.js): such a cell is evaluated in V8's REPL mode.
_MENTIONS_AWAIT = re.compile(r"\bawait\b", re.ASCII)


@dataclass(frozen=True)
class Key:
    """What a set-aside child has done: these imports evaluated, the inspector connected."""

    imports: tuple[str, ...] = ()
    repl: bool = False

    @classmethod
    def of(cls, code: str, imports: tuple[str, ...]) -> Key:
        """The key of a run of ``code`` (as the sandbox runs it) with these static imports."""
        return cls(imports, _MENTIONS_AWAIT.search(code) is not None)

    def __bool__(self) -> bool:
        return bool(self.imports) or self.repl


@dataclass(frozen=True)
class WarmChild:
    """A child prepared for ``key``, and what its modules printed meanwhile."""

    key: Key
    child: Child
    output: tuple[tuple[OutputStream, str], ...]


def default_limits(settings: SandboxSettings, pool: SandboxPool) -> Limits:
    """The limits of a run with the server's defaults, which a set-aside child must fit."""
    return Limits(
        timeout_s=settings.execution_timeout_s,
        heap_memory_max_mb=settings.heap_memory_max_mb,
        rss_cap_bytes=pool.rss_cap_bytes(settings.heap_memory_max_mb),
        output_limit_bytes=settings.output_limit_bytes,
        poll_interval_s=settings.memory_poll_interval_s,
    )


class WarmChildren:
    """At most one set-aside child, for the last run that had imports or top-level await."""

    def __init__(self, pool: SandboxPool, capabilities: Capabilities, limits: Limits) -> None:
        self.pool = pool
        self.capabilities = capabilities
        self.limits = limits  # a run must ask for this heap limit to get a set-aside child
        self._ready: WarmChild | None = None
        self._preparing: Key | None = None
        self.handed_out = 0  # set-aside children given to runs, for tests and benchmarks

    @property
    def ready(self) -> Key | None:
        """What the child set aside now is prepared for (None: there is none)."""
        return None if self._ready is None else self._ready.key

    async def take(self, key: Key, heap_memory_max_mb: int) -> WarmChild | None:
        """The set-aside child for exactly this key, if there is one and its imports are allowed."""
        ready = self._ready
        if ready is None or ready.key != key:
            return None
        if heap_memory_max_mb != self.limits.heap_memory_max_mb:
            return None
        self._ready = None
        try:
            for specifier in key.imports:
                await self.capabilities.resolve_import(specifier)
        except BaseException as exc:  # a denial, or the run was cancelled meanwhile
            with anyio.CancelScope(shield=True):
                await self.pool.release(ready.child)
            if isinstance(exc, BrokerError):
                return None
            raise
        self.handed_out += 1
        return ready

    def prepare(self, key: Key, tg: TaskGroup) -> None:
        """Set a child aside for ``key`` in the background, unless one is there or on its way."""
        if not key or self._preparing == key or (self._ready and self._ready.key == key):
            return
        self._preparing = key
        tg.start_soon(self._prepare, key)

    async def aclose(self) -> None:
        """Discard the set-aside child."""
        ready, self._ready = self._ready, None
        if ready is not None:
            with anyio.CancelScope(shield=True):
                await self.pool.release(ready.child)

    async def _prepare(self, key: Key) -> None:
        child: Child | None = None
        try:
            modules = [await self.capabilities.resolve_import(spec) for spec in key.imports]
            child = await self.pool.acquire(self.limits.heap_memory_max_mb)
            output = await preload(
                child,
                [(m.specifier, m.format, m.source) for m in modules],
                self.limits,
                repl=key.repl,
            )
        except (BrokerError, ChildGone) as exc:
            # The execution that imports these will meet the same problem and report it.
            logger.debug("no child set aside for %s: %s", key, exc)
            if child is not None:
                with anyio.CancelScope(shield=True):
                    await self.pool.release(child)
            return
        except BaseException:
            if child is not None:
                with anyio.CancelScope(shield=True):
                    await self.pool.release(child)
            raise
        finally:
            if self._preparing == key:
                self._preparing = None
        replaced, self._ready = self._ready, WarmChild(key, child, tuple(output))
        if replaced is not None:
            await self.pool.release(replaced.child)
