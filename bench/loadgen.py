"""A minimal HTTP/1.1 keep-alive client for the REST benchmarks.

The load generator shares the two cores with the server it measures, so its
own CPU is taken from the server: httpx spent ~1 ms per request here, more
than the server's HTTP handling, a client on anyio's buffered streams ~0.25
ms, an asyncio protocol ~0.15 ms. It writes a prepared request and parses
the response (status line, ``Content-Length`` or chunked body, JSON); it
knows nothing else of HTTP and is only for the benchmark.

Two forms: :class:`HttpConnection`, an asyncio protocol, is the client of the
latency target (as a light client such as curl sees the server; httpx is
measured beside it); :class:`BlockingHttpConnection`, a plain socket used
from a thread per connection, is the throughput load, where it costs ~0.1 ms
less per execution than the protocol and its event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

_HEAD_END = b"\r\n\r\n"
# A response: status, body, and whether the server closes the connection after it.
_Response = tuple[int, bytes, bool]


class HttpConnection(asyncio.Protocol):
    """A keep-alive connection to ``host:port``; one request at a time.

    When the server ends the connection (``Connection: close``, as Hypercorn
    does after ``keep_alive_max_requests``, or by closing it while idle), the
    next request opens a new one.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[_Response] | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        connection = cls(host, port)
        await connection._connect()
        return connection

    async def _connect(self) -> None:
        self._buffer.clear()
        await asyncio.get_running_loop().create_connection(lambda: self, self._host, self._port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            response = _take_response(self._buffer)
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if response is not None:
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionError("the server closed the connection"))

    async def request(
        self, method: str, target: str, body: bytes = b""
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return the status and the JSON body."""
        if self._transport is None or self._transport.is_closing():
            await self._connect()
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(_request_bytes(self._host, method, target, body))
        status, payload, close = await self._waiter
        if close:
            self._transport.close()
        return status, json.loads(payload) if payload else {}

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()


class BlockingHttpConnection:
    """A keep-alive connection to ``host:port`` on a blocking socket; one thread uses it.

    Reconnects as :class:`HttpConnection` does when the server ends the connection.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._buffer = bytearray()
        self._socket: socket.socket | None = self._connect()

    def _connect(self) -> socket.socket:
        self._buffer.clear()
        connection = socket.create_connection((self._host, self._port))
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
        """Send one request; return the status and the JSON body."""
        if self._socket is None:
            self._socket = self._connect()
        self._socket.sendall(_request_bytes(self._host, method, target, body))
        while (response := _take_response(self._buffer)) is None:
            chunk = self._socket.recv(65536)
            if not chunk:
                self.close()
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        status, payload, close = response
        if close:
            self.close()
        return status, json.loads(payload) if payload else {}

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _request_bytes(host: str, method: str, target: str, body: bytes) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _take_response(buffer: bytearray) -> _Response | None:
    """A whole response from the front of ``buffer`` (removed from it), or None yet:
    its status, its body, and whether the server is closing the connection."""
    end = buffer.find(_HEAD_END)
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    start = end + len(_HEAD_END)
    stop = start + (length or 0)
    if chunked:
        payload = _take_chunked(buffer, start)
    elif len(buffer) < stop:
        payload = None
    else:
        payload = bytes(buffer[start:stop])
        del buffer[:stop]
    return None if payload is None else (status, payload, close)


def _take_chunked(buffer: bytearray, start: int) -> bytes | None:
    data = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            if buffer.find(b"\r\n", at) != at:  # no trailers expected
                return None
            del buffer[: at + 2]
            return bytes(data)
        if len(buffer) < at + size + 2:
            return None
        data += buffer[at : at + size]
        at += size + 2
