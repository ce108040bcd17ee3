"""Which imports can be resolved, and the URL the policy is asked about for each.

Three kinds reach the resolver: ``npm:<name>[@range][/subpath]`` (scoped names
too), ``jsr:@scope/name[@range][/subpath]`` and ``http(s)://`` URLs. Anything
else is refused with ``EINVAL`` before any I/O: a bare name (the user most
likely meant ``npm:<name>``), a relative path (there is nothing it could be
relative to), ``file:`` and ``data:`` (they would read this host's files or
bypass the policy), and ``node:`` (built-ins are the sandbox's own business).

Names, ranges and subpaths are checked against conservative character sets:
they end up on the bundler's command line, in registry URLs and, with a CDN,
in a URL path, so nothing that needs escaping is let through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import httpx

from supervisor.config import ModuleSettings
from supervisor.modules.models import ModuleError

MAX_SPECIFIER_CHARS = 2048

_NPM_NAME = re.compile(r"(?:@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*", re.IGNORECASE)
_JSR_NAME = re.compile(r"@[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*")
# Semver ranges and dist-tags, without spaces ("^4.17.0", ">=1.2.0", "1.x", "next").
_RANGE = re.compile(r"[A-Za-z0-9.^~<>=|*+_-]+")
_SUBPATH_SEGMENT = re.compile(r"[A-Za-z0-9._@+~-]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_URL_BAD_CHAR = re.compile(r"[\x00-\x20\x7f]")

SUPPORTED = "npm:<package>, jsr:@scope/name and http(s):// URLs"

Kind = Literal["npm", "jsr", "url"]


@dataclass(frozen=True)
class Package:
    """A registry package: ``npm:lodash-es@4.17.21/camelCase.js`` in parts."""

    registry: Literal["npm", "jsr"]
    name: str  # "lodash-es", "@scope/name"
    range: str | None  # "4.17.21", "^1", "latest"; None for any
    subpath: str  # "" or "/camelCase.js"

    @property
    def rest(self) -> str:
        """The specifier without its ``npm:``/``jsr:`` prefix."""
        at = f"@{self.range}" if self.range is not None else ""
        return f"{self.name}{at}{self.subpath}"


@dataclass(frozen=True)
class Target:
    """A parsed specifier: what the policy is asked about, and where it is loaded from.

    ``url`` is the URL in the policy input. ``module_url`` is set when the
    module is loaded by walking a URL graph: a URL specifier, or an ``npm:``
    specifier served by the CDN. ``package`` is set for ``npm:`` and ``jsr:``.
    """

    specifier: str
    kind: Kind
    url: str
    module_url: str | None = None
    package: Package | None = None


def registry_base(url: str) -> str:
    """A registry or CDN base URL that ends with exactly one slash."""
    return url.rstrip("/") + "/"


def parse_specifier(specifier: str, settings: ModuleSettings) -> Target:
    """The target of ``specifier``, or :class:`ModuleError` ``EINVAL`` saying what is supported."""
    if len(specifier) > MAX_SPECIFIER_CHARS:
        raise ModuleError(
            "EINVAL", f"cannot import a specifier of {len(specifier)} characters: too long"
        )
    scheme_match = _SCHEME.match(specifier)
    scheme = scheme_match.group(1).lower() if scheme_match else None
    if scheme in ("npm", "jsr"):
        package = parse_package(specifier)
        if package.registry == "jsr":
            url = registry_base(settings.jsr_registry) + package.name
            return Target(specifier, "jsr", url, package=package)
        if settings.cdn:
            cdn_url = registry_base(settings.cdn) + package.rest
            return Target(specifier, "npm", cdn_url, module_url=cdn_url, package=package)
        url = registry_base(settings.npm_registry) + package.name
        return Target(specifier, "npm", url, package=package)
    if scheme in ("http", "https"):
        url = normalize_url(specifier)
        return Target(specifier, "url", url, module_url=url)
    raise ModuleError("EINVAL", unsupported_message(specifier, scheme))


def unsupported_message(specifier: str, scheme: str | None) -> str:
    """Why ``specifier`` cannot be imported, with a hint where one helps."""
    shown = specifier if len(specifier) <= 200 else specifier[:200] + "..."
    base = f"cannot import {shown!r}: only {SUPPORTED} can be imported"
    if scheme == "node":
        return f"{base}; node: built-in modules are provided by the sandbox itself"
    if scheme is None and not specifier.startswith((".", "/")):
        try:
            parse_package(f"npm:{specifier}")
        except ModuleError:
            return base
        return f"{base}; did you mean 'npm:{specifier}'?"
    return base


def parse_package(specifier: str) -> Package:
    """``npm:``/``jsr:`` specifier in parts; ``EINVAL`` naming what is malformed."""
    prefix, _, body = specifier.partition(":")
    registry: Literal["npm", "jsr"] = "jsr" if prefix.lower() == "jsr" else "npm"
    scope = ""
    if body.startswith("@"):
        scope, slash, body = body.partition("/")
        if not slash:
            raise ModuleError("EINVAL", f"cannot import {specifier!r}: a scope needs a name")
        scope += "/"
    head, slash, sub = body.partition("/")
    bare, at, version = head.partition("@")
    name = scope + bare
    pattern = _JSR_NAME if registry == "jsr" else _NPM_NAME
    if not pattern.fullmatch(name) or len(name) > 214:
        expected = "@scope/name" if registry == "jsr" else "a package name"
        raise ModuleError("EINVAL", f"cannot import {specifier!r}: {name!r} is not {expected}")
    if at and not _RANGE.fullmatch(version):
        raise ModuleError(
            "EINVAL", f"cannot import {specifier!r}: {version!r} is not a version range or tag"
        )
    segments = sub.split("/") if slash else []
    for segment in segments:
        if not _SUBPATH_SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise ModuleError(
                "EINVAL", f"cannot import {specifier!r}: {'/' + sub!r} is not a module path"
            )
    subpath = "/" + "/".join(segments) if segments else ""
    return Package(registry, name, version if at else None, subpath)


def normalize_url(url: str) -> str:
    """An ``http(s)`` URL in canonical form, without its fragment; ``EINVAL`` otherwise.

    Credentials in the URL are refused so that the host the policy is asked
    about is the host contacted.
    """
    if _URL_BAD_CHAR.search(url):
        raise ModuleError("EINVAL", f"cannot import {url!r}: a URL may not contain spaces")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ModuleError("EINVAL", f"cannot import {url!r}: not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ModuleError("EINVAL", f"cannot import {url!r}: not an absolute http(s) URL")
    if parsed.userinfo:
        raise ModuleError("EINVAL", f"cannot import {url!r}: URLs with credentials are refused")
    # "http://h:8080" and "http://h:8080/" are one module (the WHATWG URL form has the slash).
    return str(parsed.copy_with(path=parsed.path or "/", fragment=None))


def npm_metadata_url(registry: str, name: str) -> str:
    """The package document's URL; a scoped name's slash is encoded (``@scope%2fname``)."""
    return registry_base(registry) + quote(name, safe="@")


def jsr_metadata_url(registry: str, name: str) -> str:
    """The package's version list on a JSR registry."""
    return registry_base(registry) + name + "/meta.json"


def policy_input(specifier: str, url: str) -> dict[str, str]:
    """The input of one import decision."""
    return {"operation": "import", "specifier": specifier, "url": url}
