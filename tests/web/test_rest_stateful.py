"""The REST API in stateful mode: heaps, sessions and tags over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.web._server import Server, run, serve

pytestmark = pytest.mark.deno

HEX64 = "0" * 64


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("rest-stateful") / "data", stateful=True) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def test_a_run_returns_a_heap_and_a_later_run_resumes_from_it(client: httpx.Client) -> None:
    first = run(client, "let total = 40; function add(n) { total += n; return total }")
    assert first["status"] == "completed"
    assert len(first["heap"]) == 64
    second = run(client, "add(2)", heap=first["heap"])
    assert second["result"] == "42"
    assert second["input_heap"] == first["heap"]
    assert second["heap"] != first["heap"]


def test_what_cannot_persist_is_listed_with_the_result(client: httpx.Client) -> None:
    record = run(client, "const tick = (() => { let n = 0; return () => ++n })(); 1")
    assert [p["name"] for p in record["not_persisted"]] == ["tick"]
    assert "closure" in record["not_persisted"][0]["reason"]


def test_an_unknown_heap_is_refused_with_404(client: httpx.Client) -> None:
    response = client.post("/api/exec", json={"code": "1", "heap": HEX64})
    assert response.status_code == 404
    assert "heap not found" in response.json()["error"]["message"]


@pytest.mark.parametrize("heap", ["abc", "Z" * 64, "../../etc/passwd"])
def test_a_malformed_heap_is_refused_with_400(client: httpx.Client, heap: str) -> None:
    response = client.post("/api/exec", json={"code": "1", "heap": heap})
    assert response.status_code == 400
    assert "64 lowercase hex" in response.json()["error"]["message"]


def test_sessions_log_each_run_and_list_chosen_fields(client: httpx.Client) -> None:
    first = run(client, "var n = 1", session="notebook")
    run(client, "n += 1", session="notebook", heap=first["heap"])
    assert "notebook" in client.get("/api/sessions").json()["sessions"]
    log = client.get(
        "/api/sessions/notebook/snapshots", params={"fields": "index,input_heap,code"}
    ).json()
    assert log["snapshots"] == [
        {"index": 1, "input_heap": None, "code": "var n = 1"},
        {"index": 2, "input_heap": first["heap"], "code": "n += 1"},
    ]


def test_unknown_snapshot_fields_are_refused_by_name(client: httpx.Client) -> None:
    response = client.get("/api/sessions/notebook/snapshots", params={"fields": "index,colour"})
    assert response.status_code == 400
    assert "colour" in response.json()["error"]["message"]


@pytest.mark.parametrize("session", ["", " ", "x" * 1000])
def test_empty_or_absurd_session_names_are_refused(client: httpx.Client, session: str) -> None:
    response = client.post("/api/exec", json={"code": "1", "session": session})
    assert response.status_code == 400
    assert "session" in response.json()["error"]["message"]


def test_tags_are_set_replaced_deleted_and_queried(client: httpx.Client) -> None:
    heap = run(client, "var tagged = 1", tags={"project": "x", "stage": "dev"})["heap"]
    assert client.get(f"/api/heaps/{heap}/tags").json()["tags"] == {
        "project": "x",
        "stage": "dev",
    }
    found = client.post("/api/heaps/query", json={"tags": {"project": "x"}}).json()["heaps"]
    assert heap in found
    client.put(f"/api/heaps/{heap}/tags", json={"tags": {"stage": "prod", "owner": "me"}})
    assert client.get(f"/api/heaps/{heap}/tags").json()["tags"] == {"owner": "me", "stage": "prod"}
    remaining = client.request(
        "DELETE", f"/api/heaps/{heap}/tags", json={"keys": ["owner"]}
    ).json()["tags"]
    assert remaining == {"stage": "prod"}
    assert (
        heap not in client.post("/api/heaps/query", json={"tags": {"project": "x"}}).json()["heaps"]
    )


@pytest.mark.parametrize(
    "tags", [{"a": 1}, ["a"], "a=b", {"a": {"b": "c"}}], ids=["int", "list", "str", "nested"]
)
def test_tags_that_are_not_string_maps_are_refused(client: httpx.Client, tags: Any) -> None:
    response = client.post("/api/exec", json={"code": "1", "tags": tags})
    assert response.status_code == 400
    assert "tags" in response.json()["error"]["message"]


def test_tags_of_an_unknown_heap_are_404(client: httpx.Client) -> None:
    assert client.get(f"/api/heaps/{HEX64}/tags").status_code == 404
    assert client.put(f"/api/heaps/{HEX64}/tags", json={"tags": {}}).status_code == 404


def test_the_openapi_document_and_swagger_ui_are_served(client: httpx.Client) -> None:
    document = client.get("/api-doc/openapi.json").json()
    assert "/api/exec" in document["paths"]
    page = client.get("/swagger-ui")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert client.get("/swagger-ui/assets/swagger-ui-bundle.js").status_code == 200


def test_console_output_is_readable_while_the_code_runs(client: httpx.Client) -> None:
    execution_id = client.post(
        "/api/exec",
        json={
            "code": "console.log('early'); await new Promise(r => setTimeout(r, 1500)); 1",
        },
    ).json()["execution_id"]
    for _ in range(100):
        page = client.get(f"/api/executions/{execution_id}/output").json()
        if page["data"]:
            break
        client.get(f"/api/executions/{execution_id}", params={"wait": 0.05})
    assert page["data"] == "early\n"
    assert page["status"] == "running"
