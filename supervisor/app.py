"""Composition root: builds the store, the sandbox pool and the engine from settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

import sandbox_host
from supervisor.config import Settings
from supervisor.executions import Engine
from supervisor.sandbox import SandboxPool, probe_cgroups, write_runner
from supervisor.store import SqliteExecutionStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """The running parts the edges (REST, MCP) talk to."""

    settings: Settings
    engine: Engine
    sandbox_version: str


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Services]:
    """Start everything, check the sandbox works, yield the services, stop cleanly."""
    store = SqliteExecutionStore(settings.storage.data_dir / "executions.sqlite3")
    interrupted = await store.open()
    if interrupted:
        logger.warning("marked %d unfinished executions from a previous run as failed", interrupted)
    try:
        runner = write_runner(sandbox_host.RUNNER, settings.storage.data_dir / "runtime")
        cgroups = await anyio.to_thread.run_sync(probe_cgroups, settings.sandbox.memory_cgroups)
        pool = SandboxPool(settings.sandbox, runner, cgroups)
        version = await pool.check()
        logger.info("sandbox ready: %s", version)
        engine = Engine(settings.sandbox, pool, store)
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            await tg.start(engine.run)
            yield Services(settings=settings, engine=engine, sandbox_version=version)
            tg.cancel_scope.cancel()
    finally:
        await store.close()
