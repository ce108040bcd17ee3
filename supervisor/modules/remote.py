"""URL imports: the module graph walked by the supervisor, under policy, into a local mirror.

Deno never touches the network for a URL module. The supervisor walks the
graph breadth first from the entry, and for each URL: asks the policy
(before anything is sent to the host), downloads it (redirects followed here,
each hop decided, at most :data:`MAX_REDIRECTS`; only 200 accepted; at most
``max_module_bytes``), has the preparer strip its types and make its
specifiers absolute, and queues its ``http(s)`` imports. ``npm:`` and
``jsr:`` imports are decided like top-level ones and checked to exist, then
left to the bundler, or with a CDN loaded from it as URLs; ``node:`` imports
are left to the sandbox. Any other specifier (a bare name, ``file:``,
``data:``) fails the import, naming the module and the specifier.

Each level of the walk is downloaded concurrently (bounded), but modules are
numbered in the order they were found, so the mirror, and the bundle's
hash, are the same on every run.

Downloads are cached by URL: a second walk over a module costs no request,
but its redirect hops are decided again. The mirror is one file per module
(``m/<n>.js``, or ``.json``) and an import map sending every URL, redirect
source and CDN-served specifier that led to a module to its file.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
import httpx

from supervisor.config import ModuleSettings
from supervisor.decisions import Decide
from supervisor.errors import InvalidRequest
from supervisor.modules.bundler import MIRROR_DIR, BundleJob
from supervisor.modules.cache import Download, ModuleCache, sha256_hex
from supervisor.modules.models import ModuleError, ModulePreparer
from supervisor.modules.registry import describe_http_error
from supervisor.modules.specifiers import (
    Package,
    normalize_url,
    parse_specifier,
    policy_input,
)

MAX_REDIRECTS = 5
MAX_MODULES = 2000
CONCURRENT_DOWNLOADS = 8
IMPORT_MAP_NAME = "import_map.json"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = "application/javascript, text/javascript, application/typescript, */*;q=0.5"

Kind = Literal["js", "ts", "json"]
CheckPackage = Callable[[Package], Awaitable[None]]


@dataclass
class _Module:
    """One module of the graph, prepared; its import map keys are ``chain`` and ``keys``."""

    chain: tuple[str, ...]  # the URL asked for, each redirect, the final URL
    body: bytes
    kind: Kind
    dependencies: tuple[str, ...]
    decisions: list[tuple[str, str]]
    keys: list[str] = field(default_factory=list)

    @property
    def final_url(self) -> str:
        return self.chain[-1]


@dataclass
class Graph:
    """A walked graph: modules in the order found (the entry first), and every decision made."""

    modules: list[_Module]
    decisions: list[tuple[str, str]]


class RemoteLoader:
    """Walks URL graphs and writes their mirrors; ``downloads`` counts requests sent to hosts."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        cache: ModuleCache,
        settings: ModuleSettings,
        preparer: ModulePreparer,
        check_package: CheckPackage,
    ) -> None:
        self.client = client
        self.cache = cache
        self.settings = settings
        self.preparer = preparer
        self.check_package = check_package
        self.downloads = 0
        self._limiter = anyio.CapacityLimiter(CONCURRENT_DOWNLOADS)

    async def walk(self, entry_url: str, decide: Decide, *, entry_key: str | None = None) -> Graph:
        """Download and prepare everything ``entry_url`` needs (the entry already decided)."""
        modules: list[_Module] = []
        by_final: dict[str, _Module] = {}
        # URL -> the other specifiers that name it; once a URL is downloaded, its
        # list is its module's, so an alias found later still reaches the import map.
        keys: dict[str, list[str]] = {entry_url: [entry_key] if entry_key else []}
        decisions: list[tuple[str, str]] = []
        seen_packages: set[str] = set()
        level = [entry_url]
        first = True
        while level:
            fetched = await self._fetch_level(
                level, decide, skip_decision=entry_url if first else None
            )
            first = False
            following: list[str] = []
            for requested, module in zip(level, fetched, strict=True):
                decisions += module.decisions
                known = by_final.get(module.final_url)
                if known is not None:  # two URLs that redirect to one module
                    known.keys += [*module.chain, *keys[requested]]
                    for hop in module.chain:
                        keys[hop] = known.keys
                    continue
                module.keys = keys[requested]
                for hop in module.chain:
                    keys.setdefault(hop, module.keys)
                by_final[module.final_url] = module
                modules.append(module)
                if len(modules) > MAX_MODULES:
                    raise ModuleError(
                        "EPARSE", f"{entry_url} needs more than {MAX_MODULES} modules"
                    )
                for dependency in module.dependencies:
                    target = await self._dependency(
                        module.final_url, dependency, decide, decisions, seen_packages
                    )
                    if target is None:
                        continue
                    url, alias = target
                    if url not in keys:
                        keys[url] = []
                        following.append(url)
                    if alias is not None and alias not in keys[url]:
                        keys[url].append(alias)
            level = following
        return Graph(modules, decisions)

    async def _dependency(
        self,
        referrer: str,
        dependency: str,
        decide: Decide,
        decisions: list[tuple[str, str]],
        seen_packages: set[str],
    ) -> tuple[str, str | None] | None:
        """Where a dependency is loaded from (URL, import map alias), or None if not a download."""
        scheme = dependency.split(":", 1)[0].lower() if ":" in dependency else ""
        if scheme in ("http", "https"):
            try:
                url = normalize_url(dependency)
            except ModuleError as exc:
                raise ModuleError(
                    "EINVAL", f"{referrer} imports {dependency!r}: {exc.message}"
                ) from None
            return url, dependency if dependency != url else None
        if scheme == "node":
            return None  # a built-in, provided by the sandbox
        if scheme not in ("npm", "jsr"):
            raise ModuleError(
                "EINVAL",
                f"{referrer} imports {dependency!r}: a remote module may import only http(s) "
                "URLs, npm: and jsr: packages and node: built-ins",
            )
        try:
            target = parse_specifier(dependency, self.settings)
        except ModuleError as exc:
            raise ModuleError("EINVAL", f"{referrer} imports {exc.message}") from None
        if dependency in seen_packages:
            return None
        seen_packages.add(dependency)
        await decide_import(decide, dependency, target.url)
        decisions.append((dependency, target.url))
        if target.module_url is not None:  # npm: served by the CDN
            return target.module_url, dependency
        assert target.package is not None
        await self.check_package(target.package)
        return None

    async def _fetch_level(
        self, urls: list[str], decide: Decide, *, skip_decision: str | None
    ) -> list[_Module]:
        """Decide, download and prepare ``urls`` concurrently; the first failure stops the rest."""
        results: list[_Module | None] = [None] * len(urls)
        failures: list[ModuleError] = []

        async def one(index: int, url: str) -> None:
            try:
                async with self._limiter:
                    results[index] = await self._load(url, decide, decided=url == skip_decision)
            except ModuleError as exc:
                failures.append(exc)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for index, url in enumerate(urls):
                group.start_soon(one, index, url)
        if failures:
            raise failures[0]
        return [module for module in results if module is not None]

    async def _load(self, url: str, decide: Decide, *, decided: bool) -> _Module:
        """One module: decided, downloaded (or read from the cache) and prepared.

        A download is indexed only once it prepared: a module that does not
        parse is downloaded again next time, in case its host has fixed it.
        """
        decisions: list[tuple[str, str]] = []
        if not decided:
            await decide_import(decide, url, url)
            decisions.append((url, url))
        download, body, fresh = await self._download(url, decide, decisions)
        module = await self._prepare(url, download, body, decisions)
        if fresh:
            await anyio.to_thread.run_sync(self.cache.write_blob, body)
            await anyio.to_thread.run_sync(self.cache.write_download, download)
        return module

    async def _prepare(
        self, url: str, download: Download, body: bytes, decisions: list[tuple[str, str]]
    ) -> _Module:
        kind = module_kind(download.final_url, download.content_type)
        if kind == "json":
            return _Module(download.chain, body, kind, (), decisions)
        try:
            text = body.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise ModuleError("EPARSE", f"{url}: the module is not UTF-8 text") from None
        try:
            prepared = await self.preparer.prepare_module(
                text, download.final_url, typescript=kind == "ts"
            )
        except InvalidRequest as exc:
            message = exc.message if url in exc.message else f"{url}: {exc.message}"
            raise ModuleError("EPARSE", message) from None
        return _Module(
            download.chain, prepared.code.encode(), kind, prepared.dependencies, decisions
        )

    async def _download(
        self, url: str, decide: Decide, decisions: list[tuple[str, str]]
    ) -> tuple[Download, bytes, bool]:
        """``url``'s bytes, and whether they are fresh (not from the cache); every hop decided."""
        cached = await anyio.to_thread.run_sync(self.cache.read_download, url)
        if cached is not None:
            body = await anyio.to_thread.run_sync(self.cache.read_blob, cached.sha256)
            if body is not None:
                for hop in cached.chain[1:]:
                    await decide_import(decide, hop, hop)
                    decisions.append((hop, hop))
                return cached, body, False
        chain = [url]
        for _ in range(MAX_REDIRECTS + 1):
            current = chain[-1]
            status, location, content_type, body = await self._get(url, current)
            if status in _REDIRECTS and location is not None:
                try:
                    target = normalize_url(str(httpx.URL(current).join(location)))
                except (ModuleError, httpx.InvalidURL, ValueError):
                    raise ModuleError(
                        "ENETWORK", f"{current} redirects to {location!r}, not an http(s) URL"
                    ) from None
                await decide_import(decide, target, target)
                decisions.append((target, target))
                chain.append(target)
                continue
            where = "" if current == url else f" (redirected to {current})"
            if status in (404, 410):
                raise ModuleError("ENOTFOUND", f"{url} was not found: HTTP {status}{where}")
            if status != 200:
                raise ModuleError(
                    "ENETWORK", f"{url} could not be downloaded: HTTP {status}{where}"
                )
            return Download(tuple(chain), sha256_hex(body), content_type), body, True
        raise ModuleError("ENETWORK", f"{url} redirects more than {MAX_REDIRECTS} times")

    async def _get(self, url: str, current: str) -> tuple[int, str | None, str, bytes]:
        """One GET: status, Location, content type and (for a 200) the body, capped."""
        limit = self.settings.max_module_bytes
        self.downloads += 1
        try:
            async with self.client.stream(
                "GET", current, headers={"accept": _ACCEPT}, follow_redirects=False
            ) as response:
                content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    return response.status_code, response.headers.get("location"), content_type, b""
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise ModuleError(
                            "EPARSE", f"{url} is larger than the limit of {limit} bytes"
                        )
                return 200, None, content_type, bytes(body)
        except httpx.HTTPError as exc:
            raise ModuleError(
                "ENETWORK", f"cannot download {current}: {describe_http_error(exc)}"
            ) from None


async def decide_import(decide: Decide, specifier: str, url: str) -> None:
    """Ask the policy about one import; ``EACCES`` naming it when denied."""
    decision = await decide(policy_input(specifier, url))
    if not decision.allowed:
        raise ModuleError("EACCES", f"import of {specifier} denied by policy: {decision.reason}")


def module_kind(final_url: str, content_type: str) -> Kind:
    """JSON, TypeScript or JavaScript, as Deno decides: the content type, else the extension."""
    media = content_type.split(";", 1)[0].strip().lower()
    path = httpx.URL(final_url).path.lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if "typescript" in media:
        return "ts"
    if "javascript" in media or "ecmascript" in media:
        return "js"
    if path.endswith(".json"):
        return "json"
    if path.endswith((".ts", ".mts", ".cts")):
        return "ts"
    return "js"


def write_mirror(graph: Graph, workdir: Path, subject: str) -> BundleJob:
    """Write the graph's modules and import map into ``workdir``; the job that bundles them."""
    mirror = workdir / MIRROR_DIR
    mirror.mkdir()
    imports: dict[str, str] = {}
    local_names: dict[str, str] = {}
    for index, module in enumerate(graph.modules):
        name = f"{MIRROR_DIR}/{index}.{'json' if module.kind == 'json' else 'js'}"
        (workdir / name).write_bytes(module.body)
        local_names[name] = module.final_url
        for key in [*module.keys, *module.chain]:
            if key.endswith("/"):
                # An import map key ending in "/" maps a prefix, never one module:
                # the entry is bundled from its file, anything else cannot be.
                if index == 0:
                    continue
                raise ModuleError(
                    "EINVAL", f"{key} cannot be bundled: its URL ends with '/' (name the file)"
                )
            imports.setdefault(key, f"./{name}")
    (workdir / IMPORT_MAP_NAME).write_text(json.dumps({"imports": imports}, indent=1))
    return BundleJob(
        subject=subject,
        entry=next(iter(local_names)),
        workdir=workdir,
        import_map=IMPORT_MAP_NAME,
        local_names=local_names,
    )
