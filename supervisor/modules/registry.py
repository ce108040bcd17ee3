"""Does a package exist? Asked of the registry before the bundler is started.

Deno's bundler panics on an ``npm:`` package that does not exist, with a
message no user should see; asking the registry first turns that into
``ENOTFOUND`` naming the package, and an unreachable registry into
``ENETWORK`` naming the registry, before a subprocess is spent. Only the
status is read: a package document can be megabytes and the bundler fetches
it anyway. (A version that does not exist still reaches the bundler, whose
panic names the range; :mod:`supervisor.modules.bundler` reads it.)
"""

from __future__ import annotations

import httpx

from supervisor.config import ModuleSettings
from supervisor.modules.models import ModuleError
from supervisor.modules.specifiers import (
    Package,
    jsr_metadata_url,
    npm_metadata_url,
    registry_base,
)

# What npm clients send: the abbreviated document, where the registry has one.
_NPM_ACCEPT = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"


def describe_http_error(exc: httpx.HTTPError) -> str:
    """A short, user-safe description of a transport failure."""
    if isinstance(exc, httpx.TimeoutException):
        return "it did not answer in time"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def check_package(
    client: httpx.AsyncClient, settings: ModuleSettings, package: Package
) -> None:
    """Return if ``package`` exists on its registry; ``ENOTFOUND``/``ENETWORK`` otherwise."""
    if package.registry == "npm":
        registry = registry_base(settings.npm_registry)
        url = npm_metadata_url(registry, package.name)
        headers = {"accept": _NPM_ACCEPT}
    else:
        registry = registry_base(settings.jsr_registry)
        url = jsr_metadata_url(registry, package.name)
        headers = {"accept": "application/json"}
    label = f"{package.registry} package {package.name!r}"
    try:
        async with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
            status = response.status_code
    except httpx.HTTPError as exc:
        raise ModuleError(
            "ENETWORK",
            f"cannot reach the {package.registry} registry {registry} to look up "
            f"{package.name!r}: {describe_http_error(exc)}",
        ) from None
    if status in (404, 410):
        raise ModuleError("ENOTFOUND", f"{label} was not found in {registry}")
    if status != 200:
        raise ModuleError(
            "ENETWORK",
            f"the {package.registry} registry {registry} answered HTTP {status} for {label}",
        )
