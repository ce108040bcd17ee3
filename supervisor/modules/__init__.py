"""External modules: ``npm:``, ``jsr:`` and URL imports resolved host-side into one bundle each.

The sandbox has no network and no npm. :class:`ModuleResolver` turns one
import specifier into one self-contained JavaScript bundle the sandbox
evaluates: it asks the policy about every module it would load, downloads URL
modules itself, bundles with ``deno bundle`` in a subprocess, and caches the
result by content for every execution and server process.
"""

from supervisor.config import ModuleSettings
from supervisor.decisions import Decide, PolicyDecision
from supervisor.modules.models import (
    BundleFormat,
    ModuleError,
    ModulePreparer,
    PreparedModuleLike,
    ResolvedModule,
)
from supervisor.modules.resolver import ModuleResolver

__all__ = [
    "BundleFormat",
    "Decide",
    "ModuleError",
    "ModulePreparer",
    "ModuleResolver",
    "ModuleSettings",
    "PolicyDecision",
    "PreparedModuleLike",
    "ResolvedModule",
]
