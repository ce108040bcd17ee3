"""Adversarial fetches: SSRF tricks, redirects, header smuggling, oversized and slow answers.

The policy under attack is the one a deployment would write against SSRF:
deny by ``resolved_ip`` whatever is loopback. Every refused request must
leave the target server without even a connection.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import anyio
import pytest

from supervisor.brokers.fetch import FetchBroker
from supervisor.brokers.headers import HeaderRule, parse_header_rule
from supervisor.brokers.models import BrokerError, FetchRequest, FetchResponse
from tests._requirements import guards
from tests.brokers.test_fetch_support import (
    Policy,
    Received,
    Reply,
    bounded,
    deny_loopback,
    resolver,
    serve,
)

pytestmark = pytest.mark.anyio

LOOPBACK_FORMS = [
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hexadecimal
    "0x7f000001",
    "127.1",  # short form
    "017700000001",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "0.0.0.0",  # reaches the local host
    "127.0.0.1.",  # trailing dot
]


async def fetch(
    url: str,
    policy: Policy,
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    rules: tuple[HeaderRule, ...] = (),
    **options: Any,
) -> FetchResponse:
    async with FetchBroker(rules, **options) as broker:
        with bounded():
            return await broker.handle(
                FetchRequest(url=url, method=method, headers=headers, body=body), policy
            )


async def refused(url: str, policy: Policy, **kwargs: Any) -> BrokerError:
    with pytest.raises(BrokerError) as caught:
        await fetch(url, policy, **kwargs)
    return caught.value


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
@guards("fetch:no-ssrf")
async def test_numeric_forms_of_loopback_are_denied_by_a_resolved_ip_policy(host: str) -> None:
    async with serve() as server:
        policy = deny_loopback()
        error = await refused(f"http://{host}:{server.port}/", policy)
    assert error.code == "EPOLICY"
    assert "denied by policy" in error.message
    assert policy.inputs[0]["resolved_ip"] == "127.0.0.1"
    assert server.connections == 0


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
async def test_numeric_forms_of_loopback_reach_the_address_the_policy_saw(host: str) -> None:
    policy = Policy()
    async with serve() as server:
        response = await fetch(f"http://{host}:{server.port}/", policy)
    assert response.status == 200
    assert len(server.received) == 1
    assert policy.inputs[0]["resolved_ip"] == "127.0.0.1"


async def test_numeric_hosts_are_normalised_in_the_policy_input_as_a_browser_would() -> None:
    policy = Policy(lambda _: False)
    await refused("http://2130706433/x", policy)
    await refused("http://0177.0.0.1/x", policy)
    assert [i["url_parsed"]["host"] for i in policy.inputs] == ["127.0.0.1", "127.0.0.1"]
    assert policy.inputs[0]["url"] == "http://127.0.0.1/x"


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST"])
@guards("fetch:no-ssrf")
async def test_localhost_is_denied_by_its_resolved_address(host: str) -> None:
    async with serve() as server:
        policy = deny_loopback()
        error = await refused(f"http://{host}:{server.port}/", policy)
    assert error.code == "EPOLICY"
    assert ipaddress.ip_address(policy.inputs[0]["resolved_ip"]).is_loopback
    assert server.connections == 0


@guards("fetch:no-ssrf")
async def test_a_name_resolving_to_an_ipv4_mapped_address_is_checked_as_ipv4() -> None:
    policy = deny_loopback()
    async with serve() as server:
        await refused(
            f"http://sneaky.test:{server.port}/",
            policy,
            resolver=resolver({"sneaky.test": "::ffff:127.0.0.1"}),
        )
    assert policy.inputs[0]["resolved_ip"] == "127.0.0.1"
    assert server.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://allowed.test@127.0.0.1:{port}/",
        "http://allowed.test:pw@127.0.0.1:{port}/",
        "http://@127.0.0.1:{port}/",
        "http://allowed.test\\@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}\\@allowed.test/",
    ],
)
@guards("fetch:no-ssrf")
async def test_urls_with_userinfo_or_backslashes_are_refused_before_any_decision(url: str) -> None:
    policy = Policy(lambda i: i["url_parsed"]["host"] == "allowed.test")
    async with serve() as server:
        error = await refused(url.format(port=server.port), policy)
    assert error.code == "EINVAL"
    assert policy.inputs == []
    assert server.connections == 0


async def test_a_host_allowlist_sees_the_real_host_not_the_userinfo() -> None:
    policy = Policy(lambda i: i["url_parsed"]["host"] == "allowed.test")
    error = await refused("http://allowed.test@evil.test/", policy)
    assert "credentials" in error.message


@guards("fetch:no-ssrf")
async def test_the_checked_address_is_the_one_dialled_even_if_dns_changes() -> None:
    answers = iter(["127.0.0.3", "127.0.0.1"])  # a rebinding resolver: safe first, then loopback
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return [next(answers)]

    policy = Policy(lambda i: i["resolved_ip"] == "127.0.0.3")
    async with serve(host="127.0.0.3") as safe, serve(host="127.0.0.1") as internal:
        response = await fetch(f"http://rebind.test:{safe.port}/", policy, resolver=rebinding)
    assert response.status == 200
    assert calls == ["rebind.test"]
    assert len(safe.received) == 1
    assert internal.connections == 0


@guards("fetch:policy-every-hop")
async def test_a_redirect_to_a_denied_address_is_refused_and_reaches_nothing() -> None:
    async with serve(host="127.0.0.2") as denied:

        async def redirect(request: Received) -> Reply:
            return Reply(302, [("Location", denied.url("/secret"))])

        async with serve(redirect, host="127.0.0.3") as allowed:
            policy = Policy(lambda i: i["resolved_ip"] == "127.0.0.3")
            error = await refused(allowed.url("/start"), policy)
    assert error.code == "EPOLICY"
    assert [i["resolved_ip"] for i in policy.inputs] == ["127.0.0.3", "127.0.0.2"]
    assert len(allowed.received) == 1
    assert denied.connections == 0


@guards("fetch:policy-every-hop")
async def test_a_redirect_to_a_numeric_loopback_form_is_denied() -> None:
    async with serve() as internal:

        async def redirect(request: Received) -> Reply:
            return Reply(301, [("Location", f"http://2130706433:{internal.port}/")])

        async with serve(redirect, host="127.0.0.3") as allowed:
            policy = Policy(lambda i: i["resolved_ip"] == "127.0.0.3")
            error = await refused(allowed.url(), policy)
    assert error.code == "EPOLICY"
    assert internal.connections == 0


@guards("fetch:no-secret-leak")
async def test_an_injected_header_for_host_a_is_not_sent_to_host_b_after_a_redirect() -> None:
    rule = parse_header_rule("host=a.test,header=X-Secret,value=for-a-only")
    async with serve(host="127.0.0.2") as b:

        async def redirect(request: Received) -> Reply:
            return Reply(307, [("Location", f"http://b.test:{b.port}/landing")])

        async with serve(redirect) as a:
            policy = Policy()
            response = await fetch(
                f"http://a.test:{a.port}/",
                policy,
                method="POST",
                body=b"data",
                headers=(("Authorization", "Bearer user"), ("X-Custom", "kept")),
                rules=(rule,),
                resolver=resolver({"a.test": "127.0.0.1", "b.test": "127.0.0.2"}),
            )
    assert response.redirected
    assert response.url == f"http://b.test:{b.port}/landing"
    assert a.received[0].header("x-secret") == "for-a-only"
    landing = b.received[0]
    assert landing.header("x-secret") is None
    assert landing.header("authorization") is None  # cross-origin: user credentials dropped
    assert landing.header("x-custom") == "kept"
    assert (landing.method, landing.body) == ("POST", b"data")  # 307 keeps both
    assert "x-secret" not in policy.inputs[1]["headers"]


async def test_a_redirect_back_to_a_matching_host_gets_the_rule_header_again() -> None:
    rule = parse_header_rule("host=*.a.test,header=X-Secret,value=s")

    async def handler(request: Received) -> Reply:
        if request.target == "/first":
            return Reply(302, [("Location", "/second")])
        return Reply(200)

    async with serve(handler) as a:
        await fetch(
            f"http://api.a.test:{a.port}/first",
            Policy(),
            rules=(rule,),
            resolver=resolver({"api.a.test": "127.0.0.1"}),
        )
    assert [r.header("x-secret") for r in a.received] == ["s", "s"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nInjected: yes"),
        ("X-Evil", "a\nInjected: yes"),
        ("X-Evil", "a\rb"),
        ("X-Evil", "a\x00b"),
        ("X-Evil\r\nInjected", "yes"),
        ("X-Evil: yes\r\n", "x"),
        ("X Evil", "x"),
        ("", "x"),
    ],
)
async def test_crlf_nul_and_invalid_names_in_user_headers_are_refused(
    name: str, value: str
) -> None:
    async with serve() as server:
        error = await refused(server.url(), Policy(), headers=((name, value),))
    assert error.code == "EINVAL"
    assert server.connections == 0


async def test_an_oversized_response_is_aborted_with_a_clear_error() -> None:
    async def huge(request: Received) -> Reply:
        return Reply(200, stream_bytes=1 << 20)

    async with serve(huge) as server:
        error = await refused(server.url(), Policy(), max_response_bytes=64 * 1024)
    assert error.code == "EMSGSIZE"
    assert "max_response_bytes" in error.message


async def test_a_declared_oversized_response_fails_before_reading_its_body() -> None:
    async def declared(request: Received) -> Reply:
        return Reply(200, body=b"y" * 5000)

    async with serve(declared) as server:
        error = await refused(server.url(), Policy(), max_response_bytes=4999)
        ok = await fetch(server.url(), Policy(), max_response_bytes=5000)
    assert error.code == "EMSGSIZE"
    assert len(ok.body) == 5000


async def test_a_slow_server_beyond_the_timeout_fails_with_a_timeout_error() -> None:
    async def slow(request: Received) -> Reply:
        return Reply(hang=True)

    async with serve(slow) as server:
        started = anyio.current_time()
        error = await refused(server.url(), Policy(), timeout_s=0.3)
    assert error.code == "ETIMEDOUT"
    assert "timed out" in error.message
    assert anyio.current_time() - started < 5


async def test_slow_redirect_hops_are_bounded_by_one_timeout_for_the_whole_fetch() -> None:
    async def redirect_loop(request: Received) -> Reply:
        await anyio.sleep(0.05)
        return Reply(302, [("Location", "/again")])

    async with serve(redirect_loop) as server:
        error = await refused(server.url(), Policy(), timeout_s=0.3, max_redirects=1000)
    assert error.code == "ETIMEDOUT"
    assert len(server.received) > 1


async def test_too_many_redirects_fail_with_a_clear_error() -> None:
    async def loop(request: Received) -> Reply:
        return Reply(302, [("Location", "/again")])

    async with serve(loop) as server:
        error = await refused(server.url(), Policy(), max_redirects=3)
    assert error.code == "EREDIRECT"
    assert len(server.received) == 4


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "http://user@127.0.0.1/", "gopher://127.0.0.1/"]
)
async def test_a_redirect_to_a_refused_url_fails_without_following(location: str) -> None:
    async def redirect(request: Received) -> Reply:
        return Reply(302, [("Location", location)])

    async with serve(redirect) as server:
        error = await refused(server.url(), Policy())
    assert error.code == "EINVAL"
    assert "redirected" in error.message
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (301, "POST", ("GET", b"")),
        (302, "POST", ("GET", b"")),
        (303, "POST", ("GET", b"")),
        (303, "PUT", ("GET", b"")),
        (307, "POST", ("POST", b"body")),
        (308, "PUT", ("PUT", b"body")),
        (301, "PUT", ("PUT", b"body")),
    ],
)
async def test_redirects_rewrite_method_and_body_as_the_fetch_standard_says(
    status: int, method: str, expected: tuple[str, bytes]
) -> None:
    async def handler(request: Received) -> Reply:
        if request.target == "/start":
            return Reply(status, [("Location", "/end")])
        return Reply(200)

    async with serve(handler) as server:
        await fetch(
            server.url("/start"),
            Policy(),
            method=method,
            body=b"body",
            headers=(("Content-Type", "text/plain"), ("Authorization", "Bearer same-origin")),
        )
    end = server.received[1]
    assert (end.method, end.body) == expected
    assert (end.header("content-type") is None) == (expected[1] == b"")
    assert end.header("authorization") == "Bearer same-origin"  # same origin: kept


async def test_a_redirect_without_location_is_returned_as_the_response() -> None:
    async def handler(request: Received) -> Reply:
        return Reply(302, body=b"no location")

    async with serve(handler) as server:
        response = await fetch(server.url(), Policy())
    assert (response.status, response.body, response.redirected) == (302, b"no location", False)
