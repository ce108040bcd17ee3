"""Sandbox children: how they start, talk, are limited, pooled and stopped."""

from supervisor.sandbox.argv import child_env, deno_argv
from supervisor.sandbox.child import Child, ChildGone, ShutdownRung, spawn
from supervisor.sandbox.driver import Limits, Outcome, execute
from supervisor.sandbox.pool import SandboxPool
from supervisor.sandbox.script import write_runner

__all__ = [
    "Child",
    "ChildGone",
    "Limits",
    "Outcome",
    "SandboxPool",
    "ShutdownRung",
    "child_env",
    "deno_argv",
    "execute",
    "spawn",
    "write_runner",
]
