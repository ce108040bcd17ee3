"""One import specifier in, one self-contained bundle out: policy, cache, then the work.

For every :meth:`ModuleResolver.resolve`, in this order:

1. the specifier is parsed (``EINVAL`` for kinds that are not supported);
2. the policy is asked about it, cache hit or not (``EACCES``);
3. the bundle cache is consulted under a key made of the specifier and the
   registries and CDN it would be loaded from; on a hit every import the
   bundle was built from is decided again (policies change), and that is all:
   no request, no subprocess;
4. on a miss: an ``npm:``/``jsr:`` package is looked up on its registry, then
   bundled by ``deno bundle``; a URL (or an ``npm:`` package served by the
   CDN) has its graph walked and mirrored by :mod:`supervisor.modules.remote`
   and the mirror bundled; the bundle is stored, then indexed.

All of it runs under one deadline, ``timeout_s`` (``ETIMEDOUT``). Resolutions
of one key in one process wait for each other, so concurrent imports of a
package bundle it once; concurrent server processes may both bundle it,
and both write the same content-addressed bytes.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx

from supervisor.config import ModuleSettings
from supervisor.decisions import Decide
from supervisor.modules.bundler import BundleJob, Bundler
from supervisor.modules.cache import BundleEntry, ModuleCache
from supervisor.modules.models import ModuleError, ModulePreparer, ResolvedModule
from supervisor.modules.registry import check_package
from supervisor.modules.remote import RemoteLoader, decide_import, write_mirror
from supervisor.modules.specifiers import Package, Target, parse_specifier, registry_base

logger = logging.getLogger(__name__)

# Part of every bundle key: raise it when bundles built before would now be wrong.
KEY_VERSION = 1
# Bundles kept in memory too (verified once, when read from disk or built), so
# the imports of every run are not read and hashed again: up to this many bytes.
MEMORY_CACHE_BYTES = 64 * 1024 * 1024


def bundle_key(specifier: str, settings: ModuleSettings) -> str:
    """The cache key of a bundle: what was asked for, and where it would be loaded from."""
    cdn = registry_base(settings.cdn) if settings.cdn else None
    return json.dumps(
        [
            KEY_VERSION,
            specifier,
            registry_base(settings.npm_registry),
            registry_base(settings.jsr_registry),
            cdn,
        ]
    )


@dataclass
class _KeyLock:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    users: int = 0


class ModuleResolver:
    """Resolves ``npm:``, ``jsr:`` and URL imports to bundles, shared by all executions.

    ``preparer`` strips TypeScript and makes specifiers absolute in downloaded
    modules (``supervisor.typescript.TypeStripper``). Proxy and CA settings
    for downloads and for the bundler come from the environment.
    """

    def __init__(self, settings: ModuleSettings, deno_path: str, preparer: ModulePreparer) -> None:
        self.settings = settings
        self.cache = ModuleCache(settings.cache_dir)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s),
            headers={"user-agent": "mcp-v8"},
        )
        self._registry_requests = 0
        self._bundler = Bundler(deno_path, settings, self.cache)
        self._remote = RemoteLoader(self._client, self.cache, settings, preparer, self._check)
        self._locks: dict[str, _KeyLock] = {}
        self._memory: OrderedDict[str, tuple[BundleEntry, ResolvedModule]] = OrderedDict()
        self._memory_bytes = 0

    @property
    def bundler_runs(self) -> int:
        """How many ``deno bundle`` processes this resolver has started."""
        return self._bundler.runs

    @property
    def http_requests(self) -> int:
        """How many requests this resolver has sent to registries and module hosts."""
        return self._registry_requests + self._remote.downloads

    async def resolve(self, specifier: str, decide: Decide) -> ResolvedModule:
        """The bundle of ``specifier``, or :class:`ModuleError` saying why there is none."""
        target = parse_specifier(specifier, self.settings)
        started = time.monotonic()
        try:
            with anyio.fail_after(self.settings.timeout_s):
                await decide_import(decide, specifier, target.url)
                key = bundle_key(specifier, self.settings)
                async with self._locked(key):
                    resolved = await self._from_cache(key, specifier, decide)
                    if resolved is None:
                        resolved = await self._build(target, key, decide)
                        logger.info(
                            "bundled %s (%s, %d bytes) in %.0f ms",
                            specifier,
                            resolved.format,
                            len(resolved.source),
                            (time.monotonic() - started) * 1000,
                        )
                    return resolved
        except TimeoutError:
            raise ModuleError(
                "ETIMEDOUT",
                f"resolving {specifier} took longer than {self.settings.timeout_s:g} s",
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP client (bundler processes end with the resolutions that started them)."""
        await self._client.aclose()

    async def _from_cache(self, key: str, specifier: str, decide: Decide) -> ResolvedModule | None:
        remembered = self._memory.get(key)
        if remembered is not None:
            self._memory.move_to_end(key)
            entry, resolved = remembered
        else:
            read = await anyio.to_thread.run_sync(self.cache.read_bundle, key)
            if read is None:
                return None
            entry = read
            source = await anyio.to_thread.run_sync(self.cache.read_blob, entry.sha256)
            if source is None:
                logger.warning(
                    "bundle of %s is missing or corrupt in the cache; rebuilding", specifier
                )
                return None
            resolved = ResolvedModule(specifier, entry.sha256, source, entry.format)
            self._remember(key, entry, resolved)
        for nested, url in entry.decisions:
            await decide_import(decide, nested, url)
        return resolved

    def _remember(self, key: str, entry: BundleEntry, resolved: ResolvedModule) -> None:
        if len(resolved.source) > MEMORY_CACHE_BYTES // 4:
            return
        self._memory[key] = (entry, resolved)
        self._memory_bytes += len(resolved.source)
        while self._memory_bytes > MEMORY_CACHE_BYTES:
            _, (_, dropped) = self._memory.popitem(last=False)
            self._memory_bytes -= len(dropped.source)

    async def _build(self, target: Target, key: str, decide: Decide) -> ResolvedModule:
        workdir = await anyio.to_thread.run_sync(self.cache.make_workdir)
        try:
            if target.module_url is not None:
                alias = target.specifier if target.kind == "npm" else None
                graph = await self._remote.walk(target.module_url, decide, entry_key=alias)
                job = await anyio.to_thread.run_sync(write_mirror, graph, workdir, target.specifier)
                decisions = tuple(graph.decisions)
            else:
                package = target.package
                assert package is not None
                await self._check(package)
                job = BundleJob(
                    subject=target.specifier,
                    entry=f"{package.registry}:{package.rest}",  # "NPM:x" as "npm:x"
                    workdir=workdir,
                )
                decisions = ()
            code, fmt = await self._bundler.bundle(job)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(ModuleCache.remove_workdir, workdir)
        digest = await anyio.to_thread.run_sync(self.cache.write_blob, code)
        entry = BundleEntry(digest, fmt, decisions)
        await anyio.to_thread.run_sync(self.cache.write_bundle, key, entry)
        resolved = ResolvedModule(target.specifier, digest, code, fmt)
        self._remember(key, entry, resolved)
        return resolved

    async def _check(self, package: Package) -> None:
        self._registry_requests += 1
        await check_package(self._client, self.settings, package)

    @asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of ``key``; locks exist only while someone holds or waits for them."""
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]
