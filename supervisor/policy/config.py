"""``--policies-json``: which policies decide each capability, parsed into a frozen tree.

The shape, as the seed documents it::

    {"fetch": {"policies": [{"url": "http://localhost:8181"}]},
     "fs":    {"policies": [{"url": "file:///etc/mcp-v8/fs.rego"}]}}

Each policy names its source by URL: ``http://`` or ``https://`` is a remote OPA server asked
through its REST data API; ``file:///path`` is a local ``.rego`` file or a directory of them,
evaluated in-process. A remote policy may carry ``timeout_s`` (its answer deadline). Unknown
categories and keys are rejected, so a typo cannot silently leave a capability unguarded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlsplit

from supervisor.errors import ConfigError

Category = Literal["fetch", "fs", "import"]
CATEGORIES: tuple[Category, ...] = get_args(Category)
SourceKind = Literal["opa", "rego"]

DEFAULT_OPA_TIMEOUT_S = 2.0

_CATEGORY_KEYS = frozenset({"policies"})
_POLICY_KEYS = frozenset({"url", "timeout_s"})


@dataclass(frozen=True, kw_only=True)
class PolicyRef:
    """One policy source: a remote OPA server (``kind="opa"``) or local Rego (``"rego"``)."""

    url: str
    kind: SourceKind
    path: Path | None = None  # the file or directory of a local Rego policy
    timeout_s: float = DEFAULT_OPA_TIMEOUT_S  # remote OPA only: deadline for one answer


@dataclass(frozen=True, kw_only=True)
class PoliciesConfig:
    """The policies of each category; a category without any means the capability is absent."""

    fetch: tuple[PolicyRef, ...] = ()
    fs: tuple[PolicyRef, ...] = ()
    import_: tuple[PolicyRef, ...] = ()

    def policies_for(self, category: Category) -> tuple[PolicyRef, ...]:
        """The policies that must all allow an operation of ``category``."""
        return self.import_ if category == "import" else getattr(self, category)


def parse_policies_json(text_or_path: str) -> PoliciesConfig:
    """Parse ``--policies-json``: inline JSON text, or the path of a JSON file.

    Text whose first non-blank character is ``{`` (or ``[``, to report it) is inline JSON;
    anything else is a path.
    Raises :class:`ConfigError` naming the problem (and the file, for a path).
    """
    stripped = text_or_path.strip()
    if not stripped:
        raise ConfigError("--policies-json is empty: give inline JSON or the path of a JSON file")
    if stripped.startswith(("{", "[")):
        where, text = "--policies-json", stripped
    else:
        path = Path(stripped).expanduser()
        where = f"policies file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where} cannot be read: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return parse_policies(document, where=where)


def parse_policies(document: Any, *, where: str = "--policies-json") -> PoliciesConfig:
    """Validate an already-decoded ``--policies-json`` document."""
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a JSON object of categories, got {_kind(document)}")
    found: dict[str, tuple[PolicyRef, ...]] = {}
    for category, section in document.items():
        if category not in CATEGORIES:
            raise ConfigError(
                f"{where}: unknown policy category {category!r} "
                f"(expected one of {', '.join(CATEGORIES)})"
            )
        found[category] = _parse_category(section, where=f"{where}: {category}")
    return PoliciesConfig(
        fetch=found.get("fetch", ()), fs=found.get("fs", ()), import_=found.get("import", ())
    )


def _parse_category(section: Any, *, where: str) -> tuple[PolicyRef, ...]:
    if not isinstance(section, dict):
        raise ConfigError(f'{where}: expected {{"policies": [...]}}, got {_kind(section)}')
    _reject_unknown_keys(section, _CATEGORY_KEYS, where)
    if "policies" not in section:
        raise ConfigError(f'{where}: missing "policies"')
    policies = section["policies"]
    if not isinstance(policies, list):
        raise ConfigError(f"{where}.policies: expected a list, got {_kind(policies)}")
    return tuple(
        _parse_policy(entry, where=f"{where}.policies[{i}]") for i, entry in enumerate(policies)
    )


def _parse_policy(entry: Any, *, where: str) -> PolicyRef:
    if not isinstance(entry, dict):
        raise ConfigError(f'{where}: expected {{"url": ...}}, got {_kind(entry)}')
    _reject_unknown_keys(entry, _POLICY_KEYS, where)
    url = entry.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f'{where}: "url" must be a non-empty string')
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigError(f"{where}: remote policy URL {url!r} has no host")
        if parts.query or parts.fragment:
            raise ConfigError(f"{where}: remote policy URL {url!r} must not have a query")
        timeout_s = entry.get("timeout_s", DEFAULT_OPA_TIMEOUT_S)
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not math.isfinite(timeout_s)
            or timeout_s <= 0
        ):
            raise ConfigError(f'{where}: "timeout_s" must be a positive number of seconds')
        return PolicyRef(url=url, kind="opa", timeout_s=float(timeout_s))
    if scheme == "file":
        if "timeout_s" in entry:
            raise ConfigError(f'{where}: "timeout_s" applies only to remote OPA policies')
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{where}: file URL {url!r} names host {parts.netloc!r}; use file:///absolute/path"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"{where}: file URL {url!r} must not have a query")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"{where}: file URL {url!r} must hold an absolute path")
        return PolicyRef(url=url, kind="rego", path=Path(path))
    raise ConfigError(
        f"{where}: unsupported policy URL {url!r} "
        "(use http:// or https:// for OPA, file:/// for local Rego)"
    )


def _reject_unknown_keys(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )
