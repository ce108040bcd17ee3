"""``jsr:`` imports, from a JSR registry served on loopback (the public one is not reachable here).

The registry speaks JSR's layout: ``<pkg>/meta.json`` lists versions,
``<pkg>/<version>_meta.json`` lists files with their hashes and the exports,
files are served under ``<pkg>/<version>/``. Bundling needs the bundler's
esbuild, fetched from the npm registry once per session, hence ``network``.
"""

from __future__ import annotations

import hashlib
import json

import anyio
import pytest

from supervisor.modules import ModuleError
from tests.brokers.test_fetch_support import Policy, Reply, serve
from tests.modules.conftest import WAIT_BOUND_S, ResolverFactory, evaluate
from tests.modules.sites import Files, js, site, ts

pytestmark = [pytest.mark.anyio, pytest.mark.network]

MOD = b"export function hi(name: string): string { return `hi ${name}`; }\n"


def _json(value: object) -> Reply:
    return Reply(200, [("content-type", "application/json")], json.dumps(value).encode())


def registry_files() -> Files:
    """``@t/hello`` 1.0.0 with one TypeScript module, and a URL module importing it."""
    manifest = {
        "/mod.ts": {"size": len(MOD), "checksum": f"sha256-{hashlib.sha256(MOD).hexdigest()}"}
    }
    return {
        "/jsr/@t/hello/meta.json": _json(
            {"scope": "t", "name": "hello", "latest": "1.0.0", "versions": {"1.0.0": {}}}
        ),
        "/jsr/@t/hello/1.0.0_meta.json": _json(
            {"manifest": manifest, "exports": {".": "./mod.ts"}}
        ),
        "/jsr/@t/hello/1.0.0/mod.ts": ts(MOD.decode()),
        "/uses-jsr.js": js('export { hi } from "jsr:@t/hello@1";\n'),
    }


async def test_a_jsr_package_is_bundled_from_the_configured_registry(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(registry_files())) as server:
        registry = server.url("/jsr/")
        policy = Policy()
        with anyio.fail_after(WAIT_BOUND_S):
            module = await make_resolver(jsr_registry=registry).resolve("jsr:@t/hello@1", policy)
            result = await evaluate(module, "m.hi('jsr')")
    assert (module.format, result) == ("cjs", "hi jsr")
    assert policy.inputs == [
        {"operation": "import", "specifier": "jsr:@t/hello@1", "url": f"{registry}@t/hello"}
    ]


async def test_a_jsr_import_inside_a_url_module_is_decided_and_bundled(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(registry_files())) as server:
        registry = server.url("/jsr/")
        policy = Policy()
        with anyio.fail_after(WAIT_BOUND_S):
            resolver = make_resolver(jsr_registry=registry)
            module = await resolver.resolve(server.url("/uses-jsr.js"), policy)
            result = await evaluate(module, "m.hi('url')")
            denied = Policy(lambda i: not i["specifier"].startswith("jsr:"))
            with pytest.raises(ModuleError) as caught:
                await resolver.resolve(server.url("/uses-jsr.js"), denied)
    assert result == "hi url"
    assert {"operation": "import", "specifier": "jsr:@t/hello@1", "url": f"{registry}@t/hello"} in (
        policy.inputs
    )
    assert caught.value.code == "EACCES"
    assert caught.value.message.startswith("import of jsr:@t/hello@1 denied by policy")


@pytest.mark.parametrize(
    ("specifier", "expected"),
    [
        ("jsr:@t/nothere@1", "jsr package '@t/nothere' was not found in "),
        ("jsr:@t/hello@2", "jsr:@t/hello@2 was not found on the JSR registry "),
    ],
)
async def test_a_jsr_package_or_version_that_does_not_exist_is_not_found(
    make_resolver: ResolverFactory, specifier: str, expected: str
) -> None:
    async with serve(site(registry_files())) as server:
        resolver = make_resolver(jsr_registry=server.url("/jsr/"))
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await resolver.resolve(specifier, Policy())
    assert caught.value.code == "ENOTFOUND"
    assert expected in caught.value.message
