"""``npm:`` imports bundled by real Deno from the public npm registry (``network``)."""

from __future__ import annotations

import anyio
import pytest

from supervisor.modules import ModuleError
from tests.brokers.test_fetch_support import Policy
from tests.modules.conftest import WAIT_BOUND_S, ResolverFactory, closed_port, evaluate

pytestmark = pytest.mark.anyio

LODASH = "npm:lodash-es@4.17.21"
MISSING = "npm:mcp-v8-no-such-package-4d1c2f"


@pytest.mark.network
async def test_an_npm_package_becomes_a_cjs_bundle_whose_exports_work(
    make_resolver: ResolverFactory,
) -> None:
    resolver = make_resolver()
    with anyio.fail_after(WAIT_BOUND_S):
        module = await resolver.resolve(LODASH, Policy())
        camel = await evaluate(module, "m.default.camelCase('hello module world')")
    assert module.specifier == LODASH
    assert module.format == "cjs"
    assert camel == "helloModuleWorld"


@pytest.mark.network
async def test_a_second_resolver_on_the_cache_needs_no_network_and_no_bundler(
    make_resolver: ResolverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(WAIT_BOUND_S):
        first = await make_resolver().resolve(LODASH, Policy())
    # From here any connection fails: a proxy nobody listens on, for the
    # resolver's own requests and for any bundler it would start.
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    offline = make_resolver()
    policy = Policy()
    with anyio.fail_after(WAIT_BOUND_S):
        again = await offline.resolve(LODASH, policy)
    assert (again.sha256, again.source, again.format) == (first.sha256, first.source, "cjs")
    assert offline.bundler_runs == 0
    assert offline.http_requests == 0
    assert [i["specifier"] for i in policy.inputs] == [LODASH]  # decided again on the hit
    # The same resolver really is offline: a package not in the cache cannot be had.
    with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
        await offline.resolve("npm:lodash-es@4.17.20", Policy())
    assert caught.value.code == "ENETWORK"


@pytest.mark.network
async def test_a_package_that_does_not_exist_is_not_found_by_name(
    make_resolver: ResolverFactory,
) -> None:
    resolver = make_resolver()
    with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
        await resolver.resolve(MISSING, Policy())
    assert caught.value.code == "ENOTFOUND"
    assert caught.value.message == (
        "npm package 'mcp-v8-no-such-package-4d1c2f' was not found in https://registry.npmjs.org/"
    )
    assert resolver.bundler_runs == 0


@pytest.mark.network
async def test_a_version_that_does_not_exist_is_not_found_with_its_range(
    make_resolver: ResolverFactory,
) -> None:
    resolver = make_resolver()
    with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
        await resolver.resolve("npm:lodash-es@99.0.0", Policy())
    assert caught.value.code == "ENOTFOUND"
    assert "'lodash-es' has no version matching '99.0.0'" in caught.value.message
    assert "panicked" not in caught.value.message


@pytest.mark.network
async def test_a_subpath_that_does_not_exist_names_the_specifier(
    make_resolver: ResolverFactory,
) -> None:
    with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
        await make_resolver().resolve("npm:lodash-es@4.17.21/no-such-file.js", Policy())
    assert caught.value.code == "ENOTFOUND"
    assert "npm:lodash-es@4.17.21/no-such-file.js" in caught.value.message


async def test_an_unreachable_registry_is_a_network_error_naming_it(
    make_resolver: ResolverFactory,
) -> None:
    registry = f"http://127.0.0.1:{closed_port()}/"
    resolver = make_resolver(npm_registry=registry)
    with anyio.fail_after(WAIT_BOUND_S), pytest.raises(ModuleError) as caught:
        await resolver.resolve(LODASH, Policy())
    assert caught.value.code == "ENETWORK"
    assert f"cannot reach the npm registry {registry}" in caught.value.message
    assert resolver.bundler_runs == 0


async def test_a_denied_package_is_refused_before_any_request(
    make_resolver: ResolverFactory,
) -> None:
    resolver = make_resolver()
    policy = Policy(lambda i: i["url"] != "https://registry.npmjs.org/lodash-es")
    with pytest.raises(ModuleError) as caught:
        await resolver.resolve(LODASH, policy)
    assert caught.value.code == "EACCES"
    assert caught.value.message == (f"import of {LODASH} denied by policy: the test policy says no")
    assert policy.inputs == [
        {
            "operation": "import",
            "specifier": LODASH,
            "url": "https://registry.npmjs.org/lodash-es",
        }
    ]
    assert (resolver.http_requests, resolver.bundler_runs) == (0, 0)


@pytest.mark.network
async def test_concurrent_imports_of_one_package_bundle_it_once(
    make_resolver: ResolverFactory,
) -> None:
    resolver = make_resolver()
    results = []

    async def one() -> None:
        results.append(await resolver.resolve("npm:@sindresorhus/slugify@2.2.1", Policy()))

    with anyio.fail_after(WAIT_BOUND_S):
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(one)
        slug = await evaluate(results[0], "m.default('Crème Brûlée!')")
    assert resolver.bundler_runs == 1
    assert len({r.sha256 for r in results}) == 1
    assert slug == "creme-brulee"
