"""A stand-in for OPA's REST data API on loopback, and Rego files written for a test."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# How long the "slow" behaviour holds its answer at most; tests end it sooner (see release).
SLOW_HOLD_S = 10.0


@dataclass
class FakeOpa:
    """An HTTP server answering ``POST <behaviour>/v1/data/...`` the way its prefix says.

    ``/allow`` answers ``{"result": true}``, ``/deny`` ``{"result": false}``, ``/undefined``
    ``{}`` (OPA's undefined), ``/get-only`` allows when ``input.method`` is GET, ``/error``
    answers HTTP 500, ``/not-json`` a 200 that is not JSON, ``/slow`` nothing until released.
    """

    base_url: str
    requests: list[tuple[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, behaviour: str) -> str:
        return f"{self.base_url}/{behaviour}"


def _handler(opa: FakeOpa) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            opa.requests.append((self.path, body))
            behaviour = self.path.split("/")[1]
            policy_input = body.get("input", {}) if isinstance(body, dict) else {}
            if behaviour == "error":
                self._answer(500, b'{"code": "internal_error"}')
            elif behaviour == "not-json":
                self._answer(200, b"<html>not json</html>")
            elif behaviour == "slow":
                opa.release.wait(SLOW_HOLD_S)
                self._answer(200, b'{"result": true}')
            else:
                result: dict[str, Any] = {
                    "allow": {"result": True},
                    "deny": {"result": False},
                    "undefined": {},
                    "get-only": {"result": policy_input.get("method") == "GET"},
                }.get(behaviour, {})
                self._answer(200, json.dumps(result).encode())

        def _answer(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake_opa() -> Iterator[FakeOpa]:
    """A fresh stand-in OPA on 127.0.0.1, stopped after the test."""
    opa = FakeOpa(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(opa))
    server.daemon_threads = True
    opa.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield opa
    finally:
        opa.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


WriteRego = Callable[..., Path]


@pytest.fixture
def write_rego(tmp_path: Path) -> WriteRego:
    """``write_rego("name.rego", source)``: the file, written under the test's directory."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
        return path

    return write
