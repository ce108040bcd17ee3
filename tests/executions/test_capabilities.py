"""fetch() and fs from user code, through the real engine, real Deno and real policies."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from supervisor.app import Services
from supervisor.config import CapabilitySettings
from tests._requirements import guards
from tests.conftest import run, start_engine

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

FETCH_POLICY = """package mcp.fetch

default allow := false

allow if {
	input.resolved_ip == "127.0.0.1"
	not startswith(input.url_parsed.path, "/forbidden")
}
"""

FS_POLICY = """package mcp.fs

default allow := false

allow if startswith(input.path, concat("", [data_root, "/"]))
"""


ROOTS: dict[int, Path] = {}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/json":
            self._reply(200, b'{"n": 42}', content_type="application/json", x_extra="yes")
        elif self.path == "/bytes":
            self._reply(200, bytes(range(256)), content_type="application/octet-stream")
        elif self.path == "/redirect":
            self._reply(302, b"", location="/json")
        elif self.path == "/to-forbidden":
            self._reply(302, b"", location="/forbidden/secret")
        elif self.path == "/slow":
            time.sleep(3)
            self._reply(200, b"late")
        elif self.path.startswith("/forbidden"):
            self.server.forbidden_hits += 1  # type: ignore[attr-defined]
            self._reply(200, b"secret")
        else:
            self._reply(404, b"nope")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        self._reply(200, body, content_type=self.headers.get("content-type", ""))


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[str, ThreadingHTTPServer]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.forbidden_hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
async def brokered(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    base = tmp_path_factory.mktemp("capabilities")
    root = base / "root"
    root.mkdir()
    (base / "fetch.rego").write_text(FETCH_POLICY)
    (base / "fs.rego").write_text(FS_POLICY.replace("data_root", json.dumps(str(root))))
    policies = {
        "fetch": {"policies": [{"url": (base / "fetch.rego").as_uri()}]},
        "fs": {"policies": [{"url": (base / "fs.rego").as_uri()}]},
    }
    settings = CapabilitySettings(policies_json=json.dumps(policies))
    async with start_engine(base / "data", capabilities=settings) as services:
        ROOTS[id(services)] = root
        yield services


async def result_of(services: Services, code: str) -> str:
    record = await run(services, code, execution_timeout_secs=10)
    assert record.status.value == "completed", record.error
    assert record.result is not None
    return record.result


async def test_fetch_returns_a_web_response(
    brokered: Services, web: tuple[str, ThreadingHTTPServer]
) -> None:
    url = web[0]
    result = await result_of(
        brokered,
        f"""const r = await fetch("{url}/json");
        const copy = r.clone();
        ({{ok: r.ok, status: r.status, type: r.type, url: r.url, redirected: r.redirected,
           json: await r.json(), text: await copy.text(), used: r.bodyUsed,
           ct: r.headers.get("content-type"), has: r.headers.has("x-extra"),
           keys: [...r.headers.keys()].includes("x-extra")}})""",
    )
    assert json.loads(result) == {
        "ok": True,
        "status": 200,
        "type": "basic",
        "url": f"{url}/json",
        "redirected": False,
        "json": {"n": 42},
        "text": '{"n": 42}',
        "used": True,
        "ct": "application/json",
        "has": True,
        "keys": True,
    }


async def test_fetch_bodies_are_binary_safe_both_ways(
    brokered: Services, web: tuple[str, ThreadingHTTPServer]
) -> None:
    url = web[0]
    down = await result_of(
        brokered, f'Array.from(new Uint8Array(await (await fetch("{url}/bytes")).arrayBuffer()))'
    )
    assert json.loads(down) == list(range(256))
    up = await result_of(
        brokered,
        f"""const sent = new Uint8Array([0, 255, 1, 254]);
        const r = await fetch("{url}/echo", {{method: "POST", body: sent,
            headers: {{"content-type": "application/octet-stream"}}}});
        Array.from(new Uint8Array(await r.arrayBuffer()))""",
    )
    assert json.loads(up) == [0, 255, 1, 254]


@guards("fetch:policy-every-hop")
async def test_redirects_are_followed_and_each_hop_is_decided(
    brokered: Services, web: tuple[str, ThreadingHTTPServer]
) -> None:
    url, server = web
    followed = await result_of(
        brokered, f'const r = await fetch("{url}/redirect"); [r.redirected, r.url, r.status]'
    )
    assert json.loads(followed) == [True, f"{url}/json", 200]
    hits = server.forbidden_hits  # type: ignore[attr-defined]
    denied = await result_of(
        brokered,
        f'try {{ await fetch("{url}/to-forbidden"); "fetched" }} catch (e) {{ e.message }}',
    )
    assert "denied by policy" in denied
    assert server.forbidden_hits == hits  # type: ignore[attr-defined]


async def test_a_denied_fetch_rejects_with_denied_by_policy(brokered: Services) -> None:
    message = await result_of(
        brokered, 'try { await fetch("http://10.255.255.1/"); "fetched" } catch (e) { e.message }'
    )
    assert "denied by policy" in message


async def test_fs_operations_work_under_the_allowed_root(brokered: Services) -> None:
    root = ROOTS[id(brokered)]
    result = await result_of(
        brokered,
        f"""const base = {json.dumps(str(root))};
        await fs.mkdir(base + "/a/b", {{recursive: true}});
        await fs.writeFile(base + "/a/b/f.txt", "hello");
        await fs.appendFile(base + "/a/b/f.txt", " world");
        await fs.writeFile(base + "/a/bin", new Uint8Array([0, 200, 255]));
        await fs.copyFile(base + "/a/b/f.txt", base + "/a/copy.txt");
        await fs.rename(base + "/a/copy.txt", base + "/a/moved.txt");
        const stat = await fs.stat(base + "/a/b/f.txt");
        const out = {{
          text: await fs.readFile(base + "/a/b/f.txt"),
          bytes: Array.from(await fs.readFile(base + "/a/bin", "buffer")),
          names: await fs.readdir(base + "/a"),
          size: stat.size, isFile: stat.isFile, isDir: stat.isDirectory,
          exists: await fs.exists(base + "/a/moved.txt"),
          gone: await fs.exists(base + "/a/copy.txt"),
        }};
        await fs.rm(base + "/a", {{recursive: true}});
        out.after = await fs.exists(base + "/a");
        out""",
    )
    assert json.loads(result) == {
        "text": "hello world",
        "bytes": [0, 200, 255],
        "names": ["b", "bin", "moved.txt"],
        "size": 11,
        "isFile": True,
        "isDir": False,
        "exists": True,
        "gone": False,
        "after": False,
    }


@guards("fs:no-escape")
async def test_fs_errors_are_node_like_and_denials_say_so(brokered: Services) -> None:
    root = ROOTS[id(brokered)]
    result = await result_of(
        brokered,
        f"""const base = {json.dumps(str(root))};
        const grab = async (f) => {{ try {{ await f(); return "ok" }}
                                     catch (e) {{ return [e.code, e.message] }} }};
        [await grab(() => fs.readFile(base + "/missing.txt")),
         await grab(() => fs.readFile("/etc/passwd")),
         await grab(() => fs.readFile(base + "/../../../etc/passwd"))]""",
    )
    missing, outside, traversal = json.loads(result)
    assert missing[0] == "ENOENT" and "missing.txt" in missing[1]
    assert outside[0] == "EPOLICY" and "denied by policy" in outside[1]
    assert traversal[0] == "EPOLICY"


async def test_without_policies_fetch_and_fs_are_not_enabled(
    tmp_path: Path,
) -> None:
    async with start_engine(tmp_path / "data") as plain:
        result = await result_of(
            plain,
            """const why = async (f) => { try { await f() } catch (e) { return e.message } };
            [await why(() => fetch("http://127.0.0.1/")), await why(() => fs.readFile("/x"))]""",
        )
    assert json.loads(result) == [
        "fetch is not enabled on this server",
        "fs is not enabled on this server",
    ]


async def test_the_execution_timeout_covers_time_spent_in_fetch(
    brokered: Services, web: tuple[str, ThreadingHTTPServer]
) -> None:
    started = time.monotonic()
    record = await run(brokered, f'await fetch("{web[0]}/slow"); "done"', execution_timeout_secs=1)
    assert record.status.value == "timed_out"
    assert time.monotonic() - started < 2.5
