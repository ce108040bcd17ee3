"""The only place that knows how a sandbox child is started: argv and environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

# The child gets no --allow-* flag except inspector access, which opens no
# port and is used only for REPL-mode evaluation (top-level await). Without
# --no-remote/--no-npm Deno would download imports with no net permission.
_LOCKDOWN_FLAGS = (
    "--no-prompt",
    "--no-remote",
    "--no-npm",
    "--no-config",
    "--no-lock",
    "--allow-sys=inspector",
)

# Room for the runner's own objects, on top of what user code may allocate.
HEAP_BASELINE_MB = 8

# A DENO_DIR under /dev/null cannot exist: nothing (localStorage, the Cache
# API, reached through internal ops) can persist between executions.
UNWRITABLE_DENO_DIR = "/dev/null/mcp-v8-deno-dir"

# Variables passed through from the supervisor; everything else (cloud
# credentials, tokens) stays out of the child.
_ENV_PASSTHROUGH = ("LANG", "LC_ALL", "TZ")


def deno_argv(deno_path: str, runner: str, *, heap_memory_max_mb: int) -> list[str]:
    """Command line for one child that may allocate ``heap_memory_max_mb`` on its JS heap."""
    heap = heap_memory_max_mb + HEAP_BASELINE_MB
    return [
        deno_path,
        "run",
        *_LOCKDOWN_FLAGS,
        f"--v8-flags=--max-old-space-size={heap}",
        runner,
    ]


def child_env(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a child: an allow-list, never the supervisor's secrets."""
    source = os.environ if parent is None else parent
    env = {k: source[k] for k in _ENV_PASSTHROUGH if k in source}
    env.update(
        DENO_DIR=UNWRITABLE_DENO_DIR,
        DENO_NO_UPDATE_CHECK="1",
        NO_COLOR="1",
    )
    return env
