"""What may be imported, what the policy is asked, and the bundler's command line (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import ModuleSettings
from supervisor.modules import ModuleError
from supervisor.modules.bundler import BundleJob, bundler_argv, bundler_env, check_sources
from supervisor.modules.specifiers import npm_metadata_url, parse_specifier
from tests._requirements import guards

SETTINGS = ModuleSettings(cache_dir=Path("/data/modules"))


@pytest.mark.parametrize(
    ("specifier", "url"),
    [
        ("npm:lodash-es@4.17.21", "https://registry.npmjs.org/lodash-es"),
        ("npm:lodash-es", "https://registry.npmjs.org/lodash-es"),
        (
            "npm:@sindresorhus/slugify@^2/index.js",
            "https://registry.npmjs.org/@sindresorhus/slugify",
        ),
        ("jsr:@std/path@1/posix", "https://jsr.io/@std/path"),
        ("https://example.com/mod.ts", "https://example.com/mod.ts"),
        ("HTTP://Example.COM:80/a/../b.js#frag", "http://example.com/b.js"),
    ],
)
def test_the_policy_is_asked_about_the_registry_package_or_the_url(
    specifier: str, url: str
) -> None:
    assert parse_specifier(specifier, SETTINGS).url == url


def test_with_a_cdn_an_npm_specifier_is_a_url_on_the_cdn() -> None:
    settings = ModuleSettings(cache_dir=Path("/data/modules"), cdn="https://esm.example/")
    target = parse_specifier("npm:preact@10.0.0/hooks", settings)
    assert target.url == target.module_url == "https://esm.example/preact@10.0.0/hooks"


def test_a_scoped_npm_name_is_encoded_in_the_registry_lookup() -> None:
    assert (
        npm_metadata_url("https://registry.npmjs.org", "@scope/name")
        == "https://registry.npmjs.org/@scope%2Fname"
    )


def test_a_bare_name_is_refused_with_a_hint_to_use_npm() -> None:
    with pytest.raises(ModuleError) as caught:
        parse_specifier("lodash", SETTINGS)
    assert caught.value.code == "EINVAL"
    assert "npm:<package>, jsr:@scope/name and http(s):// URLs" in caught.value.message
    assert "did you mean 'npm:lodash'?" in caught.value.message


@pytest.mark.parametrize(
    "specifier",
    [
        "./x.js",
        "/etc/passwd",
        "file:///etc/passwd",
        "data:text/javascript,export default 1",
        "node:fs",
        "ftp://example.com/x.js",
        "npm:",
        "npm:@scope",
        "npm:lodash@",
        "npm:lodash@1 || 2",
        "npm:lodash/../../etc/passwd",
        "npm:lo dash",
        "jsr:std/path",
        "https://user:secret@example.com/x.js",
        "https://exa mple.com/x.js",
        "https:///x.js",
        "npm:" + "a" * 3000,
    ],
)
def test_other_specifiers_are_refused_as_invalid(specifier: str) -> None:
    with pytest.raises(ModuleError) as caught:
        parse_specifier(specifier, SETTINGS)
    assert caught.value.code == "EINVAL"
    assert "cannot import" in caught.value.message


def test_the_bundler_gets_no_permission_and_loads_remote_code_only_from_jsr() -> None:
    argv = bundler_argv("/usr/bin/deno", entry="npm:x@1", fmt="cjs", jsr_registry="https://jsr.io/")
    assert argv[:2] == ["/usr/bin/deno", "bundle"]
    assert argv[-1] == "npm:x@1"
    assert {"--no-config", "--no-lock", "--allow-import=jsr.io:443"} <= set(argv)
    assert argv[argv.index("--platform") + 1] == "browser"
    assert argv[argv.index("--format") + 1] == "cjs"
    assert [a for a in argv if a.startswith(("--allow-", "-A"))] == ["--allow-import=jsr.io:443"]


def test_the_bundler_environment_is_the_cache_the_registries_and_the_way_to_them() -> None:
    parent = {
        "HOME": "/root",
        "NPM_TOKEN": "secret",
        "NPM_CONFIG_REGISTRY": "https://elsewhere/",
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
    }
    settings = ModuleSettings(cache_dir=Path("/data/modules"), npm_registry="http://npm.local")
    assert bundler_env("/data/modules/deno", settings, parent) == {
        "DENO_DIR": "/data/modules/deno",
        "NPM_CONFIG_REGISTRY": "http://npm.local/",
        "JSR_URL": "https://jsr.io/",
        "DENO_NO_UPDATE_CHECK": "1",
        "NO_COLOR": "1",
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
    }


@pytest.mark.parametrize(
    "source",
    [
        "../../../../etc/passwd",
        "/etc/passwd",
        "file:///etc/passwd",
        "https://evil.example/x.js",
        "",
    ],
)
@guards("import:only-downloaded-code")
def test_a_bundle_with_code_from_outside_the_downloads_is_refused(
    tmp_path: Path, source: str
) -> None:
    job = BundleJob(subject="https://h/x.js", entry="m/0.js", workdir=tmp_path / "work")
    (tmp_path / "work" / "m").mkdir(parents=True)
    source_map = {"sources": ["m/0.js", "../deno/npm/registry/x/1.0.0/index.js", source]}
    with pytest.raises(ModuleError) as caught:
        check_sources(source_map, job, tmp_path / "deno", "https://jsr.io/")
    assert caught.value.code == "EACCES"
    check_sources({"sources": source_map["sources"][:2]}, job, tmp_path / "deno", "https://jsr.io/")
