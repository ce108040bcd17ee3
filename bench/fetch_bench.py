"""Overhead of a brokered ``fetch`` over httpx called directly, against one loopback server.

Run from the repository root::

    .venv/bin/python -m bench.fetch_bench

The server is a minimal keep-alive HTTP/1.1 responder on 127.0.0.1 in its own
thread and event loop, so it costs the same for every client. In one event
loop, in the same run, three clients fetch the same small JSON document:

- ``direct``: ``httpx.AsyncClient.get`` (one pooled client, body read);
- ``brokered``: :meth:`FetchBroker.handle` with an allow-all ``decide``: URL
  parsing, header checks, the policy input, the pinned-address request and
  the capped body read;
- ``brokered_injected``: the same with one matching static header rule.

Calls are interleaved (the order rotates every iteration) so drift in the
machine's load hits all three alike. Target: ``brokered`` p50 at most 2 ms
above ``direct`` p50. The policy decision itself is measured separately by
``bench.policy_bench``.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx

from supervisor.brokers.fetch import FetchBroker
from supervisor.brokers.headers import parse_header_rule
from supervisor.brokers.models import FetchRequest
from supervisor.policy.base import Decision

OVERHEAD_TARGET_MS = 2.0
_BODY = b'{"items": [1, 2, 3], "next": null, "note": "a small JSON document"}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + b"Content-Length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)


class _Responder(asyncio.Protocol):
    """Answers every request head (GET, no body) with the same response; keeps the connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.transport.write(_RESPONSE)


@contextmanager
def _loopback_server() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ports: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(_Responder, "127.0.0.1", 0))
        ports.append(server.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, name="fetch-bench-server", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the loopback server did not start")
    try:
        yield ports[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


async def _allow(policy_input: dict[str, Any]) -> Decision:
    return Decision(allowed=True)


def _percentile(sorted_ms: list[float], pct: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(pct / 100 * (len(sorted_ms) - 1))))
    return sorted_ms[index]


async def _measure(port: int, requests: int, warmup: int) -> dict[str, list[float]]:
    url = f"http://127.0.0.1:{port}/data"
    rule = parse_header_rule("host=127.0.0.1,header=X-Api-Key,value=bench-key")
    async with (
        httpx.AsyncClient(trust_env=False) as client,
        FetchBroker() as broker,
        FetchBroker((rule,)) as injecting,
    ):

        async def direct() -> None:
            response = await client.get(url)
            assert response.content == _BODY

        async def brokered() -> None:
            response = await broker.handle(FetchRequest(url=url), _allow)
            assert response.body == _BODY

        async def brokered_injected() -> None:
            response = await injecting.handle(FetchRequest(url=url), _allow)
            assert response.body == _BODY

        calls: dict[str, Callable[[], Awaitable[None]]] = {
            "direct": direct,
            "brokered": brokered,
            "brokered_injected": brokered_injected,
        }
        names = list(calls)
        for _ in range(warmup):
            for name in names:
                await calls[name]()
        timings: dict[str, list[float]] = {name: [] for name in names}
        for i in range(requests):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter_ns()
                await calls[name]()
                timings[name].append((time.perf_counter_ns() - started) / 1e6)
        return timings


def fetch_overhead(requests: int = 2000, warmup: int = 200) -> dict[str, Any]:
    """p50 of a brokered fetch vs httpx directly on loopback; prints one line, returns figures."""
    with _loopback_server() as port:
        timings = anyio.run(_measure, port, requests, warmup)
    figures: dict[str, Any] = {"requests": requests}
    for name, values in timings.items():
        ordered = sorted(values)
        figures[f"{name}_p50_ms"] = round(_percentile(ordered, 50), 3)
        figures[f"{name}_p90_ms"] = round(_percentile(ordered, 90), 3)
        figures[f"{name}_mean_ms"] = round(statistics.fmean(ordered), 3)
    overhead = figures["brokered_p50_ms"] - figures["direct_p50_ms"]
    figures["overhead_p50_ms"] = round(overhead, 3)
    figures["overhead_injected_p50_ms"] = round(
        figures["brokered_injected_p50_ms"] - figures["direct_p50_ms"], 3
    )
    figures["overhead_target_ms"] = OVERHEAD_TARGET_MS
    figures["pass"] = overhead <= OVERHEAD_TARGET_MS
    print(
        f"brokered fetch (loopback, {requests} requests each, allow-all decide): "
        f"p50 {figures['brokered_p50_ms']:.3f} ms vs httpx directly "
        f"{figures['direct_p50_ms']:.3f} ms: +{overhead:.3f} ms "
        f"(+{figures['overhead_injected_p50_ms']:.3f} ms with a header rule; "
        f"target <= {OVERHEAD_TARGET_MS:.0f} ms: {'PASS' if figures['pass'] else 'MISS'})"
    )
    return figures


if __name__ == "__main__":
    fetch_overhead()
