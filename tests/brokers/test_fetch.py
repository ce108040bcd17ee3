"""The fetch broker against real loopback servers: bodies, headers, injection, the policy input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
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
    make_certificates,
    resolver,
    serve,
)

pytestmark = pytest.mark.anyio


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    policy: Policy | None = None,
    rules: tuple[HeaderRule, ...] = (),
    **options: Any,
) -> FetchResponse:
    """One brokered fetch with a fresh broker (allow-all policy unless given)."""
    async with FetchBroker(rules, **options) as broker:
        with bounded():
            return await broker.handle(
                FetchRequest(url=url, method=method, headers=headers, body=body),
                policy or Policy(),
            )


async def test_get_returns_status_reason_headers_and_binary_body() -> None:
    payload = bytes(range(256)) * 4

    async def handler(request: Received) -> Reply:
        return Reply(
            201, [("X-Answer", "42"), ("Content-Type", "application/x-bin")], payload, "Made It"
        )

    async with serve(handler) as server:
        response = await fetch(server.url("/data?x=1"))
    assert response.status == 201
    assert response.status_text == "Made It"
    assert response.body == payload
    assert ("x-answer", "42") in response.headers
    assert all(name == name.lower() for name, _ in response.headers)
    assert response.url == server.url("/data?x=1")
    assert response.redirected is False
    assert server.received[0].target == "/data?x=1"


async def test_post_sends_a_binary_body_and_gets_it_back() -> None:
    payload = os.urandom(100_000) + b"\x00\r\n\xff"
    async with serve() as server:
        response = await fetch(
            server.url("/echo"),
            method="POST",
            headers=(("Content-Type", "application/octet-stream"),),
            body=payload,
        )
    assert response.body == payload
    assert server.received[0].method == "POST"
    assert server.received[0].body == payload
    assert server.received[0].header("content-length") == str(len(payload))


async def test_a_get_request_with_a_body_is_refused_like_the_fetch_standard_does() -> None:
    with pytest.raises(BrokerError) as caught:
        await fetch("http://127.0.0.1:9/", body=b"x")
    assert caught.value.code == "EINVAL"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/", "data:text/plain,hi", "/relative", "http:x"]
)
async def test_only_absolute_http_and_https_urls_are_fetched(url: str) -> None:
    with pytest.raises(BrokerError) as caught:
        await fetch(url)
    assert caught.value.code == "EINVAL"


async def test_the_policy_input_has_the_seed_fields_and_the_resolved_address() -> None:
    policy = Policy()
    rule = parse_header_rule("host=api.test,header=X-Api-Key,value=k1")
    async with serve() as server:
        await fetch(
            f"http://API.test:{server.port}/v1/items?q=foo#frag",
            method="post",
            headers=(("Content-Type", "application/json"), ("X-Multi", "a"), ("x-multi", "b")),
            body=b"{}",
            policy=policy,
            rules=(rule,),
            resolver=resolver({"api.test": "127.0.0.1"}),
        )
    assert policy.inputs == [
        {
            "operation": "fetch",
            "url": f"http://api.test:{server.port}/v1/items?q=foo",
            "method": "POST",
            "headers": {"content-type": "application/json", "x-multi": "a, b", "x-api-key": "k1"},
            "url_parsed": {
                "scheme": "http",
                "host": "api.test",
                "port": server.port,
                "path": "/v1/items",
                "query": "q=foo",
            },
            "resolved_ip": "127.0.0.1",
        }
    ]
    assert server.received[0].header("host") == f"api.test:{server.port}"


async def test_a_default_port_is_null_in_the_policy_input() -> None:
    policy = Policy(lambda _: False)
    with pytest.raises(BrokerError):
        await fetch(
            "https://api.test:443/", policy=policy, resolver=resolver({"api.test": "127.0.0.1"})
        )
    assert policy.inputs[0]["url_parsed"]["port"] is None
    assert policy.inputs[0]["url_parsed"]["query"] == ""
    assert policy.inputs[0]["url"] == "https://api.test/"


@guards("fetch:policy-every-hop")
async def test_a_denied_fetch_says_denied_by_policy_and_sends_nothing() -> None:
    async with serve() as server:
        with pytest.raises(BrokerError) as caught:
            await fetch(server.url(), policy=Policy(lambda _: False))
    assert caught.value.code == "EPOLICY"
    assert "denied by policy" in str(caught.value)
    assert "the test policy says no" in str(caught.value)
    assert server.connections == 0


async def test_an_injected_static_header_arrives_and_the_policy_sees_it() -> None:
    policy = Policy()
    rule = parse_header_rule("host=127.0.0.1,header=X-Api-Key,value=injected-secret")
    async with serve() as server:
        await fetch(server.url(), rules=(rule,), policy=policy)
    assert server.received[0].header("x-api-key") == "injected-secret"
    assert policy.inputs[0]["headers"]["x-api-key"] == "injected-secret"


async def test_a_header_set_by_the_javascript_code_wins_over_an_injected_one() -> None:
    rule = parse_header_rule("host=127.0.0.1,header=Authorization,value=Bearer injected")
    async with serve() as server:
        await fetch(server.url(), rules=(rule,), headers=(("authorization", "Bearer mine"),))
    assert server.received[0].header("authorization") == "Bearer mine"


async def test_a_method_filter_limits_injection_to_its_methods() -> None:
    rule = parse_header_rule("host=127.0.0.1,header=X-Write-Key,value=w,methods=POST;PUT")
    async with serve() as server:
        await fetch(server.url(), rules=(rule,))
        await fetch(server.url(), method="post", rules=(rule,))
    assert [r.header("x-write-key") for r in server.received] == [None, "w"]


@pytest.mark.parametrize(
    ("host", "injected"),
    [
        ("api.example.test", True),
        ("example.test", True),
        ("a.b.example.test", True),
        ("EXAMPLE.test", True),
        ("badexample.test", False),
        ("example.test.evil", False),
    ],
)
async def test_a_wildcard_rule_matches_subdomains_and_the_apex_only(
    host: str, injected: bool
) -> None:
    rule = parse_header_rule("host=*.Example.test,header=X-Key,value=v")
    async with serve() as server:
        await fetch(
            f"http://{host}:{server.port}/",
            rules=(rule,),
            resolver=resolver({host.lower(): "127.0.0.1"}),
        )
    assert (server.received[0].header("x-key") == "v") is injected


async def test_headers_the_client_owns_are_ignored_when_user_code_sets_them() -> None:
    async with serve() as server:
        await fetch(
            server.url(),
            method="POST",
            body=b"abc",
            headers=(("Host", "evil.test"), ("Content-Length", "999"), ("Connection", "upgrade")),
        )
    received = server.received[0]
    assert received.header("host") == f"127.0.0.1:{server.port}"
    assert received.header("content-length") == "3"
    assert received.body == b"abc"


async def test_cookies_set_by_a_response_are_not_sent_on_later_fetches() -> None:
    async def handler(request: Received) -> Reply:
        return Reply(200, [("Set-Cookie", "session=s1; Path=/")])

    async with FetchBroker() as broker, serve(handler) as server:
        for _ in range(2):
            await broker.handle(FetchRequest(url=server.url()), Policy())
    assert [r.header("cookie") for r in server.received] == [None, None]


async def test_an_unknown_host_fails_with_enotfound() -> None:
    with pytest.raises(BrokerError) as caught:
        await fetch("http://nowhere.test/", resolver=resolver({}))
    assert caught.value.code == "ENOTFOUND"


async def test_a_closed_port_fails_with_econnrefused() -> None:
    async with serve() as server:
        port = server.port
    with pytest.raises(BrokerError) as caught:
        await fetch(f"http://127.0.0.1:{port}/")
    assert caught.value.code == "ECONNREFUSED"


async def test_https_dials_the_checked_address_with_sni_and_verification_for_the_host_name(
    tmp_path: Path,
) -> None:
    certs = make_certificates(tmp_path, ["secure.test"])
    policy = Policy()
    async with serve(tls=certs.server) as server:
        response = await fetch(
            f"https://secure.test:{server.port}/tls",
            policy=policy,
            resolver=resolver({"secure.test": "127.0.0.1"}),
            verify=certs.client,
        )
    assert response.status == 200
    assert certs.sni_seen == ["secure.test"]
    assert server.received[0].header("host") == f"secure.test:{server.port}"
    assert policy.inputs[0]["resolved_ip"] == "127.0.0.1"


async def test_https_refuses_a_certificate_that_does_not_name_the_host(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path, ["secure.test"])
    async with serve(tls=certs.server) as server:
        with pytest.raises(BrokerError) as caught:
            await fetch(
                f"https://other.test:{server.port}/",
                resolver=resolver({"other.test": "127.0.0.1"}),
                verify=certs.client,
            )
    assert caught.value.code == "ETLS"
    assert server.received == []


async def test_brokered_and_direct_httpx_fetches_see_the_same_response() -> None:
    async with serve() as server:
        brokered = await fetch(server.url("/same"), method="PUT", body=b"payload")
        async with httpx.AsyncClient() as client:
            direct = await client.put(server.url("/same"), content=b"payload")
    assert (brokered.status, brokered.body) == (direct.status_code, direct.content)
