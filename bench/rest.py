"""3, 4. The real server as a subprocess: REST throughput and latency at low load."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

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
    """POST /api/exec + GET ?wait=30 with ``rest_concurrency`` executions in flight."""
    n = plan.rest_concurrency
    limits = httpx.Limits(max_connections=2 * n, max_keepalive_connections=2 * n)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits) as client:

        async def one() -> bool:
            posted = await client.post("/api/exec", json={"code": CODE})
            if posted.status_code != 200:
                return False
            execution_id = posted.json()["execution_id"]
            got = await client.get(f"/api/executions/{execution_id}", params={"wait": "30"})
            body = got.json()
            return bool(
                got.status_code == 200
                and body["status"] == "completed"
                and body["result"] == EXPECTED
            )

        return await windowed(
            n, one, plan.warmup_s, plan.rest_s, lambda: cpu_sample(server.process)
        )


def measure_rest_latency(server: Server, plan: Plan) -> Latency:
    """Sequential POST + GET ?wait=10 of ``1+1``, pausing so the pool refills."""
    result = Latency([], [], [], 0)
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        for i in range(plan.latency_warmup + plan.latency_iterations):
            time.sleep(plan.latency_pause_s)
            t0 = time.perf_counter()
            posted = client.post("/api/exec", json={"code": CODE})
            t1 = time.perf_counter()
            ok = posted.status_code == 200
            if ok:
                execution_id = posted.json()["execution_id"]
                got = client.get(f"/api/executions/{execution_id}", params={"wait": "10"})
                body = got.json()
                ok = got.status_code == 200 and body.get("result") == EXPECTED
            t2 = time.perf_counter()
            if i < plan.latency_warmup:
                continue
            if not ok:
                result.failures += 1
                continue
            result.total_ms.append(1000 * (t2 - t0))
            result.submit_ms.append(1000 * (t1 - t0))
            result.wait_ms.append(1000 * (t2 - t1))
    return result
