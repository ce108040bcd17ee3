"""Nothing is lost when the server is killed: SIGKILL in the middle of work, then restart."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._requirements import guards
from tests.web._server import serve, start

pytestmark = pytest.mark.deno


@guards("store:crash-safe")
def test_a_killed_server_loses_nothing_it_had_accepted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    accepted: list[str] = []
    with serve(data, "--max-concurrent-executions", "2", stateful=True) as first:
        http = httpx.Client(base_url=first.url, timeout=30)
        # Finished work, in a session.
        heap = None
        for step in range(3):
            fields: dict[str, Any] = {"session": "s"} | ({"heap": heap} if heap else {})
            execution_id = start(http, f"var step = {step}; 'done ' + step", **fields)
            record = http.get(f"/api/executions/{execution_id}", params={"wait": 30}).json()
            assert record["status"] == "completed"
            heap = record["heap"]
            accepted.append(execution_id)
        # Work in flight: two running with output written, more queued behind them.
        talkers = [
            start(
                http,
                f"console.log('before the kill {i}'); "
                "await new Promise(r => (globalThis.hold = r))",
            )
            for i in range(2)
        ]
        queued = [start(http, "1 + 1") for _ in range(3)]
        accepted += talkers + queued
        for execution_id in talkers:
            for _ in range(200):
                page = http.get(f"/api/executions/{execution_id}/output").json()
                if page["data"]:
                    break
                http.get(f"/api/executions/{execution_id}", params={"wait": 0.05})
            assert page["data"].startswith("before the kill")
        first.process.kill()
        first.process.wait()
        http.close()

    with serve(data, stateful=True) as second, httpx.Client(base_url=second.url) as http:
        for execution_id in accepted:
            record = http.get(f"/api/executions/{execution_id}").json()
            assert record["status"] in ("completed", "failed"), record
            if record["status"] == "failed":
                assert "stopped" in record["error"]
        for i, execution_id in enumerate(talkers):
            page = http.get(f"/api/executions/{execution_id}/output").json()
            assert page["data"] == f"before the kill {i}\n"
        log = http.get("/api/sessions/s/snapshots").json()["snapshots"]
        assert [entry["index"] for entry in log] == [1, 2, 3]
        assert log[2]["output_heap"] == heap
        resumed = start(http, "step", heap=heap)
        record = http.get(f"/api/executions/{resumed}", params={"wait": 30}).json()
        assert record["result"] == "2"
    for stored in (data / "heaps").rglob("*"):
        if stored.is_file() and not stored.name.startswith("."):
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == stored.name
