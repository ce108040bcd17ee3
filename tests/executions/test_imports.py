"""npm:, jsr: and URL imports from user code, through the real engine and real Deno.

URL modules come from a module server on 127.0.0.1 started here; npm: packages
from the public npm registry (reachable where these tests run).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from supervisor.app import Services
from supervisor.config import CapabilitySettings, ModuleSettings
from tests._requirements import guards
from tests.conftest import output_of, run, start_engine

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

LODASH = "npm:lodash-es@4.17.21"

MODULES = {
    "/lib/greet.ts": (
        "import { shout } from './util/shout.js';\n"
        "export interface Greeting { text: string }\n"
        "export function greet(name: string): Greeting {\n"
        "  return { text: shout(`hello ${name}`) };\n"
        "}\n"
        "export default greet;\n"
    ),
    "/lib/util/shout.js": "export const shout = (s) => s.toUpperCase() + '!';\n",
    "/lib/counter.js": "export let count = 0;\nexport function bump() { return ++count; }\n",
    "/lib/broken.js": "export const = ;\n",
    "/lib/tla.js": "export const answer = await Promise.resolve(42);\n",
    "/lib/uses-denied.js": "export { secret } from '/denied/secret.js';\n",
    "/denied/secret.js": "export const secret = 'leaked';\n",
    "/lib/noisy.js": "console.log('noisy loaded');\nexport const noise = 'n';\n",
    "/lib/fails.js": "throw new Error('module init failed');\n",
    "/lib/spins.js": "while (true) {}\nexport const never = 1;\n",
    "/lib/hog.js": (
        "export const hog = [];\nwhile (true) hog.push(new Uint8Array(1 << 24).fill(1));\n"
    ),
}


class _ModuleServer(ThreadingHTTPServer):
    hits: dict[str, int]


class _Handler(BaseHTTPRequestHandler):
    server: _ModuleServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        body = MODULES.get(self.path)
        if self.path == "/latest/greet.ts":
            self.send_response(302)
            self.send_header("location", "/lib/greet.ts")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if body is None:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        data = body.encode()
        kind = "application/typescript" if self.path.endswith(".ts") else "text/javascript"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def module_server() -> Iterator[_ModuleServer]:
    server = _ModuleServer(("127.0.0.1", 0), _Handler)
    server.hits = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def base_url(server: _ModuleServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


IMPORT_POLICY = """package mcp.import

default allow := false

allow if {
	startswith(input.specifier, "npm:")
	startswith(input.url, "https://registry.npmjs.org/")
}

allow if {
	startswith(input.url, "http://127.0.0.1:")
	not contains(input.url, "/denied/")
}
"""


@pytest.fixture(scope="module")
async def importing(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    """A stateful engine with external modules on, narrowed by an import policy."""
    base = tmp_path_factory.mktemp("imports")
    (base / "import.rego").write_text(IMPORT_POLICY)
    policies = {"import": {"policies": [{"url": (base / "import.rego").as_uri()}]}}
    async with start_engine(
        base / "data",
        stateful=True,
        capabilities=CapabilitySettings(policies_json=json.dumps(policies)),
        modules=ModuleSettings(enabled=True, cache_dir=base / "modules"),
    ) as services:
        yield services


async def completed(services: Services, code: str, **extra: object) -> tuple[str, str | None]:
    record = await run(services, code, execution_timeout_secs=120, **extra)
    assert record.status.value == "completed", record.error
    assert record.result is not None
    return record.result, record.heap


async def failure(services: Services, code: str) -> str:
    record = await run(services, code, execution_timeout_secs=120)
    assert record.status.value == "failed", record.result
    assert record.error is not None
    return record.error


async def test_a_static_npm_import_binds_its_default_export(importing: Services) -> None:
    result, _ = await completed(
        importing, f'import _ from "{LODASH}";\n_.camelCase("hello big world")'
    )
    assert result == "helloBigWorld"


async def test_named_namespace_and_dynamic_imports_of_an_npm_package(
    importing: Services,
) -> None:
    result, _ = await completed(
        importing,
        f'import {{ chunk as split, sum }} from "{LODASH}";\n'
        f'import * as lodash from "{LODASH}";\n'
        f'const {{ kebabCase }} = await import("{LODASH}");\n'
        "[split([1, 2, 3], 2), sum([1, 2, 3]), lodash.upperFirst('x'), kebabCase('a b')]",
    )
    assert json.loads(result) == [[[1, 2], [3]], 6, "X", "a-b"]


async def test_a_commonjs_package_is_converted_and_its_exports_are_the_default(
    importing: Services,
) -> None:
    # left-pad is CommonJS: module.exports = leftPad.
    result, _ = await completed(
        importing,
        'import leftPad from "npm:left-pad@1.3.0";\n'
        'const again = (await import("npm:left-pad@1.3.0")).default;\n'
        '[leftPad("7", 3, "0"), again === leftPad]',
    )
    assert json.loads(result) == ["007", True]


async def test_lines_after_an_import_keep_their_numbers_in_stacks(importing: Services) -> None:
    error = await failure(
        importing,
        f'import _ from "{LODASH}";\n_.noop();\nthrow new Error("third line");',
    )
    assert "third line" in error
    assert "code.js:3:" in error


async def test_url_imports_resolve_relative_modules_and_strip_typescript(
    importing: Services, module_server: _ModuleServer
) -> None:
    url = base_url(module_server)
    result, _ = await completed(
        importing,
        f'import greet, {{ greet as named }} from "{url}/latest/greet.ts";\n'
        "[greet('ann').text, named('bob').text]",
    )
    assert json.loads(result) == ["HELLO ANN!", "HELLO BOB!"]


async def test_a_module_is_downloaded_once_and_shared_by_later_executions(
    importing: Services, module_server: _ModuleServer
) -> None:
    url = f"{base_url(module_server)}/lib/counter.js"
    for _ in range(3):
        # Each execution gets the module fresh (its own sandbox), from the cache.
        result, _heap = await completed(importing, f'import {{ bump }} from "{url}";\nbump()')
        assert result == "1"
    assert module_server.hits["/lib/counter.js"] == 1


async def test_output_of_module_evaluation_belongs_to_each_run_that_imports_it(
    importing: Services, module_server: _ModuleServer
) -> None:
    # The second and later runs get a child that evaluated the module ahead of
    # time: what the module printed is still theirs, once.
    url = f"{base_url(module_server)}/lib/noisy.js"
    assert importing.engine.warm is not None
    handed_out = importing.engine.warm.handed_out
    for i in range(3):
        await anyio.sleep(0.5)  # time to set a child aside
        record = await run(
            importing, f'import {{ noise }} from "{url}";\nconsole.log(noise, {i}); noise'
        )
        assert record.status.value == "completed", record.error
        assert await output_of(importing, record) == f"noisy loaded\nn {i}\n"
    assert importing.engine.warm.handed_out == handed_out + 2


async def test_a_module_that_throws_while_evaluating_fails_every_run_importing_it(
    importing: Services, module_server: _ModuleServer
) -> None:
    url = f"{base_url(module_server)}/lib/fails.js"
    for _ in range(2):
        error = await failure(importing, f'import "{url}";\n1')
        assert "module init failed" in error
    result, _ = await completed(importing, "2 + 2")
    assert result == "4"


async def test_modules_with_top_level_await_load(
    importing: Services, module_server: _ModuleServer
) -> None:
    url = f"{base_url(module_server)}/lib/tla.js"
    result, _ = await completed(importing, f'import {{ answer }} from "{url}";\nanswer + 1')
    assert result == "43"


@guards("import:policy-every-module")
async def test_a_policy_denial_fails_the_import_and_nothing_is_downloaded(
    importing: Services, module_server: _ModuleServer
) -> None:
    url = base_url(module_server)
    code = 'import {{ secret }} from "{}";\nsecret'
    error = await failure(importing, code.format(f"{url}/denied/secret.js"))
    assert "denied" in error and "/denied/secret.js" in error
    error = await failure(importing, code.format(f"{url}/lib/uses-denied.js"))
    assert "denied" in error and "/denied/secret.js" in error
    assert module_server.hits.get("/denied/secret.js", 0) == 0


async def test_clear_errors_for_missing_packages_modules_and_exports(
    importing: Services, module_server: _ModuleServer
) -> None:
    url = base_url(module_server)
    missing = "npm:mcp-v8-no-such-package-zz9"
    error = await failure(importing, f'import x from "{missing}";\nx')
    assert "mcp-v8-no-such-package-zz9" in error and "not found" in error
    error = await failure(importing, f'await import("{url}/lib/absent.js")')
    assert "/lib/absent.js" in error
    error = await failure(importing, f'import {{ x }} from "{url}/lib/broken.js";\nx')
    assert "/lib/broken.js" in error
    error = await failure(importing, f'import {{ nope }} from "{url}/lib/util/shout.js";\nnope')
    assert "does not provide an export named 'nope'" in error
    error = await failure(importing, 'import x from "left-pad";\nx')
    assert "npm:left-pad" in error


async def test_the_engine_keeps_serving_after_failed_imports(importing: Services) -> None:
    await failure(importing, 'import x from "npm:mcp-v8-no-such-package-zz9";\nx')
    result, _ = await completed(importing, "6 * 7")
    assert result == "42"


async def test_node_builtins_import_without_a_download(importing: Services) -> None:
    result, _ = await completed(
        importing, 'import { Buffer } from "node:buffer";\nBuffer.from("hi").toString("hex")'
    )
    assert result == "6869"


async def test_imported_bindings_survive_a_snapshot_without_downloading_again(
    importing: Services, module_server: _ModuleServer
) -> None:
    url = f"{base_url(module_server)}/lib/greet.ts"
    _, heap = await completed(
        importing,
        f'import _ from "{LODASH}";\nimport {{ greet }} from "{url}";\n'
        f'const {{ shout }} = await import("{base_url(module_server)}/lib/util/shout.js");\n'
        "var kept = 'state'; kept",
    )
    assert heap is not None
    hits = dict(module_server.hits)
    result, _ = await completed(
        importing, "[_.camelCase('a b'), greet('x').text, shout('y'), kept]", heap=heap
    )
    assert json.loads(result) == ["aB", "HELLO X!", "Y!", "state"]
    assert module_server.hits == hits


@guards("import:off-by-default")
async def test_imports_are_refused_unless_external_modules_are_allowed(tmp_path: Path) -> None:
    async with start_engine(tmp_path) as services:
        record = await run(services, f'import _ from "{LODASH}";\n_')
        assert record.status.value == "failed"
        assert record.error is not None and "--allow-external-modules" in record.error
        record = await run(services, f'await import("{LODASH}")')
        assert record.error is not None and "--allow-external-modules" in record.error


async def test_modules_that_spin_or_hog_memory_while_evaluating_are_stopped(
    tmp_path: Path, module_server: _ModuleServer
) -> None:
    # Whether evaluated by the run or ahead of it in a set-aside child, a
    # module's evaluation is bound by the run's deadline and memory cap.
    async with start_engine(
        tmp_path,
        modules=ModuleSettings(enabled=True, cache_dir=tmp_path / "modules"),
        execution_timeout_s=1.0,
    ) as services:
        for name, expected in (("spins", "timed_out"), ("hog", "failed")):
            url = f"{base_url(module_server)}/lib/{name}.js"
            for _ in range(2):
                record = await run(services, f'import "{url}";\n1')
                assert record.status.value == expected, record.error
                if expected == "failed":
                    assert record.error is not None and "memory limit" in record.error
                await anyio.sleep(1.3)  # let the set-aside attempt run into its limit too
        record = await run(services, "1 + 1")
        assert record.result == "2"
