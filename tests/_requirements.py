"""The security guarantees of mcp-v8, each with a stable id, and the tests that hold them.

Tag a test with ``@guards("id")``; ``tests/test_requirements.py`` fails when a
guarantee has no test or a test names an unknown id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

REQUIREMENTS: dict[str, str] = {
    "sandbox:no-permissions": "no --allow-* permission but inspector, and no downloads",
    "sandbox:no-fs-read": "user code cannot read any file, the server's database included",
    "sandbox:no-fs-write": "user code cannot create or change any file",
    "sandbox:no-env": "no variable of the server's environment reaches user code",
    "sandbox:no-net": "user code cannot open, accept or fetch over any connection",
    "sandbox:no-remote-code": "npm:, https: and other remote imports download nothing",
    "sandbox:no-subprocess": "user code cannot start processes",
    "sandbox:no-ffi": "user code cannot load native libraries",
    "sandbox:no-persistence": "nothing one execution does is visible to the next",
    "sandbox:one-process-each": "every execution runs in its own process, discarded after it",
    "limits:timeout": "tight loops, microtask floods and endless timers end at the deadline",
    "limits:heap": "user code cannot grow the JavaScript heap past its limit",
    "limits:external-memory": "ArrayBuffers and wasm memory cannot grow a child without bound",
    "limits:concurrency": "executions beyond the limit wait; none start early",
    "limits:output": "console output of one execution never grows the server past its cap",
    "limits:input-size": "code and request bodies over their caps are refused",
    "channel:untrusted-frames": "garbage, huge frames or a closed pipe fail only that execution",
    "channel:decoder-total": "the frame decoder never crashes, whatever the bytes or chunking",
    "http:host-origin": "requests with a foreign Host or Origin are refused on every route",
    "lifecycle:kill-group": "stopping a child stops everything in its process group",
    "lifecycle:shutdown-ladder": "a child that ignores SIGTERM is still ended, in bounded time",
    "lifecycle:no-orphans": "children do not outlive a server that was killed",
    "store:crash-safe": "a killed server loses no finished execution and leaves none running",
    "fs:no-escape": "fs reaches only paths the policy allowed: no .., symlink, race or /proc trick",
    "fs:no-hardlink": "fs never reads or writes an inode also linked at another path",
    "fetch:policy-every-hop": "every fetch and every redirect hop is decided by policy first",
    "fetch:no-ssrf": "the address dialed is the one the policy saw: no numeric or DNS trick",
    "fetch:no-secret-leak": "injected headers and OAuth secrets never reach other hosts or output",
    "policy:fail-closed": "undefined decisions, broken policies and unreachable OPA deny",
    "import:off-by-default": "no module is resolved or downloaded without --allow-external-modules",
    "import:policy-every-module": "every module of an import graph is decided before its download",
    "import:only-downloaded-code": "no local file of the host ever ends up in a bundle",
}

F = TypeVar("F", bound=Callable[..., object])


def guards(*ids: str) -> Callable[[F], F]:
    """Mark a test as one that tries to break these guarantees."""

    def mark(test: F) -> F:
        existing: tuple[str, ...] = getattr(test, "__guards__", ())
        test.__guards__ = existing + ids  # type: ignore[attr-defined]
        return test

    return mark
