"""A minimal HTTP/1.1 keep-alive client for the REST throughput load.

The load generator shares the two cores with the server it measures, so its
own CPU is taken from the server: httpx spent ~1 ms per request here, more
than the server's HTTP handling. This client writes prepared requests on
persistent connections and reads ``Content-Length`` (or chunked) bodies; it
knows nothing else of HTTP and is only for the benchmark. Latency is still
measured with httpx, a client users actually run.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream


class HttpConnection:
    """One persistent connection to ``host:port``; one request at a time."""

    def __init__(self, stream: SocketStream, host: str) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._host = host

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        return cls(await anyio.connect_tcp(host, port), host)

    async def request(
        self, method: str, target: str, body: bytes = b""
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return the status and the JSON body."""
        head = f"{method} {target} HTTP/1.1\r\nHost: {self._host}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        await self._stream.send(head.encode() + b"\r\n" + body)
        status_line = await self._reader.receive_until(b"\r\n", 8192)
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        chunked = False
        while line := await self._reader.receive_until(b"\r\n", 65536):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            data = bytearray()
            while size := int((await self._reader.receive_until(b"\r\n", 64)).split(b";")[0], 16):
                data += await self._reader.receive_exactly(size)
                await self._reader.receive_exactly(2)
            await self._reader.receive_until(b"\r\n", 65536)  # no trailers expected
            payload = bytes(data)
        else:
            payload = await self._reader.receive_exactly(length or 0)
        return status, json.loads(payload) if payload else {}

    async def aclose(self) -> None:
        await self._stream.aclose()
