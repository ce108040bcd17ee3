"""The policy engine: every policy of a category must allow, and no policy means no capability."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from supervisor.policy.base import Decision, PolicySource
from supervisor.policy.config import CATEGORIES, Category, PoliciesConfig, parse_policies_json
from supervisor.policy.opa import RemoteOpaPolicy
from supervisor.policy.rego import LocalRegoPolicy

logger = logging.getLogger(__name__)


class PolicyEngine:
    """Decides operations of each category with that category's policies, in order.

    A category without policies is a capability the server does not offer: :meth:`has` is false
    and :meth:`decide` denies with "<category> is not enabled on this server". Otherwise the first
    denial ends the decision and is returned; all must allow for the operation to happen.
    """

    def __init__(
        self,
        policies: Mapping[str, Sequence[PolicySource]],
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._policies = {category: tuple(found) for category, found in policies.items() if found}
        self._client = client

    def has(self, category: str) -> bool:
        """Whether ``category`` (``fetch``, ``fs``, ``import``) has policies, so is enabled."""
        return category in self._policies

    @property
    def categories(self) -> tuple[str, ...]:
        """The enabled categories."""
        return tuple(self._policies)

    def sources(self, category: str) -> tuple[PolicySource, ...]:
        """The policies that decide ``category``, in the order they are asked."""
        return self._policies.get(category, ())

    async def decide(self, category: str, policy_input: dict[str, Any]) -> Decision:
        """Ask each policy of ``category`` in turn; the first denial is the decision."""
        sources = self._policies.get(category)
        if not sources:
            return Decision(False, f"{category} is not enabled on this server")
        for source in sources:
            decision = await source.decide(category, policy_input)
            if not decision.allowed:
                return decision
        return Decision(True)

    async def aclose(self) -> None:
        """Close the HTTP client the remote policies share (if this engine owns one)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def build_engine(
    config: PoliciesConfig, *, client: httpx.AsyncClient | None = None
) -> PolicyEngine:
    """Load every policy of ``config``; raises :class:`ConfigError` if any cannot load.

    A local Rego source listed under several categories is loaded once, for all of them. Remote
    policies share one ``httpx.AsyncClient`` (``client``, or one made here and closed by
    :meth:`PolicyEngine.aclose`); it ignores proxy environment variables and follows no
    redirects, so a decision goes to the configured server and nowhere else.
    """
    local_categories: dict[Path, list[Category]] = {}
    for category in CATEGORIES:
        for ref in config.policies_for(category):
            if ref.kind == "rego" and ref.path is not None:
                local_categories.setdefault(ref.path, []).append(category)
    local: dict[Path, LocalRegoPolicy] = {}
    for path, categories in local_categories.items():
        url = next(
            ref.url
            for category in categories
            for ref in config.policies_for(category)
            if ref.path == path
        )
        local[path] = LocalRegoPolicy.from_path(path, categories, name=url)

    remote = any(ref.kind == "opa" for c in CATEGORIES for ref in config.policies_for(c))
    owned = remote and client is None
    if owned:
        client = httpx.AsyncClient(trust_env=False, follow_redirects=False)

    policies: dict[str, list[PolicySource]] = {}
    for category in CATEGORIES:
        for ref in config.policies_for(category):
            source: PolicySource
            if ref.kind == "rego" and ref.path is not None:
                source = local[ref.path]
            else:
                assert client is not None
                source = RemoteOpaPolicy(ref.url, client, timeout_s=ref.timeout_s)
            policies.setdefault(category, []).append(source)
    if policies:
        logger.info(
            "Policies loaded: %s",
            ", ".join(f"{c} ({len(found)})" for c, found in policies.items()),
        )
    return PolicyEngine(policies, client=client if owned else None)


def load_policies(text_or_path: str) -> PolicyEngine:
    """Parse ``--policies-json`` (inline JSON or a path) and load every policy it names."""
    return build_engine(parse_policies_json(text_or_path))
