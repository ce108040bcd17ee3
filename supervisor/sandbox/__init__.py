"""Sandbox children: how they start, talk, are limited, pooled and stopped."""

from supervisor.sandbox.argv import child_env, deno_argv
from supervisor.sandbox.cgroups import ChildCgroup, MemoryCgroups
from supervisor.sandbox.cgroups import probe as probe_cgroups
from supervisor.sandbox.child import Child, ChildGone, ShutdownRung
from supervisor.sandbox.driver import CallHandler, Limits, Outcome, execute, preload
from supervisor.sandbox.pool import SandboxPool
from supervisor.sandbox.script import boot_message

__all__ = [
    "CallHandler",
    "Child",
    "ChildCgroup",
    "ChildGone",
    "Limits",
    "MemoryCgroups",
    "Outcome",
    "SandboxPool",
    "ShutdownRung",
    "boot_message",
    "child_env",
    "deno_argv",
    "execute",
    "preload",
    "probe_cgroups",
]
