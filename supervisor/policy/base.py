"""What every policy source answers: may this operation happen?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Decision:
    """A policy decision; ``reason`` says why when it is a denial."""

    allowed: bool
    reason: str = ""


class PolicySource(Protocol):
    """One policy (a local Rego file or directory, or a remote OPA server)."""

    name: str

    async def decide(self, category: str, policy_input: dict[str, Any]) -> Decision:
        """Evaluate ``data.mcp.<category>.allow`` for ``policy_input``; undefined is a denial."""
        ...
