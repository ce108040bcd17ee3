"""Remote OPA through its REST data API, against a stand-in on loopback: every failure denies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from supervisor.policy import RemoteOpaPolicy
from tests._requirements import guards
from tests.policy.conftest import FakeOpa

pytestmark = pytest.mark.anyio

FETCH_INPUT = {"operation": "fetch", "method": "GET", "url": "https://api.example.com/"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as shared:
        yield shared


async def test_result_true_allows_and_the_input_is_posted(
    fake_opa: FakeOpa, client: httpx.AsyncClient
) -> None:
    policy = RemoteOpaPolicy(fake_opa.url("allow"), client)
    assert (await policy.decide("fetch", FETCH_INPUT)).allowed
    assert fake_opa.requests == [("/allow/v1/data/mcp/fetch/allow", {"input": FETCH_INPUT})]


async def test_the_decision_depends_on_the_input(
    fake_opa: FakeOpa, client: httpx.AsyncClient
) -> None:
    policy = RemoteOpaPolicy(fake_opa.url("get-only") + "/", client)
    assert (await policy.decide("fetch", {"method": "GET"})).allowed
    assert not (await policy.decide("fetch", {"method": "POST"})).allowed


@guards("policy:fail-closed")
async def test_result_false_denies(fake_opa: FakeOpa, client: httpx.AsyncClient) -> None:
    url = fake_opa.url("deny")
    decision = await RemoteOpaPolicy(url, client).decide("fs", {"path": "/etc"})
    assert not decision.allowed
    assert decision.reason == f"denied by policy: {url} did not allow fs"
    assert fake_opa.requests[0][0] == "/deny/v1/data/mcp/fs/allow"


@guards("policy:fail-closed")
async def test_a_missing_result_is_undefined_and_denies(
    fake_opa: FakeOpa, client: httpx.AsyncClient
) -> None:
    decision = await RemoteOpaPolicy(fake_opa.url("undefined"), client).decide("fetch", {})
    assert not decision.allowed
    assert "did not allow fetch" in decision.reason


@guards("policy:fail-closed")
async def test_a_server_error_denies_saying_so(
    fake_opa: FakeOpa, client: httpx.AsyncClient
) -> None:
    url = fake_opa.url("error")
    decision = await RemoteOpaPolicy(url, client).decide("fetch", {})
    assert not decision.allowed
    assert (
        decision.reason == f"denied by policy: remote policy at {url} answered HTTP 500 for fetch"
    )


@guards("policy:fail-closed")
async def test_an_answer_that_is_not_json_denies(
    fake_opa: FakeOpa, client: httpx.AsyncClient
) -> None:
    decision = await RemoteOpaPolicy(fake_opa.url("not-json"), client).decide("fetch", {})
    assert not decision.allowed
    assert "answered with invalid JSON" in decision.reason


@guards("policy:fail-closed")
async def test_a_slow_server_denies_at_the_timeout(
    fake_opa: FakeOpa, client: httpx.AsyncClient
) -> None:
    url = fake_opa.url("slow")
    policy = RemoteOpaPolicy(url, client, timeout_s=0.2)
    with anyio.fail_after(5):
        started = anyio.current_time()
        decision = await policy.decide("fetch", {})
        elapsed = anyio.current_time() - started
    assert not decision.allowed
    assert decision.reason == (
        f"denied by policy: remote policy at {url} is unreachable: no answer within 0.2 s"
    )
    assert 0.15 < elapsed < 2


@guards("policy:fail-closed")
async def test_a_refused_connection_denies_saying_so(
    refused_url: str, client: httpx.AsyncClient
) -> None:
    decision = await RemoteOpaPolicy(refused_url, client).decide("fetch", {})
    assert not decision.allowed
    assert decision.reason.startswith(
        f"denied by policy: remote policy at {refused_url} is unreachable: connection refused"
    )


@guards("policy:fail-closed")
async def test_an_unresolvable_host_denies_saying_so(client: httpx.AsyncClient) -> None:
    url = "http://opa.invalid:8181"
    decision = await RemoteOpaPolicy(url, client).decide("fetch", {})
    assert not decision.allowed
    assert decision.reason.startswith(f"denied by policy: remote policy at {url} is unreachable: ")
