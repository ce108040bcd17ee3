"""3, 4. The real server as a subprocess: REST throughput and latency at low load."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx
import psutil

from bench.loadgen import BlockingHttpConnection, HttpConnection
from bench.plan import CODE, EXPECTED, Plan
from bench.procs import free_port, track, untrack
from bench.stats import Latency, Throughput, cpu_sample, windowed


def mcp_v8_command() -> str:
    local = Path(sys.executable).parent / "mcp-v8"
    return str(local) if local.exists() else "mcp-v8"


@dataclass
class Server:
    base_url: str
    process: psutil.Process
    log: Path


@contextlib.contextmanager
def rest_server(deno: str, tmp: Path, timeout_s: float = 30.0) -> Iterator[Server]:
    """The real server as a subprocess, until it answers ``GET /api/executions``."""
    port = free_port()
    log = tmp / "server.log"
    argv = [
        mcp_v8_command(),
        "--stateless",
        "--http-port",
        str(port),
        "--data-dir",
        str(tmp / "rest-data"),
        "--deno-path",
        deno,
        "--log-level",
        "WARNING",
    ]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C is ours to handle; we stop it with SIGTERM
        )
    track(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=base, timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with status {proc.returncode}:\n{_tail(log)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/api/executions", params={"limit": 1}).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the server did not answer in {timeout_s:g} s:\n{_tail(log)}"
                    )
                time.sleep(0.05)
        yield Server(base_url=base, process=psutil.Process(proc.pid), log=log)
    finally:
        stop_server(proc)
        untrack(proc)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful: it stops its own children), then SIGKILL it and what it left."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.kill()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def measure_rest_throughput(server: Server, plan: Plan) -> Throughput:
    """POST /api/exec + GET ?wait=30 with ``rest_concurrency`` executions in flight.

    Each in-flight execution has its own keep-alive connection of the minimal
    blocking client in :mod:`bench.loadgen`, in a thread of its own (httpx, or
    even an asyncio client, would take more CPU from the server).
    """
    n = plan.rest_concurrency
    url = urlsplit(server.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    connections = [BlockingHttpConnection(host, port) for _ in range(n)]
    idle = list(connections)
    body = json.dumps({"code": CODE}).encode()

    def one() -> bool:
        connection = idle.pop()
        try:
            status, posted = connection.request("POST", "/api/exec", body)
            if status != 200:
                return False
            target = f"/api/executions/{posted['execution_id']}?wait=30"
            status, got = connection.request("GET", target)
            return bool(
                status == 200 and got["status"] == "completed" and got["result"] == EXPECTED
            )
        finally:
            idle.append(connection)

    try:
        return await windowed(
            n, one, plan.warmup_s, plan.rest_s, lambda: cpu_sample(server.process)
        )
    finally:
        for connection in connections:
            connection.close()


async def measure_rest_latency(server: Server, plan: Plan) -> tuple[Latency, Latency]:
    """Sequential POST + GET ?wait=10 of ``1+1``, pausing so the pool refills.

    Measured twice, alternating iteration by iteration so both see the same
    machine: with the minimal keep-alive client of :mod:`bench.loadgen` (the
    server's latency, as a light client such as curl sees it; the target) and
    with httpx, whose own CPU adds ~0.7 ms per request here (for information).
    """
    url = urlsplit(server.base_url)
    minimal = await HttpConnection.open(url.hostname or "127.0.0.1", url.port or 80)
    body = json.dumps({"code": CODE}).encode()

    async def by_minimal() -> tuple[float, float, bool]:
        t0 = time.perf_counter()
        status, posted = await minimal.request("POST", "/api/exec", body)
        t1 = time.perf_counter()
        ok = status == 200
        if ok:
            target = f"/api/executions/{posted['execution_id']}?wait=10"
            status, got = await minimal.request("GET", target)
            ok = status == 200 and got.get("result") == EXPECTED
        return t0, t1, ok

    async def by_httpx() -> tuple[float, float, bool]:
        t0 = time.perf_counter()
        posted = await client.post("/api/exec", json={"code": CODE})
        t1 = time.perf_counter()
        ok = posted.status_code == 200
        if ok:
            execution_id = posted.json()["execution_id"]
            got = await client.get(f"/api/executions/{execution_id}", params={"wait": "10"})
            ok = got.status_code == 200 and got.json().get("result") == EXPECTED
        return t0, t1, ok

    results = (Latency([], [], [], 0), Latency([], [], [], 0))
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
            for i in range(plan.latency_warmup + plan.latency_iterations):
                for result, measure in zip(results, (by_minimal, by_httpx), strict=True):
                    await anyio.sleep(plan.latency_pause_s)
                    t0, t1, ok = await measure()
                    t2 = time.perf_counter()
                    if i < plan.latency_warmup:
                        continue
                    if not ok:
                        result.failures += 1
                        continue
                    result.total_ms.append(1000 * (t2 - t0))
                    result.submit_ms.append(1000 * (t1 - t0))
                    result.wait_ms.append(1000 * (t2 - t1))
    finally:
        await minimal.aclose()
    return results
