"""Policy decisions for brokered capabilities (fetch, fs): local Rego or remote OPA.

``load_policies(text_or_path)`` turns ``--policies-json`` into a :class:`PolicyEngine`;
``engine.has("fetch")`` says whether the capability exists, ``await engine.decide("fetch",
input)`` whether one operation may happen. Every policy of a category must allow; undefined,
errors and unreachable servers deny.
"""

from supervisor.policy.base import Decision, PolicySource
from supervisor.policy.config import (
    CATEGORIES,
    DEFAULT_OPA_TIMEOUT_S,
    Category,
    PoliciesConfig,
    PolicyRef,
    parse_policies,
    parse_policies_json,
)
from supervisor.policy.engine import PolicyEngine, build_engine, load_policies
from supervisor.policy.opa import RemoteOpaPolicy
from supervisor.policy.rego import Evaluation, LocalRegoPolicy, RegoProgram, allow_rule

__all__ = [
    "CATEGORIES",
    "DEFAULT_OPA_TIMEOUT_S",
    "Category",
    "Decision",
    "Evaluation",
    "LocalRegoPolicy",
    "PoliciesConfig",
    "PolicyEngine",
    "PolicyRef",
    "PolicySource",
    "RegoProgram",
    "RemoteOpaPolicy",
    "allow_rule",
    "build_engine",
    "load_policies",
    "parse_policies",
    "parse_policies_json",
]
