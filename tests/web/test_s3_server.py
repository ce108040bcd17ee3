"""The server with its heaps in S3 (a real S3-protocol server on loopback), cached or not."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.heaps.conftest import s3_client
from tests.web._server import free_port, run, serve

pytestmark = pytest.mark.deno


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ThreadedMotoServer, str]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    s3_client(endpoint).create_bucket(Bucket="heaps")
    try:
        yield server, endpoint
    finally:
        server.stop()


@pytest.mark.parametrize("cached", [False, True], ids=["s3", "s3-with-cache"])
def test_heaps_live_in_s3_and_a_run_resumes_from_them(
    moto: tuple[ThreadedMotoServer, str], tmp_path: Path, cached: bool
) -> None:
    _server, endpoint = moto
    data = tmp_path / "data"
    flags = ["--s3-bucket", "heaps", "--s3-endpoint-url", endpoint]
    flags += ["--session-db-path", str(data / "sessions")]
    if cached:
        flags += ["--cache-dir", str(tmp_path / "cache")]
    assert "AWS_SECRET_ACCESS_KEY" in os.environ
    with serve(data, *flags, stateful=None) as server, httpx.Client(base_url=server.url) as http:
        first = run(http, "var greeting = 'hello from s3'")
        assert first["status"] == "completed", first
        stored = s3_client(endpoint).list_objects_v2(Bucket="heaps")["Contents"]
        assert [obj["Key"] for obj in stored] == [f"heaps/{first['heap']}"]
        assert run(http, "greeting", heap=first["heap"])["result"] == "hello from s3"


def test_an_unreachable_s3_fails_the_run_clearly_and_the_server_keeps_serving(
    moto: tuple[ThreadedMotoServer, str], tmp_path: Path
) -> None:
    server_s3, endpoint = moto
    data = tmp_path / "data"
    flags = ["--s3-bucket", "heaps", "--s3-endpoint-url", endpoint]
    flags += ["--session-db-path", str(data / "sessions")]
    with serve(data, *flags, stateful=None) as server, httpx.Client(base_url=server.url) as http:
        kept = run(http, "var kept = 1")["heap"]
        server_s3.stop()
        failed = run(http, "var lost = 2")
        assert failed["status"] == "failed"
        assert "S3" in failed["error"] or "s3://" in failed["error"]
        assert failed["heap"] is None
        server_s3.start()
        assert run(http, "kept", heap=kept)["result"] == "1"
