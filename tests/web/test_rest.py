"""The REST API over real HTTP, against the real server and real Deno."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests._requirements import guards
from tests.web._server import Server, run, serve

pytestmark = pytest.mark.deno


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("rest") / "data"
    with serve(data, "--max-code-bytes", "4096", "--max-body-bytes", "65536") as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def test_exec_returns_an_id_and_wait_returns_the_completed_record(client: httpx.Client) -> None:
    record = run(client, "console.log('hi'); 1 + 1")
    assert record["status"] == "completed"
    assert record["result"] == "2"
    assert record["error"] is None
    assert record["started_at"] <= record["completed_at"]


def test_a_failing_execution_reports_its_error(client: httpx.Client) -> None:
    record = run(client, "\n\nnull.x")
    assert record["status"] == "failed"
    assert "TypeError" in record["error"]
    assert "code.js:3:" in record["error"]


def test_wait_returns_early_with_the_running_status_when_the_code_is_slow(
    client: httpx.Client,
) -> None:
    execution_id = client.post(
        "/api/exec", json={"code": "await new Promise(r => setTimeout(r, 1500)); 1"}
    ).json()["execution_id"]
    early = client.get(f"/api/executions/{execution_id}", params={"wait": 0.2}).json()
    assert early["status"] in ("queued", "running")
    assert (
        client.get(f"/api/executions/{execution_id}", params={"wait": 10}).json()["status"]
        == "completed"
    )


def test_output_pages_concatenate_to_the_whole_output_in_line_and_byte_mode(
    client: httpx.Client,
) -> None:
    record = run(client, "for (let i = 0; i < 250; i++) console.log('line', i, 'é漢😀')")
    execution_id = record["execution_id"]
    whole = "".join(f"line {i} é漢😀\n" for i in range(250))
    by_lines, offset = [], 1
    while True:
        page = client.get(
            f"/api/executions/{execution_id}/output",
            params={"line_offset": offset, "line_limit": 37},
        ).json()
        by_lines.append(page["data"])
        offset = page["next_line_offset"]
        if not page["has_more"]:
            break
    assert "".join(by_lines) == whole
    assert page["total_lines"] == 250
    by_bytes, offset = [], 0
    while True:
        page = client.get(
            f"/api/executions/{execution_id}/output",
            params={"byte_offset": offset, "byte_limit": 101},
        ).json()
        by_bytes.append(page["data"])
        offset = page["next_byte_offset"]
        if not page["has_more"]:
            break
    assert "".join(by_bytes) == whole
    assert page["total_bytes"] == len(whole.encode())


def test_cancel_stops_a_running_execution(client: httpx.Client) -> None:
    execution_id = client.post("/api/exec", json={"code": "while (true) {}"}).json()["execution_id"]
    client.get(f"/api/executions/{execution_id}", params={"wait": 0.3})
    cancelled = client.post(f"/api/executions/{execution_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert run(client, "2 + 2")["result"] == "4"


def test_responses_do_not_name_the_server_software(client: httpx.Client) -> None:
    response = client.get("/api/executions", params={"limit": 1})
    assert response.status_code == 200
    assert "server" not in response.headers
    assert "date" in response.headers


def test_executions_are_listed_newest_first(client: httpx.Client) -> None:
    first = run(client, "'first'")["execution_id"]
    second = run(client, "'second'")["execution_id"]
    listed = [e["execution_id"] for e in client.get("/api/executions").json()["executions"]]
    assert listed.index(second) < listed.index(first)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 400, "code: Field required"),
        (b'{"code": 5}', 400, "code: Input should be a valid string"),
        (b'{"code": "1", "execution_timeout_secs": 301}', 400, "execution_timeout_secs"),
        (b'{"code": "1", "heap_memory_max_mb": 0}', 400, "heap_memory_max_mb"),
        (b'{"code": "1", "heap_memory_max_mb": true}', 400, "heap_memory_max_mb"),
        (b'{"code": "1", "colour": "blue"}', 400, "colour: Extra inputs are not permitted"),
        (b'{"code": "' + b"x" * 5000 + b'"}', 413, "4096"),
        (b'{"code": "' + b"x" * 70000 + b'"}', 413, "65536"),
    ],
)
@guards("limits:input-size")
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(
    client: httpx.Client, body: bytes, status: int, needle: str
) -> None:
    response = client.post("/api/exec", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert needle in response.json()["error"]["message"]
    assert run(client, "1 + 1")["result"] == "2"


@pytest.mark.parametrize(
    "path",
    ["/api/executions/no-such-id", "/api/executions/no-such-id/output"],
)
def test_unknown_execution_ids_get_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "no-such-id" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"wait": "soon"},
        {"wait": "-1"},
        {"wait": "nan"},
    ],
)
def test_bad_wait_values_are_rejected(client: httpx.Client, params: dict[str, str]) -> None:
    execution_id = run(client, "1")["execution_id"]
    response = client.get(f"/api/executions/{execution_id}", params=params)
    assert response.status_code == 400
    assert "wait" in response.json()["error"]["message"]


def test_mixing_line_and_byte_paging_is_rejected(client: httpx.Client) -> None:
    execution_id = run(client, "console.log(1)")["execution_id"]
    response = client.get(
        f"/api/executions/{execution_id}/output", params={"line_offset": 1, "byte_offset": 0}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({"host": "evil.example"}, "/api/executions"),
        ({"origin": "http://evil.example"}, "/api/executions"),
        ({"host": "evil.example"}, "/mcp"),
        ({"origin": "https://evil.example"}, "/mcp"),
    ],
)
@guards("http:host-origin")
def test_foreign_host_or_origin_is_forbidden_on_rest_and_mcp(
    client: httpx.Client, headers: dict[str, str], path: str
) -> None:
    response = client.post(path, headers=headers, json={})
    assert response.status_code == 403
    assert "not allowed" in response.json()["error"]["message"]


def test_local_origins_are_allowed(client: httpx.Client, server: Server) -> None:
    response = client.get("/api/executions", headers={"origin": server.url})
    assert response.status_code == 200


@guards("limits:input-size")
def test_an_oversized_streamed_body_is_refused_without_a_content_length(
    client: httpx.Client,
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    response = client.post("/api/exec", content=chunks())
    assert response.status_code == 413


@guards("store:crash-safe", "lifecycle:no-orphans")
def test_executions_survive_a_restart_and_unfinished_ones_are_marked_failed(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with serve(data) as first, httpx.Client(base_url=first.url, timeout=30) as http:
        done = run(http, "'kept'")["execution_id"]
        pending = http.post(
            "/api/exec", json={"code": "while (true) {}", "execution_timeout_secs": 1}
        ).json()["execution_id"]
        ticking = http.post(
            "/api/exec", json={"code": "setInterval(() => {}, 20); 1", "execution_timeout_secs": 60}
        ).json()["execution_id"]
        http.get(f"/api/executions/{pending}", params={"wait": 0.3})
        children = psutil.Process(first.process.pid).children(recursive=True)
        assert children, "the server should have sandbox children"
        first.process.kill()  # SIGKILL: no chance to clean up
        first.process.wait()
    # Orphaned children end too: idle ones and the ticking one see stdin close,
    # the spinning one hits RLIMIT_CPU.
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    with serve(data) as second, httpx.Client(base_url=second.url, timeout=30) as http:
        assert http.get(f"/api/executions/{done}").json()["result"] == "kept"
        interrupted = http.get(f"/api/executions/{pending}").json()
        assert interrupted["status"] == "failed"
        assert "stopped" in interrupted["error"]
        assert http.get(f"/api/executions/{ticking}").json()["status"] == "failed"
