"""Loopback HTTP(S) servers, policies and resolvers shared by the fetch tests (no tests here).

The servers are h11 over anyio listeners in the test's own event loop: they
record every request and every accepted connection, so a test can show that a
refused fetch reached nothing. Only 127.0.0.0/8 is ever listened on or dialled.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from supervisor.brokers.fetch import Resolver
from supervisor.policy.base import Decision

WAIT_S = 10.0


class bounded:
    """Fail the test if its block runs longer than ``WAIT_S``.

    Not ``anyio.fail_after``: that is a generator-based context manager, and
    those cannot re-raise the frozen-dataclass ``BrokerError`` (they assign its
    ``__traceback__``).
    """

    def __init__(self, seconds: float = WAIT_S) -> None:
        self.seconds = seconds
        self.scope: anyio.CancelScope | None = None

    def __enter__(self) -> anyio.CancelScope:
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + self.seconds)
        return self.scope.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        assert self.scope is not None
        self.scope.__exit__(*exc_info)
        if self.scope.cancelled_caught:
            raise AssertionError(f"the block did not finish within {self.seconds} s")


@dataclass
class Received:
    """One request as the server read it; header names lower-cased."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        return ", ".join(values) if values else None


@dataclass
class Reply:
    """What the server answers; ``stream_bytes`` sends that many bytes chunked."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reason: str = ""
    stream_bytes: int | None = None
    hang: bool = False  # never answer


Handler = Callable[[Received], Awaitable[Reply]]


async def ok(request: Received) -> Reply:
    """Answer 200 with the request body echoed back."""
    return Reply(200, [("content-type", "application/octet-stream")], request.body)


class LoopbackServer:
    """A running server: its address, what it received, how many connections it accepted."""

    def __init__(self, handler: Handler, host: str, port: int, scheme: str) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.scheme = scheme
        self.received: list[Received] = []
        self.connections = 0

    def url(self, path: str = "/", *, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    async def _serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while True:
                    request = await _read_request(connection, stream)
                    if request is None:
                        return
                    self.received.append(request)
                    reply = await self.handler(request)
                    await _send_reply(connection, stream, reply)
                    if h11.MUST_CLOSE in (connection.our_state, connection.their_state):
                        return
                    connection.start_next_cycle()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            return
        except (h11.ProtocolError, ssl.SSLError, OSError):
            return


async def _read_request(
    connection: h11.Connection, stream: anyio.abc.ByteStream
) -> Received | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            connection.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return Received(
                head.method.decode(),
                head.target.decode(),
                [(name.decode().lower(), value.decode()) for name, value in head.headers],
                bytes(body),
            )
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _send_reply(
    connection: h11.Connection, stream: anyio.abc.ByteStream, reply: Reply
) -> None:
    if reply.hang:
        await anyio.sleep_forever()
    headers = list(reply.headers)
    if reply.stream_bytes is None:
        headers.append(("content-length", str(len(reply.body))))
    else:
        headers.append(("transfer-encoding", "chunked"))
    response = h11.Response(status_code=reply.status, headers=headers, reason=reply.reason.encode())
    await stream.send(connection.send(response))
    if reply.stream_bytes is not None:
        remaining = reply.stream_bytes
        while remaining > 0:
            size = min(remaining, 65536)
            await stream.send(connection.send(h11.Data(data=b"x" * size)))
            remaining -= size
    elif reply.body:
        await stream.send(connection.send(h11.Data(data=reply.body)))
    await stream.send(connection.send(h11.EndOfMessage()))


class serve:
    """``async with serve(handler) as server``: serve on ``host`` (loopback), a free port.

    Class-based so that an exception of the block passes through unchanged:
    it never enters the server's task group (which would wrap it in an
    exception group), and no generator re-raises it (which fails for the
    frozen-dataclass ``BrokerError``).
    """

    def __init__(
        self, handler: Handler = ok, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        assert ipaddress.ip_address(host).is_loopback
        self.handler = handler
        self.host = host
        self.tls = tls

    async def __aenter__(self) -> LoopbackServer:
        tcp = await anyio.create_tcp_listener(local_host=self.host, local_port=0)
        port = tcp.extra(anyio.abc.SocketAttribute.local_port)
        self.listener: anyio.abc.Listener[Any] = tcp
        if self.tls is not None:
            self.listener = TLSListener(tcp, self.tls, standard_compatible=False)
        server = LoopbackServer(self.handler, self.host, port, "https" if self.tls else "http")
        self.group = anyio.create_task_group()
        await self.group.__aenter__()
        self.group.start_soon(self.listener.serve, server._serve_connection)
        return server

    async def __aexit__(self, *exc_info: object) -> None:
        self.group.cancel_scope.cancel()
        try:
            await self.group.__aexit__(None, None, None)
        finally:
            await self.listener.aclose()


class Policy:
    """A recording policy: allows what ``allow`` says, keeps every input it was asked."""

    def __init__(self, allow: Callable[[dict[str, Any]], bool] = lambda _: True) -> None:
        self.allow = allow
        self.inputs: list[dict[str, Any]] = []

    async def __call__(self, policy_input: dict[str, Any]) -> Decision:
        self.inputs.append(policy_input)
        if self.allow(policy_input):
            return Decision(allowed=True)
        return Decision(allowed=False, reason="the test policy says no")


def deny_loopback() -> Policy:
    """The policy a real deployment would use against SSRF: no loopback by resolved address."""
    return Policy(lambda i: not ipaddress.ip_address(i["resolved_ip"]).is_loopback)


def resolver(names: Mapping[str, str | list[str]]) -> Resolver:
    """A resolver answering only ``names`` (host -> address or addresses)."""

    async def resolve(host: str, port: int) -> list[str]:
        found = names.get(host)
        if found is None:
            raise socket.gaierror(socket.EAI_NONAME, "unknown to the test resolver")
        return [found] if isinstance(found, str) else list(found)

    return resolve


@dataclass
class Certificates:
    """A test CA and a server context for ``names``, signed by it."""

    client: ssl.SSLContext
    server: ssl.SSLContext
    sni_seen: list[str | None]


def make_certificates(directory: Path, names: list[str]) -> Certificates:
    """Issue a CA and a leaf certificate for ``names`` (DNS SANs) into ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-v8 test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / "leaf.pem"
    key_path = directory / "leaf.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    sni_seen: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni_seen.append(name)

    server.sni_callback = record_sni
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return Certificates(client, server, sni_seen)
