"""Per-child memory cgroups, where this host offers them."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from supervisor.config import SandboxSettings
from supervisor.sandbox import Limits, MemoryCgroups, SandboxPool, execute, probe_cgroups
from supervisor.sandbox.cgroups import remove_stale
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


@needs_cgroups
async def test_a_clean_group_is_reused_and_still_stops_a_hog_then_is_discarded(
    tmp_path: Path,
) -> None:
    assert CGROUPS is not None
    cgroups = MemoryCgroups(CGROUPS.parent, CGROUPS.version)
    settings = SandboxSettings(deno_path=str(write_fake_deno(tmp_path)), external_memory_max_mb=64)
    sandbox = SandboxPool(settings, tmp_path / "runner.js", cgroups)
    limits = Limits(heap_memory_max_mb=8, rss_cap_bytes=sandbox.rss_cap_bytes(8), **NO_POLLING)

    first = await sandbox.spawn(8)
    outcome = await execute(first, "alloc:16", limits, lambda _s, _t: None)
    await first.close(0)
    assert outcome.status == "completed"
    assert first.cgroup is not None and first.cgroup.path.exists(), "kept for the next child"

    # Reused, with the limit of the new child's heap written over the old one.
    second = await sandbox.spawn(16)
    assert second.cgroup is first.cgroup
    assert second.cgroup.limit_bytes == sandbox.rss_cap_bytes(16)
    bigger = Limits(heap_memory_max_mb=16, rss_cap_bytes=sandbox.rss_cap_bytes(16), **NO_POLLING)
    outcome = await execute(second, "alloc:1024", bigger, lambda _s, _t: None)
    await second.close(0)
    assert outcome.error is not None and "memory cgroup limit" in outcome.error
    assert not second.cgroup.path.exists(), "a group that reached its limit is not reused"

    third = await sandbox.spawn(8)
    assert third.cgroup is not None and third.cgroup.path != second.cgroup.path
    await third.close(0)
    cgroups.close()
    assert not third.cgroup.path.exists(), "closing removes the idle groups"


@needs_cgroups
def test_groups_of_a_supervisor_that_is_gone_are_removed_at_start_up() -> None:
    assert CGROUPS is not None
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = CGROUPS.parent / f"mcp-v8-{dead.pid}-1"
    legacy = CGROUPS.parent / f"mcp-v8-child-{dead.pid}"
    live = CGROUPS.parent / f"mcp-v8-{os.getpid()}-999999"
    for path in (stale, legacy, live):
        path.mkdir()
    try:
        assert remove_stale(CGROUPS.parent) >= 2
        assert not stale.exists() and not legacy.exists()
        assert live.exists(), "a running supervisor's idle group is left alone"
    finally:
        for path in (stale, legacy, live):
            with contextlib.suppress(OSError):
                path.rmdir()


def _memory_cgroup(proc_file: Path) -> str:
    for line in proc_file.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    raise AssertionError(f"no memory line in {proc_file}")


@needs_cgroups
async def test_a_child_starts_in_its_group_and_no_supervisor_thread_is_left_there(
    tmp_path: Path,
) -> None:
    assert CGROUPS is not None
    cgroups = MemoryCgroups(CGROUPS.parent, CGROUPS.version)
    settings = SandboxSettings(deno_path=str(write_fake_deno(tmp_path)), external_memory_max_mb=64)
    sandbox = SandboxPool(settings, tmp_path / "runner.js", cgroups)
    ours = _memory_cgroup(Path("/proc/self/cgroup"))
    groups = []
    # The second child reuses the first one's group (and its open control files).
    for _ in range(2):
        child = await sandbox.spawn(8)
        try:
            assert child.cgroup is not None
            groups.append(child.cgroup)
            where = _memory_cgroup(Path(f"/proc/{child.pid}/cgroup"))
            assert where.endswith(child.cgroup.path.name)
            # The group is charged for the child's start-up too, not only its later growth.
            usage = int((child.cgroup.path / "memory.usage_in_bytes").read_text())
            assert usage > 0
            for task in Path("/proc/self/task").iterdir():
                assert _memory_cgroup(task / "cgroup") == ours, f"thread {task.name} left behind"
        finally:
            await child.close(0)
    cgroups.close()
    assert groups[0] is groups[1]
    assert not groups[0].path.exists()


@needs_cgroups
async def test_a_program_that_cannot_start_leaves_no_group_behind(tmp_path: Path) -> None:
    assert CGROUPS is not None
    ours = f"mcp-v8-{os.getpid()}-*"
    before = set(CGROUPS.parent.glob(ours))
    cgroups = MemoryCgroups(CGROUPS.parent, CGROUPS.version)
    settings = SandboxSettings(deno_path=str(tmp_path / "no-such-deno"))
    sandbox = SandboxPool(settings, tmp_path / "runner.js", cgroups)
    with pytest.raises(OSError):
        await sandbox.spawn(8)
    cgroups.close()
    assert set(CGROUPS.parent.glob(ours)) == before
