"""Per-child memory cgroups, where this host offers them."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import SandboxSettings
from supervisor.sandbox import Limits, SandboxPool, execute, probe_cgroups
from tests._requirements import guards
from tests.fakes import write_fake_deno

pytestmark = pytest.mark.anyio

MIB = 1 << 20
CGROUPS = probe_cgroups()
needs_cgroups = pytest.mark.skipif(CGROUPS is None, reason="no writable memory cgroup here")


def pool(tmp_path: Path, cgroups: bool = True) -> SandboxPool:
    deno = write_fake_deno(tmp_path)
    settings = SandboxSettings(deno_path=str(deno), external_memory_max_mb=64)
    return SandboxPool(settings, tmp_path / "runner.js", CGROUPS if cgroups else None)


# RSS polling is effectively off here, so only the cgroup can stop the child.
NO_POLLING = {"timeout_s": 20, "output_limit_bytes": MIB, "poll_interval_s": 3600}


@needs_cgroups
@guards("limits:external-memory")
async def test_the_kernel_stops_a_child_over_its_cgroup_limit_without_polling(
    tmp_path: Path,
) -> None:
    sandbox = pool(tmp_path)
    child = await sandbox.spawn(8)
    assert child.cgroup is not None
    limits = Limits(heap_memory_max_mb=8, rss_cap_bytes=sandbox.rss_cap_bytes(8), **NO_POLLING)
    outcome = await execute(child, "alloc:1024", limits, lambda _s, _t: None)
    await child.close(0)
    assert outcome.status == "failed"
    assert outcome.error is not None and "memory cgroup limit" in outcome.error
    assert not child.cgroup.path.exists(), "the child's group is removed with it"


@needs_cgroups
async def test_a_child_within_its_limit_is_unaffected_by_its_cgroup(tmp_path: Path) -> None:
    sandbox = pool(tmp_path)
    child = await sandbox.spawn(8)
    limits = Limits(heap_memory_max_mb=8, rss_cap_bytes=sandbox.rss_cap_bytes(8), **NO_POLLING)
    outcome = await execute(child, "alloc:16", limits, lambda _s, _t: None)
    await child.close(0)
    assert outcome.status == "completed"


@guards("limits:external-memory")
async def test_without_cgroups_the_rss_poller_still_stops_a_memory_hog(tmp_path: Path) -> None:
    sandbox = pool(tmp_path, cgroups=False)
    child = await sandbox.spawn(8)
    assert child.cgroup is None
    limits = Limits(
        timeout_s=20,
        heap_memory_max_mb=8,
        rss_cap_bytes=sandbox.rss_cap_bytes(8),
        output_limit_bytes=MIB,
        poll_interval_s=0.01,
    )
    outcome = await execute(child, "alloc:2048", limits, lambda _s, _t: None)
    await child.close(0)
    assert outcome.status == "failed"
    assert outcome.error is not None and "memory limit exceeded" in outcome.error
