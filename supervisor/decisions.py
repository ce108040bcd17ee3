"""What brokers ask of the policies: the shape of a decision, and of the function that makes one.

Brokers (fetch, fs, modules) sit beside the policy package, not above it, so
they see decisions only through this shape; ``supervisor.policy.Decision``
has it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class PolicyDecision(Protocol):
    """Whether an operation may happen, and why not when it may not."""

    @property
    def allowed(self) -> bool: ...

    @property
    def reason(self) -> str: ...


# Takes the policy input of one operation ({"operation": ..., ...}).
Decide = Callable[[dict[str, Any]], Awaitable[PolicyDecision]]

# What a trusted Deno helper may need from the server's environment to reach a
# package registry: a proxy, an extra CA. Nothing else (no HOME, no token).
REGISTRY_ENV_PASSTHROUGH = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "NODE_EXTRA_CA_CERTS",
)

__all__ = ["REGISTRY_ENV_PASSTHROUGH", "Decide", "PolicyDecision"]
