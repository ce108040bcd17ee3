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

__all__ = ["Decide", "PolicyDecision"]
