"""URL imports: graphs walked under policy from a loopback module server, bundled by real Deno.

Bundling needs the bundler's esbuild, fetched from the npm registry once per
session, hence ``network``; every module comes from the loopback server.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from supervisor.modules import ModuleError
from tests._requirements import guards
from tests.brokers.test_fetch_support import Policy, Reply, serve
from tests.modules.conftest import WAIT_BOUND_S, ResolverFactory, evaluate
from tests.modules.sites import Files, js, redirect, requested, site, ts

pytestmark = [pytest.mark.anyio, pytest.mark.network]

APP: Files = {
    "/app/main.ts": ts(
        'import { greet } from "./dep.js";\n'
        'import { x } from "../other/x.js";\n'
        "import type { Unused } from './types.ts';\n"
        'const suffix: string = "!";\n'
        "export function run(name: string): string { return greet(name) + x + suffix; }\n"
    ),
    "/app/dep.js": js('export function greet(n) { return "hi " + n + " "; }\n'),
    "/other/x.js": redirect("/real/x.js"),
    # Relative to where it was served from after the redirect: /real/y.js.
    "/real/x.js": js('import { y } from "./y.js";\nexport const x = y * 2;\n'),
    "/real/y.js": js("export const y = 21;\n"),
}


async def test_a_typescript_entry_with_relative_imports_and_a_redirect_bundles_and_runs(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(APP)) as server:
        entry = server.url("/app/main.ts")
        resolver = make_resolver()
        policy = Policy()
        with anyio.fail_after(WAIT_BOUND_S):
            module = await resolver.resolve(entry, policy)
            result = await evaluate(module, "m.run('bob')")
    assert module.format == "cjs"
    assert result == "hi bob 42!"
    assert sorted(requested(server.received)) == [
        "/app/dep.js",
        "/app/main.ts",
        "/other/x.js",
        "/real/x.js",
        "/real/y.js",
    ]
    # Every module, and the redirect's target, was decided before it was requested.
    assert [i["url"] for i in policy.inputs] == [
        server.url(path)
        for path in ("/app/main.ts", "/app/dep.js", "/other/x.js", "/real/x.js", "/real/y.js")
    ]
    assert all(i["specifier"] == i["url"] for i in policy.inputs)


async def test_a_second_resolve_sends_no_request_but_decides_every_module_again(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(APP)) as server:
        entry = server.url("/app/main.ts")
        with anyio.fail_after(WAIT_BOUND_S):
            first = await make_resolver().resolve(entry, Policy())
            sent = len(server.received)
            same = make_resolver()
            policy = Policy()
            again = await same.resolve(entry, policy)
    assert len(server.received) == sent
    assert (again.sha256, again.format) == (first.sha256, first.format)
    assert (same.bundler_runs, same.http_requests) == (0, 0)
    assert len(policy.inputs) == 5


async def test_a_policy_that_changed_refuses_a_cached_bundle_by_its_nested_module(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(APP)) as server:
        entry = server.url("/app/main.ts")
        resolver = make_resolver()
        with anyio.fail_after(WAIT_BOUND_S):
            await resolver.resolve(entry, Policy())
            strict = Policy(lambda i: "/real/" not in i["url"])
            with pytest.raises(ModuleError) as caught:
                await resolver.resolve(entry, strict)
    assert caught.value.code == "EACCES"
    assert caught.value.message.startswith(f"import of {server.url('/real/x.js')} denied")


@guards("import:policy-every-module")
async def test_a_denied_nested_module_is_named_and_never_requested(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(APP)) as server:
        policy = Policy(lambda i: "/app/dep.js" not in i["url"])
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await make_resolver().resolve(server.url("/app/main.ts"), policy)
    denied = server.url("/app/dep.js")
    assert caught.value.code == "EACCES"
    assert caught.value.message == f"import of {denied} denied by policy: the test policy says no"
    assert "/app/dep.js" not in requested(server.received)


@guards("import:policy-every-module")
async def test_a_denied_redirect_target_is_never_requested(make_resolver: ResolverFactory) -> None:
    async with serve(site(APP)) as server:
        policy = Policy(lambda i: "/real/x.js" not in i["url"])
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await make_resolver().resolve(server.url("/app/main.ts"), policy)
    assert caught.value.code == "EACCES"
    assert server.url("/real/x.js") in caught.value.message
    assert "/real/x.js" not in requested(server.received)


async def test_a_denied_entry_is_refused_before_any_connection(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(APP)) as server:
        entry = server.url("/app/main.ts")
        with pytest.raises(ModuleError) as caught:
            await make_resolver().resolve(entry, Policy(lambda _: False))
    assert caught.value.code == "EACCES"
    assert caught.value.message == f"import of {entry} denied by policy: the test policy says no"
    assert server.connections == 0


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ("/bad.ts", ts("let x: = 1;\n")),  # refused by the type stripper
        ("/bad.js", js("export const = ;\n")),  # refused by the bundler
    ],
)
async def test_a_module_that_does_not_parse_is_named_and_nothing_is_cached(
    make_resolver: ResolverFactory, cache_dir: Path, path: str, bad: Reply
) -> None:
    files = {"/main.js": js(f'import ".{path}";\n'), path: bad}
    async with serve(site(files)) as server:
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await make_resolver().resolve(server.url("/main.js"), Policy())
    assert caught.value.code == "EPARSE"
    assert server.url(path) in caught.value.message
    assert "Unexpected" in caught.value.message or "syntax error" in caught.value.message
    assert list((cache_dir / "bundles").iterdir()) == []
    assert list((cache_dir / "tmp").iterdir()) == []


async def test_a_module_fixed_on_its_host_after_a_parse_error_is_downloaded_again(
    make_resolver: ResolverFactory,
) -> None:
    files = {"/main.ts": ts("export const v: number = ;\n")}
    async with serve(site(files)) as server:
        resolver = make_resolver()
        with anyio.fail_after(WAIT_BOUND_S):
            with pytest.raises(ModuleError):
                await resolver.resolve(server.url("/main.ts"), Policy())
            files["/main.ts"] = ts("export const v: number = 3;\n")
            module = await resolver.resolve(server.url("/main.ts"), Policy())
            assert await evaluate(module, "m.v") == 3


async def test_a_missing_module_is_not_found_by_its_url(make_resolver: ResolverFactory) -> None:
    files = {"/main.js": js('export * from "./gone.js";\n')}
    async with serve(site(files)) as server:
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await make_resolver().resolve(server.url("/main.js"), Policy())
    assert caught.value.code == "ENOTFOUND"
    assert caught.value.message == f"{server.url('/gone.js')} was not found: HTTP 404"


async def test_top_level_await_falls_back_to_an_esm_bundle(make_resolver: ResolverFactory) -> None:
    files = {
        "/tla.js": js(
            'import { base } from "./base.js";\n'
            "export const value = await Promise.resolve(base + 1);\n"
            "export default import.meta.url.length > 0;\n"
        ),
        "/base.js": js("export const base = 41;\n"),
    }
    async with serve(site(files)) as server:
        with anyio.fail_after(WAIT_BOUND_S):
            module = await make_resolver().resolve(server.url("/tla.js"), Policy())
            result = await evaluate(module, "[m.value, m.default]")
    assert module.format == "esm"
    assert result == [42, True]


async def test_a_bare_import_in_a_remote_module_is_refused_naming_both(
    make_resolver: ResolverFactory,
) -> None:
    files = {"/main.js": js('import _ from "lodash";\nexport default _;\n')}
    async with serve(site(files)) as server:
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await make_resolver().resolve(server.url("/main.js"), Policy())
    assert caught.value.code == "EINVAL"
    assert caught.value.message.startswith(f"{server.url('/main.js')} imports 'lodash': ")


@guards("import:only-downloaded-code")
async def test_a_remote_module_cannot_pull_a_file_of_this_host_into_its_bundle(
    make_resolver: ResolverFactory, cache_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret-7f3a")
    files = {"/main.js": js(f"const s = require({str(secret)!r});\nexport default s;\n")}
    async with serve(site(files)) as server:
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await make_resolver().resolve(server.url("/main.js"), Policy())
    assert caught.value.code == "EACCES"
    assert "neither a package file nor a downloaded module" in caught.value.message
    for blob in (cache_dir / "blobs").iterdir():
        assert b"host-secret-7f3a" not in blob.read_bytes()


async def test_npm_imports_load_from_the_cdn_as_urls_when_one_is_configured(
    make_resolver: ResolverFactory,
) -> None:
    files = {
        "/cdn/tiny@1.0.0/sub": js(
            'import { twice } from "/cdn/helper@2.0.0/index.js";\n'
            'import { one } from "npm:one@1";\n'
            "export default twice(one);\n"
        ),
        "/cdn/helper@2.0.0/index.js": js("export const twice = (n) => n * 2;\n"),
        "/cdn/one@1": redirect("/cdn/one@1.0.3/index.js"),
        "/cdn/one@1.0.3/index.js": js("export const one = 1;\n"),
    }
    async with serve(site(files)) as server:
        resolver = make_resolver(cdn=server.url("/cdn"))
        policy = Policy()
        with anyio.fail_after(WAIT_BOUND_S):
            module = await resolver.resolve("npm:tiny@1.0.0/sub", policy)
            result = await evaluate(module, "m.default")
    assert result == 2
    assert policy.inputs[0] == {
        "operation": "import",
        "specifier": "npm:tiny@1.0.0/sub",
        "url": server.url("/cdn/tiny@1.0.0/sub"),
    }
    assert {"specifier": "npm:one@1", "url": server.url("/cdn/one@1")} in [
        {k: i[k] for k in ("specifier", "url")} for i in policy.inputs
    ]


async def test_concurrent_imports_of_one_url_download_and_bundle_once(
    make_resolver: ResolverFactory,
) -> None:
    async with serve(site(APP)) as server:
        resolver = make_resolver()
        hashes: set[str] = set()

        async def one() -> None:
            hashes.add((await resolver.resolve(server.url("/app/main.ts"), Policy())).sha256)

        with anyio.fail_after(WAIT_BOUND_S):
            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(one)
    assert len(hashes) == 1
    assert resolver.bundler_runs == 1
    assert requested(server.received).count("/app/main.ts") == 1


async def test_too_many_redirects_and_oversized_modules_are_refused(
    make_resolver: ResolverFactory,
) -> None:
    files = {f"/r{i}.js": redirect(f"/r{i + 1}.js") for i in range(10)}
    files["/big.js"] = js("// " + "x" * 5000 + "\n")
    async with serve(site(files)) as server:
        resolver = make_resolver(max_module_bytes=4096)
        with anyio.fail_after(WAIT_BOUND_S):
            with pytest.raises(ModuleError) as loop:
                await resolver.resolve(server.url("/r0.js"), Policy())
            with pytest.raises(ModuleError) as big:
                await resolver.resolve(server.url("/big.js"), Policy())
    assert loop.value.code == "ENETWORK"
    assert "redirects more than 5 times" in loop.value.message
    assert big.value.code == "EPARSE"
    assert big.value.message == f"{server.url('/big.js')} is larger than the limit of 4096 bytes"


async def test_a_host_that_does_not_answer_times_out_naming_the_import(
    make_resolver: ResolverFactory, cache_dir: Path
) -> None:
    files = {"/slow.js": Reply(hang=True)}
    async with serve(site(files)) as server:
        entry = server.url("/slow.js")
        with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
            await make_resolver(timeout_s=0.5).resolve(entry, Policy())
    assert caught.value.code == "ETIMEDOUT"
    assert caught.value.message == f"resolving {entry} took longer than 0.5 s"
    assert list((cache_dir / "tmp").iterdir()) == []


async def test_a_corrupt_cached_bundle_is_rebuilt_from_cached_downloads(
    make_resolver: ResolverFactory, cache_dir: Path
) -> None:
    async with serve(site(APP)) as server:
        entry = server.url("/app/main.ts")
        with anyio.fail_after(WAIT_BOUND_S):
            first = await make_resolver().resolve(entry, Policy())
            (cache_dir / "blobs" / first.sha256).write_bytes(b"module.exports = 'evil';")
            sent = len(server.received)
            resolver = make_resolver()
            again = await resolver.resolve(entry, Policy())
    assert again.source == first.source
    assert resolver.bundler_runs == 1
    assert len(server.received) == sent  # the modules themselves came from the cache
