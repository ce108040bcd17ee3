"""Brokered ``fetch``: the supervisor decides with the policy and performs the request.

For every hop (the first request and each redirect) :class:`FetchBroker`:

1. parses the URL: ``http`` and ``https`` only; URLs with credentials
   (``http://allowed@evil/``) are refused, so the host a policy sees is the
   host dialled; a host that ends in a number is read as an IPv4 address the
   way the WHATWG URL standard (and every browser) reads it, so ``2130706433``,
   ``0177.0.0.1``, ``0x7f.1`` and ``127.1`` all become ``127.0.0.1``;
2. adds the injected headers of the rules matching this hop's host and method
   (see :mod:`supervisor.brokers.headers`);
3. resolves the host once and picks the first address; an IPv4-mapped IPv6
   address becomes its IPv4 address and an unspecified address (``0.0.0.0``,
   ``::``), which reaches the local host, becomes ``127.0.0.1`` / ``::1``;
4. asks the policy, with the input ``{operation: "fetch", url, method,
   headers, url_parsed: {scheme, host, port, path, query}, resolved_ip}``:
   ``headers`` has lower-cased names and includes injected headers; ``port``
   is the URL's explicit port or ``null``; ``path`` is percent-encoded as sent
   and ``query`` has no ``?``; ``resolved_ip`` is the address of step 3, the
   one that will be dialled, so a host policy holds for the address actually
   reached and DNS cannot change between the decision and the connection;
5. connects to exactly that address: the request URL carries the IP, the
   ``Host`` header the original host, and for ``https`` TLS uses the original
   host name for SNI and certificate verification.

Redirects are never followed by the HTTP client. 301, 302, 303, 307 and 308
with a ``Location`` are followed here, up to ``max_redirects``, each hop
decided afresh. Injected headers are recomputed for every hop from the
headers the user's code set, so a rule's header never reaches a host the rule
does not match (HTTP clients commonly forward custom headers across hosts).
On a cross-origin hop the user's ``Authorization``, ``Cookie`` and
``Proxy-Authorization`` headers are dropped (the Fetch standard drops
``Authorization``; this broker has no cookie jar, so a ``Cookie`` the code set
is treated as a credential too). Methods follow the Fetch standard: 303
becomes ``GET`` (but ``HEAD`` stays), 301 and 302 turn ``POST`` into ``GET``;
a dropped body takes its ``Content-*`` headers with it.

Headers the HTTP client owns (``Host``, ``Content-Length``,
``Transfer-Encoding``, ``Connection``...) set by user code are ignored, as a
browser ignores forbidden request headers; names and values with CR, LF, NUL
or other control characters are refused. No cookie is ever stored between
fetches, and proxy settings from the environment are ignored. Bodies are
decoded (gzip, deflate) and capped at ``max_response_bytes`` while streaming;
``timeout_s`` bounds the whole fetch, redirects and token requests included.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Final

import anyio
import httpx

from supervisor.brokers.headers import (
    FORBIDDEN_REQUEST_HEADERS,
    HeaderRule,
    check_request_header,
)
from supervisor.brokers.models import BrokerError, FetchRequest, FetchResponse, denial_detail
from supervisor.brokers.oauth import HeaderInjector
from supervisor.decisions import Decide, PolicyDecision
from supervisor.errors import ConfigError

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "Decide", "FetchBroker", "PolicyDecision", "Resolver"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES: Final = 10 * 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# host (ASCII), port -> addresses in preference order
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_REQUEST_BODY_HEADERS: Final = frozenset(
    {"content-encoding", "content-language", "content-location", "content-type"}
)
_CROSS_ORIGIN_DROPPED: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_FORBIDDEN_METHODS: Final = frozenset({"CONNECT", "TRACE", "TRACK"})
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_URL_BAD_CHAR = re.compile(r"[\x00-\x20\x7f]")
_DOMAIN = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_ENCODED_DOT_SEGMENTS: Final = frozenset({"%2e", ".%2e", "%2e.", "%2e%2e"})
_IPV4_DIGITS: Final = {
    10: re.compile(r"[0-9]+"),
    8: re.compile(r"[0-7]+"),
    16: re.compile(r"[0-9a-f]+"),
}
_C0_AND_SPACE: Final = "".join(map(chr, range(0x21)))


@dataclass(frozen=True)
class _Target:
    """One hop's URL, parsed and normalised."""

    scheme: str
    host: str  # lower-case ASCII; an IP address in canonical form, IPv6 without brackets
    port: int | None  # explicit and not the scheme's default, else None
    path: str  # percent-encoded, as sent
    query: str  # without "?"
    url: httpx.URL  # normalised, without fragment
    literal_ip: IPAddress | None

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.scheme]

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.effective_port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class FetchBroker:
    """Performs the user's ``fetch`` calls: injects headers, decides, connects, follows.

    ``resolver`` and ``verify`` (an :class:`ssl.SSLContext` or ``True``) are
    for deployments and tests with their own name resolution or certificate
    authority. Close with :meth:`aclose` (or ``async with``).
    """

    def __init__(
        self,
        rules: Sequence[HeaderRule] = (),
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        timeout_s: float = 30.0,
        max_redirects: int = 10,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if max_response_bytes < 0 or not timeout_s > 0 or max_redirects < 0:
            raise ConfigError(
                "fetch: max_response_bytes and max_redirects must not be negative, "
                "timeout_s must be positive"
            )
        self._max_response_bytes = max_response_bytes
        self._timeout_s = timeout_s
        self._max_redirects = max_redirects
        self._resolve = resolver or _system_resolve
        context = verify if isinstance(verify, ssl.SSLContext) else None
        if context is None:
            context = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._injector = HeaderInjector(rules, token_timeout_s=timeout_s, verify=context)
        self._plain = self._client(context, keepalive=20)
        # Connections are pooled by the address dialled; a kept-alive TLS
        # connection verified for one host name must not carry a request for
        # another name at the same address, so TLS connections are not reused.
        self._tls = self._client(context, keepalive=0)

    def _client(self, context: ssl.SSLContext, *, keepalive: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=context,
            trust_env=False,
            follow_redirects=False,
            timeout=self._timeout_s,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=keepalive),
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={"User-Agent": "mcp-v8"},
        )

    async def aclose(self) -> None:
        """Close the connection pools and the token client."""
        with anyio.CancelScope(shield=True):
            await self._plain.aclose()
            await self._tls.aclose()
            await self._injector.aclose()

    async def __aenter__(self) -> FetchBroker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def handle(self, request: FetchRequest, decide: Decide) -> FetchResponse:
        """Perform ``request`` if ``decide`` allows every hop; raise :class:`BrokerError`."""
        method = _method(request.method)
        if request.body and method in ("GET", "HEAD"):
            raise BrokerError("EINVAL", f"fetch: a {method} request cannot have a body")
        headers = _user_headers(request.headers)
        target = _parse_url(request.url)
        # A CancelScope, not anyio.fail_after: BrokerError is a frozen dataclass,
        # and @contextmanager-based managers fail re-raising it (they assign
        # its __traceback__).
        with anyio.CancelScope(deadline=anyio.current_time() + self._timeout_s):
            return await self._follow(target, method, headers, request.body, decide)
        raise BrokerError("ETIMEDOUT", f"fetch timed out after {self._timeout_s:g} s (timeout_s)")

    async def _follow(
        self,
        target: _Target,
        method: str,
        user_headers: list[tuple[str, str]],
        body: bytes,
        decide: Decide,
    ) -> FetchResponse:
        redirects = 0
        while True:
            headers = await self._injector.inject(target.host, method, user_headers)
            address = await self._address(target)
            decision = await decide(_policy_input(target, method, headers, address))
            if not decision.allowed:
                logger.debug("fetch %s %s://%s denied", method, target.scheme, target.host)
                reason = denial_detail(decision.reason)
                raise BrokerError(
                    "EPOLICY", f"fetch {method} {target.url} denied by policy{reason}"
                )
            response = await self._send(target, address, method, headers, body)
            try:
                location = response.headers.get("location")
                if response.status_code not in _REDIRECT_STATUSES or location is None:
                    content = await self._read_body(response, target)
                    return FetchResponse(
                        status=response.status_code,
                        status_text=response.reason_phrase,
                        url=str(target.url),
                        redirected=redirects > 0,
                        headers=tuple(
                            (name.lower(), value) for name, value in response.headers.multi_items()
                        ),
                        body=content,
                    )
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
            if redirects >= self._max_redirects:
                raise BrokerError(
                    "EREDIRECT",
                    f"fetch was redirected more than {self._max_redirects} times (max_redirects)",
                )
            redirects += 1
            next_target = _redirect_target(target, location)
            status = response.status_code
            if (status in (301, 302) and method == "POST") or (status == 303 and method != "HEAD"):
                method, body = "GET", b""
                user_headers = [
                    h for h in user_headers if h[0].lower() not in _REQUEST_BODY_HEADERS
                ]
            if next_target.origin != target.origin:
                user_headers = [
                    h for h in user_headers if h[0].lower() not in _CROSS_ORIGIN_DROPPED
                ]
            target = next_target

    async def _address(self, target: _Target) -> IPAddress:
        if target.literal_ip is not None:
            return _reached(target.literal_ip)
        try:
            addresses = await self._resolve(target.host, target.effective_port)
        except OSError:
            addresses = []
        for text in addresses:
            try:
                return _reached(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                continue
        raise BrokerError("ENOTFOUND", f"fetch could not resolve host {target.host!r}")

    async def _send(
        self,
        target: _Target,
        address: IPAddress,
        method: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> httpx.Response:
        client = self._tls if target.scheme == "https" else self._plain
        extensions: dict[str, Any] = {}
        if target.scheme == "https" and target.literal_ip is None:
            extensions["sni_hostname"] = target.host
        request = client.build_request(
            method,
            target.url.copy_with(host=str(address)),
            headers=[*headers, ("Host", target.host_header)],
            content=body if body or method not in ("GET", "HEAD") else None,
            extensions=extensions,
        )
        where = f"{target.scheme}://{target.host_header} ({address})"
        try:
            return await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise BrokerError("ETIMEDOUT", f"fetch to {where} timed out") from None
        except httpx.ConnectError as exc:
            if _caused_by_tls(exc):
                raise BrokerError("ETLS", f"fetch to {where} failed TLS: {exc}") from None
            raise BrokerError(
                "ECONNREFUSED", f"fetch could not connect to {where}: {exc}"
            ) from None
        except httpx.LocalProtocolError:
            # Its message may quote a header, injected values included.
            raise BrokerError("EINVAL", f"fetch could not send the request to {where}") from None
        except httpx.HTTPError as exc:
            raise BrokerError("ECONNRESET", f"fetch to {where} failed: {_describe(exc)}") from None

    async def _read_body(self, response: httpx.Response, target: _Target) -> bytes:
        limit = self._max_response_bytes
        too_large = BrokerError(
            "EMSGSIZE",
            f"fetch response from {target.scheme}://{target.host_header} is larger than "
            f"{limit} bytes (max_response_bytes); aborted",
        )
        declared = response.headers.get("content-length", "")
        if (
            declared.isdigit()
            and int(declared) > limit
            and "content-encoding" not in response.headers
        ):
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise BrokerError("ETIMEDOUT", "fetch timed out reading the response") from None
        except httpx.DecodingError:
            raise BrokerError("EIO", "fetch could not decode the response body") from None
        except httpx.HTTPError as exc:
            raise BrokerError(
                "ECONNRESET", f"fetch failed reading the response: {_describe(exc)}"
            ) from None
        return b"".join(chunks)


def _policy_input(
    target: _Target, method: str, headers: Sequence[tuple[str, str]], address: IPAddress
) -> dict[str, Any]:
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return {
        "operation": "fetch",
        "url": str(target.url),
        "method": method,
        "headers": merged,
        "url_parsed": {
            "scheme": target.scheme,
            "host": target.host,
            "port": target.port,
            "path": target.path,
            "query": target.query,
        },
        "resolved_ip": str(address),
    }


def _reached(address: IPAddress) -> IPAddress:
    """The address a connection to ``address`` actually reaches, as the policy should see it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        # Connecting to 0.0.0.0 or :: reaches the local host.
        if isinstance(address, ipaddress.IPv4Address):
            return ipaddress.IPv4Address("127.0.0.1")
        return ipaddress.IPv6Address("::1")
    return address


def _method(raw: str) -> str:
    method = raw.upper()
    if not _METHOD.fullmatch(method):
        raise BrokerError("EINVAL", f"fetch: {raw!r} is not a valid HTTP method")
    if method in _FORBIDDEN_METHODS:
        raise BrokerError("EINVAL", f"fetch: the {method} method is not allowed")
    return method


def _user_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    kept = []
    for name, value in headers:
        check_request_header(name, value)
        if name.lower() in FORBIDDEN_REQUEST_HEADERS:
            logger.debug("fetch ignores the request header %s set by user code", name)
            continue
        kept.append((name, value))
    return kept


def _invalid(message: str) -> BrokerError:
    return BrokerError("EINVAL", message)


def _redirect_target(current: _Target, location: str) -> _Target:
    try:
        joined = str(current.url.join(location))
    except (httpx.InvalidURL, ValueError):
        raise _invalid("fetch was redirected to an invalid URL") from None
    try:
        return _parse_url(joined)
    except BrokerError as exc:
        raise _invalid(f"fetch was redirected to a refused URL: {exc.message}") from None


def _parse_url(raw: str) -> _Target:
    text = raw.strip(_C0_AND_SPACE)
    if _URL_BAD_CHAR.search(text):
        raise _invalid("fetch URL contains spaces or control characters")
    match = _SCHEME.match(text)
    if match is None:
        raise _invalid("fetch needs an absolute http or https URL")
    scheme = match[1].lower()
    if scheme not in _DEFAULT_PORTS:
        raise _invalid(f"fetch supports only http and https URLs, not {scheme}:")
    rest = text[match.end() :]
    if not rest.startswith("//"):
        raise _invalid("fetch needs an absolute http or https URL (scheme://host/...)")
    authority_match = re.match(r"([^/?#]*)(.*)", rest[2:], re.DOTALL)
    assert authority_match is not None
    authority, tail = authority_match[1], authority_match[2]
    if "\\" in authority or "\\" in re.split(r"[?#]", tail, maxsplit=1)[0]:
        # Parsers disagree on backslashes (WHATWG reads "\" as "/"): refuse rather than guess.
        raise _invalid("fetch URL contains a backslash before its query")
    if "@" in authority:
        raise _invalid(
            "fetch refuses URLs with credentials (user@host): the host a policy sees "
            "must be the host dialled; send an Authorization header instead"
        )
    host_text, port = _split_host_port(authority)
    host, literal_ip = _normalise_host(host_text)
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    url_host = f"[{host}]" if ":" in host else host
    try:
        url = httpx.URL(f"{scheme}://{url_host}{'' if port is None else f':{port}'}{tail}")
        url = url.copy_with(fragment=None)
    except (httpx.InvalidURL, ValueError) as exc:
        raise _invalid(f"fetch URL is invalid: {exc}") from None
    ascii_host = url.raw_host.decode("ascii").lower()
    if literal_ip is None and not _DOMAIN.fullmatch(ascii_host):
        raise _invalid(f"fetch URL host {host_text!r} is not a valid host name")
    path, _, query = url.raw_path.decode("ascii").partition("?")
    if any(segment.lower() in _ENCODED_DOT_SEGMENTS for segment in path.split("/")):
        raise _invalid("fetch URL path contains percent-encoded dot segments (%2e)")
    return _Target(scheme, ascii_host, port, path or "/", query, url, literal_ip)


def _split_host_port(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _invalid("fetch URL has an unterminated IPv6 address")
        host, after = authority[: end + 1], authority[end + 1 :]
        if after and not after.startswith(":"):
            raise _invalid("fetch URL has text after its IPv6 address")
        port_text = after[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= 65535:
        raise _invalid("fetch URL has an invalid port")
    return host, int(port_text)


def _normalise_host(text: str) -> tuple[str, IPAddress | None]:
    if not text:
        raise _invalid("fetch URL has no host")
    if "%" in text:
        raise _invalid("fetch URL hosts may not be percent-encoded or carry an IPv6 zone")
    if text.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise _invalid("fetch URL has an invalid IPv6 address") from None
        return v6.compressed, v6
    host = text.lower()
    v4 = _whatwg_ipv4(host)
    return (str(v4), v4) if v4 is not None else (host, None)


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG URL standard's reading of a host ending in a number; None for a domain."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if not (_IPV4_DIGITS[10].fullmatch(last) or re.fullmatch(r"0x[0-9a-f]*", last)):
        return None
    if len(parts) > 4:
        raise _invalid(f"fetch URL host {host!r} is not a valid IPv4 address")
    numbers = [_ipv4_number(part, host) for part in parts]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise _invalid(f"fetch URL host {host!r} is not a valid IPv4 address")
    value = numbers[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(numbers[:-1]))
    return ipaddress.IPv4Address(value)


def _ipv4_number(part: str, host: str) -> int:
    radix = 10
    if len(part) >= 2 and part.startswith("0x"):
        radix, part = 16, part[2:]
    elif len(part) >= 2 and part.startswith("0"):
        radix, part = 8, part[1:]
    if part == "":
        if radix == 10:  # an empty label, as in "127..1"
            raise _invalid(f"fetch URL host {host!r} is not a valid IPv4 address")
        return 0
    if not _IPV4_DIGITS[radix].fullmatch(part):
        raise _invalid(f"fetch URL host {host!r} is not a valid IPv4 address")
    return int(part, radix)


def _caused_by_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(16):  # a bound, in case a chain loops
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
