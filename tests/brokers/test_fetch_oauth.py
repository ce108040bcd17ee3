"""OAuth client-credentials injection against a real token endpoint on loopback."""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.parse

import anyio
import pytest

from supervisor.brokers.fetch import FetchBroker
from supervisor.brokers.headers import HeaderRule, parse_header_rule
from supervisor.brokers.models import BrokerError, FetchRequest
from supervisor.brokers.oauth import HeaderInjector
from tests._requirements import guards
from tests.brokers.test_fetch_support import (
    LoopbackServer,
    Policy,
    Received,
    Reply,
    bounded,
    serve,
)

pytestmark = pytest.mark.anyio

SECRET = "TOPSECRET-client-secret-42"


def token_reply(
    access_token: str,
    *,
    expires_in: float | None = 3600,
    refresh_token: str | None = None,
    token_type: str = "Bearer",
) -> Reply:
    payload: dict[str, object] = {"access_token": access_token, "token_type": token_type}
    if expires_in is not None:
        payload["expires_in"] = expires_in
    if refresh_token is not None:
        payload["refresh_token"] = refresh_token
    return Reply(200, [("Content-Type", "application/json")], json.dumps(payload).encode())


class TokenEndpoint:
    """Answers queued replies in order; records each request's form fields."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.forms: list[dict[str, str]] = []
        self.first_request = anyio.Event()
        self.gate: anyio.Event | None = None

    async def __call__(self, request: Received) -> Reply:
        self.forms.append(dict(urllib.parse.parse_qsl(request.body.decode())))
        self.first_request.set()
        if self.gate is not None:
            await self.gate.wait()
        if not self.replies:
            return Reply(500, body=b'{"error": "no_more_replies"}')
        return self.replies.pop(0)

    @property
    def grants(self) -> list[str]:
        return [form["grant_type"] for form in self.forms]


def oauth_rule(
    token_server: LoopbackServer, host: str = "127.0.0.1", extra: str = ""
) -> HeaderRule:
    return parse_header_rule(
        f"host={host},header=Authorization,token_url={token_server.url('/oauth/token')},"
        f"client_id=my-client,client_secret={SECRET},scope=read:all{extra}"
    )


async def fetch_all(
    rule: HeaderRule, url: str, times: int = 1, headers: tuple[tuple[str, str], ...] = ()
) -> None:
    async with FetchBroker((rule,)) as broker:
        for _ in range(times):
            with bounded():
                await broker.handle(FetchRequest(url=url, headers=headers), Policy())


async def test_a_token_is_fetched_once_and_reused_before_it_expires() -> None:
    endpoint = TokenEndpoint(token_reply("tok-1"))
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens), api.url(), times=3)
    assert endpoint.forms == [
        {
            "grant_type": "client_credentials",
            "client_id": "my-client",
            "client_secret": SECRET,
            "scope": "read:all",
        }
    ]
    assert [r.header("authorization") for r in api.received] == ["Bearer tok-1"] * 3


async def test_a_token_inside_its_refresh_buffer_is_refreshed_with_its_refresh_token() -> None:
    endpoint = TokenEndpoint(
        token_reply("tok-1", expires_in=30, refresh_token="r-1"),
        token_reply("tok-2", expires_in=3600),
    )
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens, extra=",refresh_buffer_secs=30"), api.url(), times=3)
    assert endpoint.grants == ["client_credentials", "refresh_token"]
    assert endpoint.forms[1]["refresh_token"] == "r-1"
    assert endpoint.forms[1]["client_secret"] == SECRET
    assert [r.header("authorization") for r in api.received] == [
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
    ]


async def test_an_expired_token_without_refresh_token_is_reacquired() -> None:
    endpoint = TokenEndpoint(token_reply("tok-1", expires_in=5), token_reply("tok-2"))
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens, extra=",refresh_buffer_secs=10"), api.url(), times=2)
    assert endpoint.grants == ["client_credentials", "client_credentials"]
    assert [r.header("authorization") for r in api.received] == ["Bearer tok-1", "Bearer tok-2"]


async def test_a_failed_refresh_falls_back_to_a_fresh_client_credentials_grant() -> None:
    endpoint = TokenEndpoint(
        token_reply("tok-1", expires_in=1, refresh_token="r-1"),
        Reply(400, body=b'{"error": "invalid_grant"}'),
        token_reply("tok-3"),
    )
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens), api.url(), times=2)
    assert endpoint.grants == ["client_credentials", "refresh_token", "client_credentials"]
    assert [r.header("authorization") for r in api.received] == ["Bearer tok-1", "Bearer tok-3"]


async def test_concurrent_fetches_share_one_token_request() -> None:
    endpoint = TokenEndpoint(token_reply("tok-1"))
    endpoint.gate = anyio.Event()
    async with (
        serve(endpoint) as tokens,
        serve() as api,
        FetchBroker((oauth_rule(tokens),)) as broker,
    ):
        with bounded():
            async with anyio.create_task_group() as group:
                for _ in range(10):
                    group.start_soon(broker.handle, FetchRequest(url=api.url()), Policy())
                await endpoint.first_request.wait()
                await anyio.wait_all_tasks_blocked()
                endpoint.gate.set()
    assert len(endpoint.forms) == 1
    assert [r.header("authorization") for r in api.received] == ["Bearer tok-1"] * 10


@guards("fetch:no-secret-leak")
async def test_a_failing_token_endpoint_fails_the_fetch_clearly_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # The endpoint even echoes the secret back; none of it may surface.
    body = json.dumps({"error": "invalid_client", "error_description": f"bad {SECRET}"})
    endpoint = TokenEndpoint(Reply(401, body=body.encode()))
    async with serve(endpoint) as tokens, serve() as api:
        rule = oauth_rule(tokens)
        with pytest.raises(BrokerError) as caught:
            await fetch_all(rule, api.url())
    error = caught.value
    assert error.code == "EAUTH"
    assert "OAuth token" in error.message
    assert "HTTP 401 invalid_client" in error.message
    assert SECRET not in error.message
    assert SECRET not in repr(error)
    assert SECRET not in caplog.text
    assert SECRET not in repr(rule)
    assert api.connections == 0


async def test_an_unreachable_token_endpoint_fails_the_fetch_clearly() -> None:
    async with serve() as gone:
        rule = oauth_rule(gone)
    async with serve() as api:
        with pytest.raises(BrokerError) as caught:
            await fetch_all(rule, api.url())
    assert caught.value.code == "EAUTH"
    assert "could not be reached" in caught.value.message
    assert SECRET not in caught.value.message
    assert api.connections == 0


async def test_a_token_endpoint_answer_without_access_token_fails_clearly() -> None:
    endpoint = TokenEndpoint(Reply(200, body=b'{"token": "wrong-field"}'))
    async with serve(endpoint) as tokens, serve() as api:
        with pytest.raises(BrokerError) as caught:
            await fetch_all(oauth_rule(tokens), api.url())
    assert "no access_token" in caught.value.message


async def test_an_authorization_header_set_by_user_code_skips_the_token_request() -> None:
    endpoint = TokenEndpoint(token_reply("tok-1"))
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens), api.url(), headers=(("authorization", "Bearer mine"),))
    assert endpoint.forms == []
    assert api.received[0].header("authorization") == "Bearer mine"


async def test_a_rule_for_another_host_makes_no_token_request() -> None:
    endpoint = TokenEndpoint(token_reply("tok-1"))
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens, host="api.example.test"), api.url())
    assert endpoint.forms == []
    assert api.received[0].header("authorization") is None


def jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


async def test_a_jwt_exp_claim_stands_in_for_a_missing_expires_in() -> None:
    token = jwt({"exp": int(time.time()) + 3600})
    endpoint = TokenEndpoint(token_reply(token, expires_in=None, token_type="bearer"))
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens), api.url(), times=2)
    assert len(endpoint.forms) == 1
    assert [r.header("authorization") for r in api.received] == [f"Bearer {token}"] * 2


async def test_a_token_of_unknown_lifetime_is_used_once_and_not_cached() -> None:
    endpoint = TokenEndpoint(
        token_reply("opaque-1", expires_in=None), token_reply("opaque-2", expires_in=None)
    )
    async with serve(endpoint) as tokens, serve() as api:
        await fetch_all(oauth_rule(tokens), api.url(), times=2)
    assert [r.header("authorization") for r in api.received] == [
        "Bearer opaque-1",
        "Bearer opaque-2",
    ]


async def test_a_token_is_reused_until_exactly_refresh_buffer_before_its_expiry() -> None:
    now = [1000.0]
    endpoint = TokenEndpoint(token_reply("tok-1", expires_in=100), token_reply("tok-2"))
    async with serve(endpoint) as tokens:
        injector = HeaderInjector(
            (oauth_rule(tokens, extra=",refresh_buffer_secs=30"),), clock=lambda: now[0]
        )
        try:
            values = []
            for at in (1000.0, 1069.9, 1070.0):
                now[0] = at
                headers = await injector.inject("127.0.0.1", "GET", [])
                values.append(dict(headers)["Authorization"])
        finally:
            await injector.aclose()
    assert values == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


async def test_a_token_with_control_characters_is_refused() -> None:
    endpoint = TokenEndpoint(token_reply("tok\r\nX-Injected: yes"))
    async with serve(endpoint) as tokens, serve() as api:
        with pytest.raises(BrokerError) as caught:
            await fetch_all(oauth_rule(tokens), api.url())
    assert caught.value.code == "EAUTH"
    assert api.connections == 0


@guards("fetch:no-secret-leak")
async def test_injected_values_stay_out_of_denials_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = TokenEndpoint(token_reply("tok-very-secret"))
    static = parse_header_rule("host=127.0.0.1,header=X-Api-Key,value=static-very-secret")
    async with (
        serve(endpoint) as tokens,
        serve() as api,
        FetchBroker((static, oauth_rule(tokens))) as broker,
    ):
        with pytest.raises(BrokerError) as caught:
            await broker.handle(FetchRequest(url=api.url()), Policy(lambda _: False))
        await broker.handle(FetchRequest(url=api.url()), Policy())
        assert "very-secret" not in repr(broker)
    assert "denied by policy" in caught.value.message
    for text in (caught.value.message, caplog.text, repr(static)):
        assert "very-secret" not in text
        assert SECRET not in text
    assert api.received[0].header("x-api-key") == "static-very-secret"
