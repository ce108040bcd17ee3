"""--policies-json: inline or a file, every mistake rejected with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.policy import DEFAULT_OPA_TIMEOUT_S, PolicyRef, parse_policies_json


def test_inline_json_lists_remote_and_local_policies_per_category() -> None:
    config = parse_policies_json(
        json.dumps(
            {
                "fetch": {"policies": [{"url": "http://localhost:8181"}]},
                "fs": {"policies": [{"url": "file:///etc/mcp-v8/fs.rego"}]},
            }
        )
    )
    assert config.policies_for("fetch") == (
        PolicyRef(url="http://localhost:8181", kind="opa", timeout_s=DEFAULT_OPA_TIMEOUT_S),
    )
    assert config.policies_for("fs") == (
        PolicyRef(url="file:///etc/mcp-v8/fs.rego", kind="rego", path=Path("/etc/mcp-v8/fs.rego")),
    )
    assert config.policies_for("import") == ()


def test_a_path_is_read_as_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "policies.json"
    path.write_text('{"import": {"policies": [{"url": "https://opa.internal", "timeout_s": 0.5}]}}')
    config = parse_policies_json(str(path))
    assert config.policies_for("import") == (
        PolicyRef(url="https://opa.internal", kind="opa", timeout_s=0.5),
    )


def test_inline_json_may_start_with_blanks() -> None:
    assert parse_policies_json('  \n {"fetch": {"policies": []}}').policies_for("fetch") == ()


def test_file_urls_are_percent_decoded_and_may_name_localhost() -> None:
    config = parse_policies_json('{"fs": {"policies": [{"url": "file://localhost/a%20b/p.rego"}]}}')
    assert config.policies_for("fs")[0].path == Path("/a b/p.rego")


def test_the_config_is_frozen() -> None:
    config = parse_policies_json('{"fetch": {"policies": [{"url": "http://opa"}]}}')
    with pytest.raises(AttributeError):
        config.fetch = ()  # type: ignore[misc]


def test_bad_inline_json_says_where() -> None:
    with pytest.raises(ConfigError, match=r"--policies-json is not valid JSON: .* line 1 column"):
        parse_policies_json('{"fetch": {"policies": [}')


def test_bad_json_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policies.json"
    path.write_text('{\n  "fetch": {"policies": [\n    {"url": "http://opa",}\n  ]}\n}')
    with pytest.raises(ConfigError, match=rf"policies file {path} is not valid JSON: .* line 3"):
        parse_policies_json(str(path))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"policies file {tmp_path}/nope.json does not exist"):
        parse_policies_json(str(tmp_path / "nope.json"))


def test_empty_text_is_rejected() -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_policies_json("  ")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[]", "expected a JSON object of categories, got a list"),
        ('{"fetsh": {"policies": []}}', "unknown policy category 'fetsh'"),
        ('{"fetch": []}', r'fetch: expected \{"policies": \[...\]\}, got a list'),
        ('{"fetch": {}}', 'fetch: missing "policies"'),
        ('{"fetch": {"policies": [], "extra": 1}}', "fetch: unknown key 'extra'"),
        ('{"fetch": {"policies": {"url": "http://opa"}}}', "policies: expected a list"),
        ('{"fetch": {"policies": ["http://opa"]}}', r"policies\[0\]: expected"),
        ('{"fetch": {"policies": [{"uri": "http://opa"}]}}', "policies\\[0\\]: unknown key 'uri'"),
        ('{"fetch": {"policies": [{}]}}', '"url" must be a non-empty string'),
        ('{"fs": {"policies": [{"url": "ftp://x/p.rego"}]}}', "unsupported policy URL"),
        ('{"fs": {"policies": [{"url": "/etc/p.rego"}]}}', "unsupported policy URL"),
        ('{"fs": {"policies": [{"url": "file://server/p.rego"}]}}', "names host 'server'"),
        ('{"fs": {"policies": [{"url": "file:p.rego"}]}}', "must hold an absolute path"),
        ('{"fetch": {"policies": [{"url": "http://"}]}}', "has no host"),
        ('{"fetch": {"policies": [{"url": "http://opa?x=1"}]}}', "must not have a query"),
        (
            '{"fs": {"policies": [{"url": "file:///p.rego", "timeout_s": 1}]}}',
            "applies only to remote OPA",
        ),
        ('{"fetch": {"policies": [{"url": "http://opa", "timeout_s": 0}]}}', "positive number"),
        ('{"fetch": {"policies": [{"url": "http://opa", "timeout_s": "2"}]}}', "positive number"),
        ('{"fetch": {"policies": [{"url": "http://opa", "timeout_s": true}]}}', "positive number"),
    ],
)
def test_malformed_documents_are_rejected_with_the_problem_named(
    document: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policies_json(document)
