"""Header rules: parsing ``--fetch-header`` and ``--fetch-header-config``, matching, precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.brokers.headers import (
    OAuthHeaderRule,
    StaticHeaderRule,
    build_header_rules,
    check_request_header,
    host_matches,
    load_header_config,
    parse_header_rule,
)
from supervisor.brokers.models import BrokerError
from supervisor.brokers.oauth import HeaderInjector
from supervisor.errors import ConfigError
from tests._requirements import guards

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-value"


def test_a_static_cli_rule_parses_host_header_value_and_methods() -> None:
    rule = parse_header_rule(
        "host=API.GitHub.com,header=Authorization,value=Bearer ghp_x,methods=get;Post"
    )
    assert rule == StaticHeaderRule(
        "--fetch-header",
        "api.github.com",
        frozenset({"GET", "POST"}),
        (("Authorization", "Bearer ghp_x"),),
    )


def test_an_oauth_cli_rule_parses_every_field_with_a_default_refresh_buffer() -> None:
    rule = parse_header_rule(
        "host=*.example.com,header=Authorization,token_url=https://issuer.example.com/token,"
        f"client_id=my-client,client_secret={SECRET},scope=read:all"
    )
    assert isinstance(rule, OAuthHeaderRule)
    assert (rule.host, rule.header, rule.client_id, rule.client_secret) == (
        "*.example.com",
        "Authorization",
        "my-client",
        SECRET,
    )
    assert (rule.token_url, rule.scope, rule.refresh_buffer_s, rule.methods) == (
        "https://issuer.example.com/token",
        "read:all",
        30.0,
        frozenset(),
    )
    with_buffer = parse_header_rule(
        "host=a.test,header=X-Token,token_url=http://127.0.0.1:1/t,client_id=c,"
        f"client_secret={SECRET},refresh_buffer_secs=45,methods=GET"
    )
    assert isinstance(with_buffer, OAuthHeaderRule)
    assert (with_buffer.refresh_buffer_s, with_buffer.methods) == (45.0, frozenset({"GET"}))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("header=X,value=v", "host"),
        ("host=a.test,value=v", "header name"),
        ("host=a.test,header=X", "missing token_url, client_id, client_secret"),
        ("host=a.test,header=X,value=", "empty"),
        ("host=a.test,header=X,value=v,host=b.test", "twice"),
        ("host=a.test,header=X,value=v,methd=GET", "unknown key"),
        ("host=a.test,header=X,value=v,scope=s", "static rule"),
        ("host=a.test,header=X Y,value=v", "not a valid HTTP header name"),
        ("host=a.test,header=Host,value=v", "set by the HTTP client"),
        ("host=a.test,header=X,value=v,methods=G E T", "not an HTTP method"),
        ("host=a*.test,header=X,value=v", "host"),
        ("host=*.,header=X,value=v", "host"),
        ("host=a.test,header=X,token_url=ftp://x/,client_id=c,client_secret=s", "token_url"),
        (
            "host=a.test,header=X,token_url=http://x/,client_id=c,client_secret=s,"
            "refresh_buffer_secs=soon",
            "refresh_buffer_secs",
        ),
        (
            "host=a.test,header=X,token_url=http://x/,client_id=c,client_secret=s,"
            "refresh_buffer_secs=-1",
            "refresh_buffer_secs",
        ),
    ],
)
def test_a_bad_cli_rule_is_a_config_error_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_header_rule(text, source="--fetch-header #3")
    assert caught.value.message.startswith("--fetch-header #3: ")
    assert problem in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        f"host=a.test,header=X,value={SECRET}\r\nInjected: 1",
        f"host=a.test,header=X,value=Bearer {SECRET},with-a-comma",
        f"host=a.test,header=X,value=Bearer {SECRET},oops={SECRET}",
        f"host=a.test,header=X,token_url=http://x/,client_id=c,client_secret={SECRET},bogus",
        f"host=a.test,header=X,token_url=ftp://x/,client_id=c,client_secret={SECRET}",
        f"host=a.test,header=X,value=v,client_secret={SECRET}",
    ],
)
@guards("fetch:no-secret-leak")
def test_config_errors_never_echo_a_secret(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_header_rule(text)
    assert "s3cr3t" not in caught.value.message


def test_a_json_config_holds_static_and_oauth_rules(tmp_path: Path) -> None:
    path = tmp_path / "headers.json"
    path.write_text(
        json.dumps(
            [
                {
                    "host": "api.github.com",
                    "methods": ["GET", "post"],
                    "headers": {"Authorization": "Bearer, with a comma", "X-Version": "2022"},
                },
                {
                    "host": "api.example.com",
                    "auth": {
                        "type": "oauth_client_credentials",
                        "header": "Authorization",
                        "token_url": "https://issuer.example.com/oauth2/token",
                        "client_id": "my-client",
                        "client_secret": SECRET,
                        "scope": "read:all",
                        "refresh_buffer_secs": 45,
                    },
                },
            ]
        )
    )
    static, oauth = load_header_config(path)
    assert isinstance(static, StaticHeaderRule)
    assert static.headers == (("Authorization", "Bearer, with a comma"), ("X-Version", "2022"))
    assert static.methods == frozenset({"GET", "POST"})
    assert isinstance(oauth, OAuthHeaderRule)
    assert (oauth.client_secret, oauth.refresh_buffer_s, oauth.scope) == (SECRET, 45.0, "read:all")
    assert oauth.source == f"--fetch-header-config {path} rule #2"


def test_cli_rules_come_first_and_config_files_are_merged_in_order(tmp_path: Path) -> None:
    first = tmp_path / "one.json"
    second = tmp_path / "two.json"
    first.write_text('[{"host": "one.test", "headers": {"X-A": "1"}}]')
    second.write_text('[{"host": "two.test", "headers": {"X-A": "2"}}]')
    rules = build_header_rules(["host=cli.test,header=X-A,value=0"], [first, second])
    assert [rule.host for rule in rules] == ["cli.test", "one.test", "two.test"]
    assert rules[0].source == "--fetch-header #1"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ('{"host": "a"}', "expected a JSON list"),
        ('[{"host": "a.test"}]', "exactly one of 'headers'"),
        ('[{"host": "a.test", "headers": {"X": "1"}, "auth": {}}]', "exactly one of 'headers'"),
        ('[{"host": "a.test", "headers": {"X": "1"}, "extra": 1}]', "unknown keys 'extra'"),
        ('[{"host": "a.test", "headers": {}}]', "non-empty object"),
        ('[{"host": "a.test", "headers": {"X": 1}}]', "must be a string"),
        ('[{"host": "a.test", "headers": {"X": "1", "x": "2"}}]', "given twice"),
        ('[{"host": "a.test", "methods": "GET", "headers": {"X": "1"}}]', "list of strings"),
        ('[{"host": "a.test", "auth": {"type": "basic"}}]', "oauth_client_credentials"),
        ('[{"host": "a.test", "auth": {"header": "X", "token_url": "http://x/"}}]', "client_id"),
        ('[{"host": "a.test", "auth": {"hedaer": "X"}}]', "unknown keys in 'auth'"),
        ('[\n  {"host": "a.test",\n  }\n]', "invalid JSON at line 3"),
    ],
)
def test_a_bad_config_file_is_a_config_error_naming_the_file_and_rule(
    tmp_path: Path, document: str, problem: str
) -> None:
    path = tmp_path / "headers.json"
    path.write_text(document)
    with pytest.raises(ConfigError) as caught:
        load_header_config(path)
    assert str(path) in caught.value.message
    assert problem in caught.value.message


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_header_config(tmp_path / "absent.json")
    assert "cannot read" in caught.value.message


@guards("fetch:no-secret-leak")
def test_rule_reprs_redact_secrets_and_values() -> None:
    static = parse_header_rule(f"host=a.test,header=X-Key,value={SECRET}")
    oauth = parse_header_rule(
        f"host=a.test,header=Authorization,token_url=http://x/t?k={SECRET},client_id=c,"
        f"client_secret={SECRET}"
    )
    for rule in (static, oauth):
        assert SECRET not in repr(rule)
        assert SECRET not in str(rule)
        assert SECRET not in f"{rule!r} {[rule]}"
    assert "X-Key" in repr(static)
    assert "<redacted>" in repr(oauth)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("api.github.com", "api.github.com", True),
        ("api.github.com", "API.GitHub.COM", True),
        ("API.GITHUB.COM", "api.github.com", True),
        ("api.github.com", "github.com", False),
        ("api.github.com", "evil-api.github.com", False),
        ("*.github.com", "github.com", True),
        ("*.github.com", "api.github.com", True),
        ("*.github.com", "sub.api.github.com", True),
        ("*.github.com", "evilgithub.com", False),
        ("*.github.com", "github.com.evil", False),
        ("*.GitHub.com", "API.github.COM", True),
    ],
)
def test_host_matching_is_exact_or_wildcard_with_apex_and_ignores_case(
    pattern: str, host: str, matches: bool
) -> None:
    assert host_matches(pattern, host) is matches


async def test_injection_adds_missing_headers_and_user_headers_win_case_insensitively() -> None:
    injector = HeaderInjector(
        [
            parse_header_rule("host=a.test,header=Authorization,value=Bearer injected"),
            parse_header_rule("host=a.test,header=X-Extra,value=one"),
            parse_header_rule("host=*.test,header=X-Extra,value=two"),
            parse_header_rule("host=b.test,header=X-Other,value=never"),
        ]
    )
    headers = await injector.inject("a.test", "GET", [("AUTHORIZATION", "Bearer mine")])
    assert headers == [("AUTHORIZATION", "Bearer mine"), ("X-Extra", "one")]


async def test_a_method_filter_is_case_insensitive() -> None:
    injector = HeaderInjector([parse_header_rule("host=a.test,header=X,value=v,methods=post")])
    assert await injector.inject("a.test", "Post", []) == [("X", "v")]
    assert await injector.inject("a.test", "GET", []) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "a\r\nB: c"), ("X-A", "a\nb"), ("X-A", "a\x00"), ("X-A\r\n", "v"), ("X:A", "v")],
)
def test_header_names_and_values_with_crlf_nul_or_separators_are_refused(
    name: str, value: str
) -> None:
    with pytest.raises(BrokerError) as caught:
        check_request_header(name, value)
    assert caught.value.code == "EINVAL"
    assert "a\r\nB" not in caught.value.message


def test_ordinary_header_values_pass_including_tabs_and_non_ascii() -> None:
    check_request_header("X-Fine", "a\tb é ,;=")
