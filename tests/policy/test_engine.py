"""The engine: every policy of a category must allow; a category without policies is absent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from supervisor.errors import ConfigError
from supervisor.policy import Decision, PolicyEngine, build_engine, load_policies
from supervisor.policy.config import parse_policies
from tests._requirements import guards
from tests.policy.conftest import FakeOpa, WriteRego

pytestmark = pytest.mark.anyio

GET_ONLY = 'package mcp.fetch\n\ndefault allow := false\n\nallow if input.method == "GET"\n'
API_ONLY = 'package mcp.fetch\n\nallow if input.url_parsed.host == "api.example.com"\n'


def request(method: str = "GET", host: str = "api.example.com") -> dict[str, Any]:
    return {"operation": "fetch", "method": method, "url_parsed": {"host": host}}


class Recording:
    """A policy source that answers a fixed decision and counts its questions."""

    def __init__(self, name: str, allowed: bool) -> None:
        self.name = name
        self.allowed = allowed
        self.asked = 0

    async def decide(self, category: str, policy_input: dict[str, Any]) -> Decision:
        self.asked += 1
        return Decision(self.allowed, "" if self.allowed else f"denied by policy: {self.name}")


@guards("policy:fail-closed")
async def test_all_policies_must_allow_and_the_first_denial_ends_the_decision() -> None:
    first, second, third = Recording("a", True), Recording("b", False), Recording("c", True)
    engine = PolicyEngine({"fetch": [first, second, third]})
    decision = await engine.decide("fetch", request())
    assert decision == Decision(False, "denied by policy: b")
    assert (first.asked, second.asked, third.asked) == (1, 1, 0)


@guards("policy:fail-closed")
async def test_a_category_without_policies_is_not_enabled() -> None:
    engine = PolicyEngine({"fetch": [Recording("a", True)], "fs": []})
    assert engine.has("fetch")
    assert not engine.has("fs")
    assert not engine.has("import")
    assert engine.categories == ("fetch",)
    decision = await engine.decide("fs", {"operation": "stat", "path": "/"})
    assert decision == Decision(False, "fs is not enabled on this server")


async def test_local_policies_of_a_category_all_apply(write_rego: WriteRego) -> None:
    get_only, api_only = write_rego("get.rego", GET_ONLY), write_rego("api.rego", API_ONLY)
    engine = load_policies(
        json.dumps(
            {"fetch": {"policies": [{"url": f"file://{get_only}"}, {"url": f"file://{api_only}"}]}}
        )
    )
    assert (await engine.decide("fetch", request())).allowed
    post = await engine.decide("fetch", request(method="POST"))
    assert post.reason == f"denied by policy: file://{get_only} did not allow fetch"
    other = await engine.decide("fetch", request(host="evil.example.net"))
    assert other.reason == f"denied by policy: file://{api_only} did not allow fetch"
    await engine.aclose()


async def test_local_and_remote_policies_combine(write_rego: WriteRego, fake_opa: FakeOpa) -> None:
    local = write_rego("get.rego", GET_ONLY)
    config = parse_policies(
        {
            "fetch": {
                "policies": [{"url": f"file://{local}"}, {"url": fake_opa.url("get-only")}],
            },
            "fs": {"policies": [{"url": fake_opa.url("deny")}]},
        }
    )
    engine = build_engine(config)
    assert (await engine.decide("fetch", request())).allowed
    assert not (await engine.decide("fetch", request(method="POST"))).allowed
    # The local policy denied first: the remote one was never asked about the POST.
    assert [body["input"]["method"] for _, body in fake_opa.requests] == ["GET"]
    fs = await engine.decide("fs", {"operation": "stat", "path": "/"})
    assert fs.reason == f"denied by policy: {fake_opa.url('deny')} did not allow fs"
    await engine.aclose()


@guards("policy:fail-closed")
async def test_an_unreachable_remote_policy_denies_the_whole_decision(
    write_rego: WriteRego, refused_url: str
) -> None:
    local = write_rego("get.rego", GET_ONLY)
    engine = load_policies(
        json.dumps({"fetch": {"policies": [{"url": f"file://{local}"}, {"url": refused_url}]}})
    )
    decision = await engine.decide("fetch", request())
    assert not decision.allowed
    assert "is unreachable: connection refused" in decision.reason
    await engine.aclose()


async def test_a_source_listed_under_two_categories_is_loaded_once(write_rego: WriteRego) -> None:
    directory = write_rego("d/fetch.rego", GET_ONLY).parent
    write_rego("d/fs.rego", 'package mcp.fs\n\nallow if input.path == "/tmp/ok"\n')
    url = f"file://{directory}"
    engine = load_policies(
        json.dumps({"fetch": {"policies": [{"url": url}]}, "fs": {"policies": [{"url": url}]}})
    )
    assert engine.sources("fetch")[0] is engine.sources("fs")[0]
    assert (await engine.decide("fs", {"path": "/tmp/ok"})).allowed
    assert (await engine.decide("fetch", request())).allowed
    await engine.aclose()


async def test_the_engine_closes_only_a_client_it_made(fake_opa: FakeOpa) -> None:
    config = parse_policies({"fetch": {"policies": [{"url": fake_opa.url("allow")}]}})
    async with httpx.AsyncClient() as client:
        engine = build_engine(config, client=client)
        assert (await engine.decide("fetch", request())).allowed
        await engine.aclose()
        assert not client.is_closed
    owned = build_engine(config)
    assert (await owned.decide("fetch", request())).allowed
    await owned.aclose()
    await owned.aclose()  # twice is harmless


@guards("policy:fail-closed")
def test_a_policy_that_fails_to_load_stops_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "missing.rego"
    with pytest.raises(ConfigError, match=f"{missing} does not exist"):
        load_policies(json.dumps({"fs": {"policies": [{"url": f"file://{missing}"}]}}))


def test_an_empty_configuration_enables_nothing() -> None:
    engine = load_policies("{}")
    assert engine.categories == ()
