"""Shared fixtures; the real-Deno tier builds the real engine here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import deno
import pytest

from supervisor.app import Services, running
from supervisor.config import (
    CapabilitySettings,
    HttpSettings,
    ModuleSettings,
    SandboxSettings,
    Settings,
    StorageSettings,
)
from supervisor.executions import build_run_request
from supervisor.store import ByteRange, ExecutionRecord

# anyio imports its subprocess module lazily; importing it here, at a shallow
# stack, keeps pytest's assertion rewriter from parsing it deep inside a test,
# where CPython 3.11's parser fails with "AST constructor recursion depth".
assert anyio.open_process is not None

# A generous bound on any one wait in the real-Deno tier: a hang fails the test instead of the run.
WAIT_BOUND_S = 60.0

EngineFactory = Callable[..., AbstractAsyncContextManager[Services]]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Session-scoped, so module-scoped async fixtures (a shared engine) may use it."""
    return "asyncio"


@asynccontextmanager
async def start_engine(
    data_dir: Path,
    *,
    stateful: bool = False,
    capabilities: CapabilitySettings | None = None,
    modules: ModuleSettings | None = None,
    **sandbox: Any,
) -> AsyncIterator[Services]:
    """Run the real composition root over real Deno children; ``sandbox`` overrides settings.

    Stateless unless ``stateful``; heaps and session logs then live under ``data_dir``.
    """
    settings = Settings(
        sandbox=SandboxSettings(deno_path=str(deno.find_deno_bin()), **sandbox),
        http=HttpSettings(),
        storage=StorageSettings(
            data_dir=data_dir,
            stateless=not stateful,
            heap_dir=data_dir / "heaps",
            session_db_path=data_dir / "sessions",
        ),
        capabilities=capabilities or CapabilitySettings(),
        modules=modules or ModuleSettings(),
    )
    async with running(settings) as services:
        yield services


@pytest.fixture
def engine_factory(tmp_path_factory: pytest.TempPathFactory) -> EngineFactory:
    """``async with engine_factory(max_concurrent_executions=1) as services:`` in a fresh dir."""

    def factory(*, stateful: bool = False, **sandbox: Any) -> AbstractAsyncContextManager[Services]:
        return start_engine(tmp_path_factory.mktemp("engine"), stateful=stateful, **sandbox)

    return factory


@pytest.fixture(scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    """One engine with default settings, shared by the tests of a module."""
    async with start_engine(tmp_path_factory.mktemp("engine")) as running_services:
        yield running_services


async def submit(services: Services, code: str, **limits: Any) -> ExecutionRecord:
    """Start an execution (limits as a client would pass them) without waiting for it."""
    request = build_run_request(
        services.settings.sandbox, code, stateful=services.engine.stateful, **limits
    )
    return await services.engine.submit(request)


async def run(services: Services, code: str, **limits: Any) -> ExecutionRecord:
    """Run ``code`` to its end and return the final record."""
    record = await submit(services, code, **limits)
    with anyio.fail_after(WAIT_BOUND_S):
        final = await services.engine.wait(record.execution_id)
    assert final.status.is_final, final
    return final


async def output_of(services: Services, record: ExecutionRecord) -> str:
    """All the stored console output of an execution."""
    page = await services.engine.output(record.execution_id, ByteRange(0, 1 << 40))
    return page.data
