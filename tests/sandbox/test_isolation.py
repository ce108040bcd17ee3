"""Sandbox guarantees: each test is user code trying to break one, against a real Deno child.

Every test checks both that the attempt is reported as a failure and that its
side effect (a read secret, a connection, a file, a process) did not happen.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

import sandbox_host
from supervisor.app import Services
from supervisor.store import ExecutionRecord, ExecutionStatus
from tests._requirements import guards
from tests.conftest import EngineFactory, output_of, run

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

SECRET = "s3cr3t-4a7f9c"
# Deno's own refusals, and the brokered fetch/fs of a server without policies for them.
DENIED = ("NotCapable", "Requires", "is not enabled on this server")


def assert_denied(record: ExecutionRecord, *markers: str) -> None:
    """The execution failed, naming why (a permission error unless ``markers`` say otherwise)."""
    assert record.status == ExecutionStatus.FAILED, (record.status, record.result)
    assert record.error is not None
    assert any(marker in record.error for marker in markers or DENIED), record.error


def assert_not_leaked(record: ExecutionRecord, secret: str) -> None:
    assert secret not in (record.result or "")
    assert secret not in (record.error or "")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.json"
    path.write_text(json.dumps({"token": SECRET}))
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP port that records whether anything connected to it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def nobody_connected(server: socket.socket) -> bool:
    # A completed TCP handshake sits in the backlog whether or not it was accepted.
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


# --- files


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("Deno.readTextFileSync({path})", id="Deno.readTextFileSync"),
        pytest.param("await Deno.readFile({path})", id="Deno.readFile"),
        pytest.param("const r = await fetch('file://' + {path}); await r.text()", id="fetch-file"),
        pytest.param("await import('file://' + {path}, {{with: {{type: 'json'}}}})", id="import"),
        pytest.param("await import('file://' + {path}, {{with: {{type: 'text'}}}})", id="import-t"),
        pytest.param(
            "const fs = await import('node:fs'); fs.readFileSync({path}, 'utf8')", id="fs"
        ),
        pytest.param("Deno.openSync({path}).readSync(new Uint8Array(64))", id="Deno.openSync"),
        pytest.param("[...Deno.readDirSync({dir})].map((e) => e.name)", id="readDirSync"),
    ],
)
@guards("sandbox:no-fs-read")
async def test_user_code_cannot_read_files(
    services: Services, secret_file: Path, template: str
) -> None:
    code = template.format(
        path=json.dumps(str(secret_file)), dir=json.dumps(str(secret_file.parent))
    )
    record = await run(services, code)
    assert_denied(record)
    assert_not_leaked(record, SECRET)


@guards("sandbox:no-fs-read")
async def test_user_code_cannot_read_etc_passwd(services: Services) -> None:
    for code in (
        "Deno.readTextFileSync('/etc/passwd')",
        "const response = await fetch('file:///etc/passwd'); await response.text()",
        "await import('file:///etc/passwd')",
    ):
        record = await run(services, code)
        assert_denied(record)
        assert "root:" not in (record.result or "") + (record.error or "")


@guards("sandbox:no-fs-read")
async def test_user_code_cannot_read_the_execution_database(services: Services) -> None:
    await run(services, f"'{SECRET}'")
    data_dir = services.settings.storage.data_dir
    # The record is in the database or its write-ahead log; try to read every file there.
    files = [path for path in data_dir.glob("executions.sqlite3*") if path.is_file()]
    assert any(SECRET.encode() in path.read_bytes() for path in files)
    for path in files:
        record = await run(services, f"Deno.readFileSync({json.dumps(str(path))})")
        assert_denied(record)
        assert_not_leaked(record, SECRET)


# --- environment


def sandbox_environments(services: Services) -> list[dict[str, str]]:
    """The environments of this process's live sandbox children (found by their bootstrap)."""
    bootstrap = str(sandbox_host.BOOTSTRAP)
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if bootstrap in child.cmdline():
                found.append(child.environ())
        except psutil.Error:
            continue  # exited meanwhile
    return found


@guards("sandbox:no-env")
async def test_user_code_cannot_read_the_supervisors_environment(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_V8_TEST_SECRET", SECRET)
    async with engine_factory() as services:
        for code in (
            "Deno.env.get('MCP_V8_TEST_SECRET')",
            "Deno.env.toObject()",
            "Deno.env.has('MCP_V8_TEST_SECRET')",
            "Deno.readTextFileSync('/proc/self/environ')",
            "const process = await import('node:process'); process.env.MCP_V8_TEST_SECRET",
        ):
            record = await run(services, code)
            assert_denied(record)
            assert_not_leaked(record, SECRET)
        # Nor does the secret reach the children's environment at all.
        with anyio.fail_after(10):
            while not (environs := sandbox_environments(services)):
                await anyio.sleep(0.01)
        for environ in environs:
            assert "MCP_V8_TEST_SECRET" not in environ
            assert SECRET not in environ.values()


# --- network


@guards("sandbox:no-net")
async def test_user_code_cannot_fetch_from_a_local_server(
    services: Services, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    record = await run(services, f"await fetch('http://127.0.0.1:{port}/')")
    assert_denied(record)
    assert nobody_connected(listener)


@guards("sandbox:no-net")
async def test_user_code_cannot_open_or_accept_connections(
    services: Services, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    connect = await run(services, f"await Deno.connect({{hostname: '127.0.0.1', port: {port}}})")
    assert_denied(connect)
    node_net = await run(
        services,
        "const net = await import('node:net');\n"
        f"await new Promise((ok, fail) => net.connect({port}, '127.0.0.1', ok).on('error', fail))",
    )
    assert_denied(node_net)
    assert nobody_connected(listener)
    listen = await run(services, "Deno.listen({hostname: '127.0.0.1', port: 0})")
    assert_denied(listen)


@guards("sandbox:no-remote-code", "sandbox:no-net")
async def test_remote_imports_are_refused_without_any_request(
    services: Services, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    record = await run(services, f"await import('http://127.0.0.1:{port}/mod.js')")
    assert_denied(record, "--no-remote", *DENIED)
    assert nobody_connected(listener)


@guards("sandbox:no-remote-code")
async def test_npm_and_https_imports_fail_without_a_download(services: Services) -> None:
    # The cell's import() goes to the server's loader, off without --allow-external-modules.
    npm = await run(services, "await import('npm:left-pad@1.3.0')")
    assert_denied(npm, "--allow-external-modules")
    static = await run(services, "import pad from 'https://deno.land/std@0.224.0/version.ts'; pad")
    assert_denied(static, "--allow-external-modules")
    # An import() the server never saw (built at run time) reaches Deno itself, which refuses.
    native = "const load = new Function('s', 'return import(s)');\n"
    npm = await run(services, native + "await load('npm:left-pad@1.3.0')")
    assert_denied(npm, "--no-npm")
    remote = await run(services, native + "await load('https://deno.land/std@0.224.0/version.ts')")
    assert_denied(remote, "--no-remote")


# --- processes and native code


@guards("sandbox:no-subprocess")
async def test_user_code_cannot_spawn_processes(services: Services, tmp_path: Path) -> None:
    marker = tmp_path / "spawned"
    touch = json.dumps(f"touch {marker}")
    attempts = {
        "new Deno.Command('ls').outputSync()": ("Failed to spawn", *DENIED),
        f"new Deno.Command('/bin/sh', {{args: ['-c', {touch}]}}).outputSync()": DENIED,
        f"new Deno.Command('/bin/sh', {{args: ['-c', {touch}]}}).spawn()": DENIED,
        "const cp = await import('node:child_process');\n"
        f"cp.execFileSync('/bin/sh', ['-c', {touch}])": DENIED,
    }
    for code, markers in attempts.items():
        record = await run(services, code)
        assert_denied(record, *markers)
    assert not marker.exists()


@guards("sandbox:no-ffi")
async def test_user_code_cannot_load_native_libraries(services: Services) -> None:
    record = await run(
        services, "Deno.dlopen('libc.so.6', {getpid: {parameters: [], result: 'i32'}})"
    )
    assert_denied(record)


# --- nothing persists from one execution to the next


@guards("sandbox:no-persistence")
async def test_globals_set_in_one_execution_are_absent_in_the_next(services: Services) -> None:
    first = await run(services, "globalThis.leftBehind = 'first'; var alsoLeft = 1; 'set'")
    assert first.result == "set"
    second = await run(services, "[typeof globalThis.leftBehind, typeof alsoLeft].join(',')")
    assert second.result == "undefined,undefined"


@guards("sandbox:no-persistence")
async def test_web_storage_and_caches_are_unavailable(services: Services) -> None:
    record = await run(
        services,
        "[typeof localStorage, typeof sessionStorage, typeof caches].join(',')",
    )
    assert record.result == "undefined,undefined,undefined"
    write = await run(services, f"localStorage.setItem('k', '{SECRET}')")
    assert write.status == ExecutionStatus.FAILED
    assert write.error is not None and "localStorage" in write.error


@guards("sandbox:no-fs-write")
async def test_user_code_cannot_write_files(services: Services, tmp_path: Path) -> None:
    target = tmp_path / "written"
    for code in (
        f"Deno.writeTextFileSync({json.dumps(str(target))}, 'x')",
        f"Deno.mkdirSync({json.dumps(str(target))})",
        "Deno.writeTextFileSync('/tmp/x-mcp-v8-sandbox', 'x')",
        "Deno.makeTempFileSync()",
    ):
        record = await run(services, code)
        assert_denied(record)
    assert not target.exists()
    assert not Path("/tmp/x-mcp-v8-sandbox").exists()


@guards("sandbox:one-process-each")
async def test_each_execution_runs_in_a_different_process(services: Services) -> None:
    pids = [(await run(services, "Deno.pid")).result for _ in range(3)]
    assert None not in pids
    assert len(set(pids)) == 3
    assert str(psutil.Process().pid) not in pids


async def test_user_code_that_exits_its_process_fails_only_its_own_execution(
    services: Services,
) -> None:
    record = await run(services, "console.log('bye'); Deno.exit(0)")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None and "without a result" in record.error
    assert await output_of(services, record) == "bye\n"
    after = await run(services, "1 + 1")
    assert after.result == "2"
