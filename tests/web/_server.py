"""Start the real ``mcp-v8`` server as a subprocess for edge tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port that was free a moment ago on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running server: its process, base URL and data directory."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def command(*args: str) -> list[str]:
    """The argv of the server, as a user would run it."""
    return [sys.executable, "-m", "supervisor", *args]


def storage_args(data_dir: Path, stateful: bool | None) -> list[str]:
    """``--stateless``, heaps and session logs under ``data_dir``, or (None) nothing."""
    if stateful is None:
        return []
    if not stateful:
        return ["--stateless"]
    return [
        "--directory-path",
        str(data_dir / "heaps"),
        "--session-db-path",
        str(data_dir / "sessions"),
    ]


@contextmanager
def serve(
    data_dir: Path, *args: str, transport: str = "--http-port", stateful: bool | None = False
) -> Iterator[Server]:
    """Run ``mcp-v8 <storage> <transport> PORT --data-dir DATA_DIR ARGS`` until the block ends."""
    port = free_port()
    log = data_dir.with_suffix(".log")
    argv: Sequence[str] = command(
        *storage_args(data_dir, stateful), transport, str(port), "--data-dir", str(data_dir), *args
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=os.environ)
    server = Server(process, f"http://127.0.0.1:{port}", data_dir, log)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(server)


def wait_ready(server: Server, timeout_s: float = 30) -> None:
    """Poll until the REST API answers (or fail with the server's log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log_text()}")
        try:
            httpx.get(f"{server.url}/api/executions", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not start:\n{server.log_text()}")


def stop(server: Server) -> None:
    """SIGTERM, then SIGKILL if it does not stop."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def start(http: httpx.Client, code: str, **fields: Any) -> str:
    """``POST /api/exec``; the new execution's id."""
    response = http.post("/api/exec", json={"code": code, **fields})
    assert response.status_code == 200, response.text
    execution_id: str = response.json()["execution_id"]
    return execution_id


def run(http: httpx.Client, code: str, **fields: Any) -> dict[str, Any]:
    """Start an execution and wait (up to 30 s) for its final record."""
    execution_id = start(http, code, **fields)
    final = http.get(f"/api/executions/{execution_id}", params={"wait": 30})
    assert final.status_code == 200, final.text
    body: dict[str, Any] = final.json()
    return body
