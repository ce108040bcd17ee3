"""Per-child memory cgroups, where the host lets us make them.

A cgroup limit is enforced by the kernel the moment memory is charged, so it
catches allocations faster than any polling; the RSS poller stays on as the
precise, portable check. Layouts differ between hosts, so the supervisor
probes at start-up and uses what works:

- cgroup v2 with the memory controller delegated to us (a systemd service with
  ``Delegate=yes``, a container): the supervisor moves itself into a leaf
  ``supervisor`` group, enables ``+memory`` for its subtree and makes one
  group per child beside it;
- cgroup v1 with a writable memory hierarchy: one group per child below ours;
- anything else: no cgroups (RSS polling only).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ChildCgroup:
    """The memory cgroup of one child."""

    path: Path
    version: int

    def oom_killed(self) -> bool:
        """Whether the kernel killed something in this group for exceeding its limit."""
        try:
            if self.version == 2:
                events = (self.path / "memory.events").read_text()
            else:
                events = (self.path / "memory.oom_control").read_text()
                failcnt = int((self.path / "memory.failcnt").read_text().strip() or 0)
                if failcnt and "oom_kill " not in events:
                    return True
        except OSError:
            return False
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip() not in ("", "0"):
                return True
        return False

    def remove(self) -> None:
        """Delete the group (its process must have exited)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


@dataclass(frozen=True)
class MemoryCgroups:
    """Where child groups are made, and how."""

    parent: Path
    version: int

    def attach(self, pid: int, limit_bytes: int) -> ChildCgroup | None:
        """Put ``pid`` in a new group limited to ``limit_bytes``; None if that fails."""
        path = self.parent / f"mcp-v8-child-{pid}"
        limit_file = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        try:
            path.mkdir()
            (path / limit_file).write_text(str(limit_bytes))
            if self.version == 2:
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
            (path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            logger.debug("could not put child %s in a memory cgroup: %s", pid, exc)
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return ChildCgroup(path, self.version)


def _own_paths() -> tuple[str | None, str | None]:
    """Our cgroup path in the v2 tree and in the v1 memory hierarchy."""
    v2 = v1 = None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _probe_v1(path: str) -> MemoryCgroups | None:
    parent = _ROOT / "memory" / path.lstrip("/")
    test = parent / f"mcp-v8-probe-{os.getpid()}"
    try:
        test.mkdir()
        (test / "memory.limit_in_bytes").write_text(str(1 << 30))
        test.rmdir()
    except OSError:
        with contextlib.suppress(OSError):
            test.rmdir()
        return None
    return MemoryCgroups(parent, 1)


def _probe_v2(path: str) -> MemoryCgroups | None:
    if path in ("", "/"):
        return None  # never make groups at the host's root
    base = _ROOT if (_ROOT / "cgroup.controllers").exists() else _ROOT / "unified"
    own = base / path.lstrip("/")
    try:
        if "memory" not in (own / "cgroup.controllers").read_text().split():
            return None
        leaf = own / "supervisor"
        leaf.mkdir(exist_ok=True)
        # "No internal processes": move ourselves into the leaf before enabling
        # the controller for children. If anything else shares our group, the
        # write to subtree_control fails and we fall back.
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        (own / "cgroup.subtree_control").write_text("+memory")
    except OSError:
        return None
    return MemoryCgroups(own, 2)


def probe(enabled: bool = True) -> MemoryCgroups | None:
    """Find a way to make per-child memory cgroups on this host, or None."""
    if not enabled:
        return None
    v2, v1 = _own_paths()
    found = (_probe_v2(v2) if v2 is not None else None) or (
        _probe_v1(v1) if v1 is not None else None
    )
    if found is None:
        logger.info("no usable memory cgroup: limiting child memory by RSS polling alone")
    else:
        logger.info("per-child memory cgroups (v%d) under %s", found.version, found.parent)
    return found
