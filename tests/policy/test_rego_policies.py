"""The example policies in policies/: their Rego unit tests, run by the server's own evaluator.

Every ``test_*`` rule of every ``policies/*_test.rego`` is evaluated with :class:`RegoProgram`
(regopy, as the server uses it) and must be ``true``. Then the policies are loaded the way the
server loads them (``file://`` URLs in ``--policies-json``, test files excluded) and asked
through ``allow`` with the input shapes the brokers build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from supervisor.policy import RegoProgram, load_policies

pytestmark = pytest.mark.anyio

POLICIES = Path(__file__).resolve().parents[2] / "policies"
_PACKAGE = re.compile(r"^package[ \t]+([\w.]+)", re.M)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.M)


def discover_test_rules(directory: Path) -> list[str]:
    """``data.<package>.<test_rule>`` of every test rule in the ``*_test.rego`` files."""
    found = []
    for path in sorted(directory.glob("*_test.rego")):
        source = path.read_text(encoding="utf-8")
        package = _PACKAGE.search(source)
        assert package, f"{path} has no package line"
        found += [f"data.{package.group(1)}.{rule}" for rule in _TEST_RULE.findall(source)]
    return list(dict.fromkeys(found))


RULES = discover_test_rules(POLICIES)


@pytest.fixture(scope="module")
def program() -> RegoProgram:
    """Every module of policies/, tests included, loaded as the server loads policies."""
    return RegoProgram.from_path(POLICIES, RULES, tests=True)


def test_every_policy_has_tests_and_every_test_file_has_rules() -> None:
    policies = {p.stem for p in POLICIES.glob("*.rego") if not p.stem.endswith("_test")}
    tests = {p.stem.removesuffix("_test") for p in POLICIES.glob("*_test.rego")}
    assert policies == tests == {"fetch", "fs"}
    for name in tests:
        assert any(rule.startswith(f"data.mcp.{name}_test.test_") for rule in RULES), name


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.removeprefix("data.mcp."))
def test_rego_unit_test(program: RegoProgram, rule: str) -> None:
    result = program.evaluate(rule, {})
    assert result.error is None, f"{rule}: {result.error}"
    assert result.defined and result.value is True, f"{rule} is {result}"


def test_the_runner_fails_a_test_when_the_policy_is_wrong(tmp_path: Path) -> None:
    # The same tests against a fetch policy that forgets the address check: some must fail.
    source = (POLICIES / "fetch.rego").read_text()
    assert "public_address(request.resolved_ip)" in source
    (tmp_path / "fetch.rego").write_text(
        source.replace("public_address(request.resolved_ip)", "true")
    )
    (tmp_path / "fetch_test.rego").write_text((POLICIES / "fetch_test.rego").read_text())
    rules = discover_test_rules(tmp_path)
    broken = RegoProgram.from_path(tmp_path, rules, tests=True)
    failing = {rule for rule in rules if broken.evaluate(rule, {}).value is not True}
    assert "data.mcp.fetch_test.test_denies_an_allowed_host_resolving_to_loopback" in failing
    assert "data.mcp.fetch_test.test_denies_post" not in failing


def fetch_input(
    url: str = "https://api.example.com/public/data?page=1",
    *,
    method: str = "GET",
    resolved_ip: str = "93.184.215.14",
) -> dict[str, Any]:
    """A fetch policy input as the broker builds it."""
    scheme, rest = url.split("://", 1)
    authority, _, path_query = rest.partition("/")
    host, _, port = authority.partition(":")
    path, _, query = ("/" + path_query).partition("?")
    return {
        "operation": "fetch",
        "url": url,
        "method": method,
        "headers": {"accept": "*/*"},
        "url_parsed": {
            "scheme": scheme,
            "host": host,
            "port": int(port) if port else None,
            "path": path,
            "query": query,
        },
        "resolved_ip": resolved_ip,
    }


async def test_the_policies_directory_loads_as_the_server_loads_it() -> None:
    url = f"file://{POLICIES}"
    engine = load_policies(
        json.dumps({"fetch": {"policies": [{"url": url}]}, "fs": {"policies": [{"url": url}]}})
    )
    try:
        assert (await engine.decide("fetch", fetch_input())).allowed
        assert not (await engine.decide("fetch", fetch_input(method="POST"))).allowed
        assert not (await engine.decide("fetch", fetch_input("http://api.example.com/"))).allowed
        assert not (await engine.decide("fetch", fetch_input("https://evil.example/"))).allowed
        loopback = fetch_input(resolved_ip="127.0.0.1")
        assert not (await engine.decide("fetch", loopback)).allowed
        assert not (await engine.decide("fetch", {"operation": "fetch"})).allowed

        read = {"operation": "readFile", "path": "/tmp/sandbox/a.txt", "encoding": "utf8"}
        assert (await engine.decide("fs", read)).allowed
        write = {"operation": "writeFile", "path": "/tmp/sandbox/out/a.txt"}
        assert (await engine.decide("fs", write)).allowed
        outside = {"operation": "writeFile", "path": "/tmp/sandbox/a.txt"}
        decision = await engine.decide("fs", outside)
        assert decision.reason == f"denied by policy: {url} did not allow fs"
    finally:
        await engine.aclose()
