"""TypeScript type stripping: the helper's command line, and stripping through real Deno."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import deno
import pytest

import supervisor.typescript
from supervisor.errors import InvalidRequest, SandboxUnavailable
from supervisor.typescript import (
    AMARO_INTEGRITY,
    AMARO_VERSION,
    HELPER,
    LEXER_INTEGRITY,
    LEXER_VERSION,
    LOG_NAME,
    TypeStripper,
    format_failure,
    lockfile_text,
    needs_helper,
    strip_helper_argv,
    strip_helper_env,
)

DENO = str(deno.find_deno_bin())
ANNOTATED = "let a: number = 1"
STRIPPED = "let a         = 1"
WAIT_BOUND_S = 60.0


# --- the command line and environment (no Deno needed) -----------------------------------


def test_the_helper_gets_no_permission_at_all() -> None:
    args = strip_helper_argv("/usr/bin/deno", "/data/ts-cache")
    assert args[:2] == ["/usr/bin/deno", "run"]
    assert args[-1] == str(HELPER)
    assert [a for a in args if a.startswith(("--allow", "-A", "--unsafely", "--unstable"))] == []


def test_the_helper_refuses_url_imports_and_pins_amaro_with_a_frozen_lock() -> None:
    args = strip_helper_argv("/usr/bin/deno", "/data/ts-cache")
    assert {"--no-prompt", "--no-config", "--no-remote", "--frozen"} <= set(args)
    locks = [a for a in args if a.startswith("--lock=")]
    assert len(locks) == 1
    assert Path(locks[0].removeprefix("--lock=")).parent == Path("/data/ts-cache")


def test_the_helper_environment_is_its_cache_and_the_way_to_the_registry() -> None:
    parent = {
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "NPM_TOKEN": "secret",
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
        "DENO_DIR": "/elsewhere",
    }
    env = strip_helper_env("/data/ts-cache", parent)
    assert env == {
        "DENO_DIR": "/data/ts-cache",
        "DENO_NO_UPDATE_CHECK": "1",
        "NO_COLOR": "1",
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
    }


@pytest.mark.parametrize(
    "code",
    [
        "let x: number = 1",
        "f<string>(x)",
        "let y = <T>x",
        "x!.y",
        "x as T",
        "x satisfies T",
        "enum E { A }",
        "interface I {}",
        "type T = 1",
        "namespace N {}",
        "module M {}",
        "declare const x",
        "abstract class A {}",
        "class A implements B {}",
        "class A { private x = 1 }",
        "class A { readonly x = 1 }",
        "class A { override m() {} }",
        "function f(a?) {}",
        "@dec class A {}",
        "import x from 'y'",
        "await import('y')",
        ANNOTATED,
    ],
)
def test_anything_that_may_be_typescript_or_import_goes_to_the_helper(code: str) -> None:
    assert needs_helper(code)


@pytest.mark.parametrize(
    "code",
    [
        "1 + 1",
        "Math.max(1, 2) * 3",
        "[1, 2].map((x) => x * 2)",
        "let total = 0; for (const n of [1, 2]) total += n; total",
        "`${1 + 1}`",
        "await Promise.resolve(1)",
    ],
)
def test_plain_javascript_without_types_or_imports_skips_the_helper(code: str) -> None:
    assert not needs_helper(code)


def test_the_helper_imports_exactly_the_pinned_amaro_and_lexer_versions() -> None:
    source = HELPER.read_text(encoding="utf-8")
    assert re.findall(r'from "npm:amaro@([^"]+)"', source) == [AMARO_VERSION]
    assert re.findall(r'from "npm:es-module-lexer@([^"]+)"', source) == [LEXER_VERSION]
    assert f'AMARO_VERSION = "{AMARO_VERSION}"' in source
    lock = json.loads(lockfile_text())
    assert lock["specifiers"] == {
        f"npm:amaro@{AMARO_VERSION}": AMARO_VERSION,
        f"npm:es-module-lexer@{LEXER_VERSION}": LEXER_VERSION,
    }
    assert lock["npm"][f"amaro@{AMARO_VERSION}"]["integrity"] == AMARO_INTEGRITY
    assert lock["npm"][f"es-module-lexer@{LEXER_VERSION}"]["integrity"] == LEXER_INTEGRITY


def test_failures_name_the_construct_or_the_syntax_error_with_line_and_column() -> None:
    unsupported = {
        "kind": "unsupported",
        "message": "TypeScript parameter property is not supported in strip-only mode",
        "line": 2,
        "column": 22,
        "construct": "parameter property",
        "hint": "declare the field in the class body and assign it in the constructor",
    }
    assert format_failure(unsupported) == (
        "TypeScript: parameter property needs transformation (line 2, column 22); "
        "declare the field in the class body and assign it in the constructor"
    )
    syntax = {"kind": "syntax", "message": "Expression expected", "line": 1, "column": 17}
    assert format_failure(syntax) == (
        "TypeScript: syntax error at line 1, column 17: Expression expected"
    )


# --- real Deno --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def stripper(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TypeStripper]:
    """One warm helper shared by the module, as the engine would share it."""
    ts = TypeStripper(DENO, tmp_path_factory.mktemp("ts-cache"))
    with anyio.fail_after(WAIT_BOUND_S):
        await ts.start()
    yield ts
    await ts.aclose()


def evaluate(js: str) -> object:
    """The completion value of ``js`` as a sloppy script in a plain Deno, as JSON."""
    script = f"console.log(JSON.stringify((0, eval)({json.dumps(js)})))"
    done = subprocess.run(
        [DENO, "eval", "--no-config", "--no-remote", "--no-npm", script],
        capture_output=True,
        text=True,
        timeout=WAIT_BOUND_S,
        env={"NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "PATH": os.environ.get("PATH", "")},
        check=True,
    )
    return json.loads(done.stdout)


def positions(text: str, word: str) -> list[tuple[int, int]]:
    """(line, column) of every occurrence of ``word``."""
    return [
        (number, match.start())
        for number, line in enumerate(text.splitlines(), 1)
        for match in re.finditer(rf"\b{word}\b", line)
    ]


pytestmark = pytest.mark.anyio


@pytest.mark.deno
async def test_an_annotated_cell_strips_to_javascript_with_the_same_completion(
    stripper: TypeStripper,
) -> None:
    ts = "let x: number = 1; x + 1"
    js = await stripper.strip(ts)
    assert js == "let x         = 1; x + 1"
    assert evaluate(js) == 2


@pytest.mark.deno
async def test_stripping_keeps_every_line_and_column(stripper: TypeStripper) -> None:
    ts = (
        "interface Point {\n"
        "  x: number;\n"
        "  y: number;\n"
        "}\n"
        "type Pair<T> = [T, T];\n"
        "function make<T extends object>(p: T, extra?: Pair<number>): T { return p; }\n"
        "const p: Point = make<Point>({ x: 1, y: 2 }) as Point;\n"
        "const q = p satisfies Point; foo(q!);\n"
        "  foo(p as unknown as string, <const T,>(t: T) => t);\n"
    )
    js = await stripper.strip(ts)
    assert js.count("\n") == ts.count("\n")
    assert len(js) == len(ts)
    assert positions(js, "foo") == positions(ts, "foo") == [(8, 29), (9, 2)]
    assert positions(js, "make") == positions(ts, "make")


@pytest.mark.deno
@pytest.mark.parametrize(
    ("ts", "completion"),
    [
        ("interface I { a: number }\nconst i: I = { a: 1 };\ni.a", 1),
        ("type Id = string | number;\nlet id: Id = 'x';\nid", "x"),
        ("function first<T>(xs: T[]): T { return xs[0]; }\nfirst<number>([3, 4])", 3),
        ("const n = ('5' as unknown as string).length;\nn", 1),
        ("function greet(name?: string): string { return name ?? 'you'; }\ngreet()", "you"),
        ("const cfg = { port: 80 } satisfies Record<string, number>;\ncfg.port", 80),
        ("const m = new Map<string, number>([['a', 2]]);\nm.get('a')! * 2", 4),
        ("let late!: number;\nlate = 7;\nlate", 7),
        ("abstract class A { abstract f(): void; protected z?: number }\ntypeof A", "function"),
        ("declare const d: number;\ndeclare global { interface Window { w: 1 } }\n'ok'", "ok"),
        ("import type { X } from 'npm:nothing';\nconst k = 1 as const;\nk", 1),
        ("function f(this: unknown, a: number): number;\nfunction f(a: any) { return a; }\n9", 9),
    ],
)
async def test_typescript_only_syntax_is_stripped(
    stripper: TypeStripper, ts: str, completion: object
) -> None:
    js = await stripper.strip(ts)
    assert js.count("\n") == ts.count("\n")
    assert evaluate(js) == completion


@pytest.mark.deno
async def test_an_enum_is_transformed_in_place_and_later_lines_do_not_move(
    stripper: TypeStripper,
) -> None:
    ts = (
        "let before: number = 1\n"
        "const enum Color {\n"
        "  Red, // the first\n"
        "  Green = 'http://green',\n"
        "} let after: string = 'x';\n"
        "enum Size { S = 1, L = S * 10 }\n"
        "[Color.Red, Color.Green, Color[0], Size.L, before, after]\n"
        "  foo\n"
    )
    js = await stripper.strip(ts)
    assert js.count("\n") == ts.count("\n")
    assert positions(js, "foo") == positions(ts, "foo") == [(8, 2)]
    assert positions(js, "after") == positions(ts, "after")
    assert evaluate(js.replace("  foo\n", "")) == [0, "http://green", "Red", 10, 1, "x"]


@pytest.mark.deno
async def test_a_namespace_is_transformed_in_place(stripper: TypeStripper) -> None:
    ts = "let a = 2\nnamespace Geo.Units {\n  export const km: number = 1000 * a;\n}\nGeo.Units.km"
    js = await stripper.strip(ts)
    assert js.count("\n") == ts.count("\n")
    assert evaluate(js) == 2000


@pytest.mark.deno
async def test_an_exported_namespace_is_transformed_with_its_export_and_guarded_against_asi(
    stripper: TypeStripper,
) -> None:
    ts = "let a = f\nexport namespace N {\n  export const x: number = 1;\n}\nlet b = 2"
    js = await stripper.strip(ts)
    lines = js.split("\n")
    assert len(lines) == 5
    assert lines[0] == "let a = f"
    assert lines[1].startswith(";(function(N)")
    assert lines[1].endswith("export var N;")
    assert lines[4] == "let b = 2"


@pytest.mark.deno
async def test_a_construct_that_needs_the_whole_class_transformed_is_refused_by_name_and_line(
    stripper: TypeStripper,
) -> None:
    ts = "let a = 1;\nclass P {\n  constructor(public x: number) {}\n}\nnew P(1).x"
    with pytest.raises(InvalidRequest) as caught:
        await stripper.strip(ts)
    assert caught.value.message.startswith(
        "TypeScript: parameter property needs transformation (line 3, column 22)"
    )


@pytest.mark.deno
async def test_angle_bracket_casts_are_refused_with_their_line(stripper: TypeStripper) -> None:
    ts = "let v: any = 1;\nlet w = <number>v;"
    with pytest.raises(InvalidRequest, match=r"`expr as T`.*\(line 2, column 9\)"):
        await stripper.strip(ts)


@pytest.mark.deno
@pytest.mark.parametrize(
    ("ts", "where"),
    [
        ("let x: number = ;", "line 1, column 17"),
        ("let a = 1;\nlet b: string = (;\n", "line 2, column 18"),
        ("let é: string = '中😀'; let y = (;", "line 1, column 33"),  # UTF-16 columns
    ],
)
async def test_a_syntax_error_names_its_line_and_column(
    stripper: TypeStripper, ts: str, where: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await stripper.strip(ts)
    assert caught.value.message.startswith(f"TypeScript: syntax error at {where}: ")


@pytest.mark.deno
@pytest.mark.parametrize(
    "js",
    [
        "1 + 1",
        "",
        "const o = { a: 1, b: [1, 2] }; // comment\no.a ? o.b : null",
        "let s = `a ${1 + 2} b`;\n/* block */ s.replace(/a|b/g, (m) => m.toUpperCase())",
        "let é = '中😀';\r\nconst f = async (x = 1) => { await null; return x; };\nf()",
        "class A { #p = 1; static s = 2; get p() { return this.#p; } }\nnew A().p",
        "label: for (const x of [1]) { if (x) break label; }\nnull",
        "with (Math) max(1, 2)",  # sloppy-only JavaScript that TypeScript's parser refuses
        "010 + 1",
    ],
)
async def test_plain_javascript_passes_through_unchanged(stripper: TypeStripper, js: str) -> None:
    assert await stripper.strip(js) == js


@pytest.mark.deno
async def test_top_level_await_with_type_arguments_is_kept(stripper: TypeStripper) -> None:
    ts = "async function foo<T>(): Promise<T[]> { return []; }\nconst r = await foo<string>();\nr"
    js = await stripper.strip(ts)
    assert js.splitlines()[1] == "const r = await foo        ();"
    assert positions(js, "await") == positions(ts, "await")


@pytest.mark.deno
# --- imports: what the sandbox loads before a cell, and a module's dependencies -------------


async def test_a_cells_static_imports_are_described_and_blanked_in_place(
    stripper: TypeStripper,
) -> None:
    code = (
        'import _, { a as b, "x y" as c } from "npm:lodash-es@4.17.21";\n'
        "import * as ns from 'https://example.test/m.ts' // why\n"
        'import type { T } from "./types.ts";\n'
        'import "npm:side-effect";\n'
        "const n: number = 1; n"
    )
    prepared = await stripper.prepare(code)
    assert [(i.specifier, i.default, i.namespace, i.named) for i in prepared.imports] == [
        ("npm:lodash-es@4.17.21", "_", None, (("a", "b"), ("x y", "c"))),
        ("https://example.test/m.ts", None, "ns", ()),
        ("npm:side-effect", None, None, ()),
    ]
    lines = prepared.code.split("\n")
    assert len(lines) == len(code.split("\n"))
    assert lines[0].strip() in ("", ";") and lines[2].strip() == ""
    assert lines[1].strip() == "// why"
    assert evaluate(prepared.code) == 1


async def test_dynamic_import_goes_to_the_sandbox_loader_with_columns_kept(
    stripper: TypeStripper,
) -> None:
    code = 'const m = await import("npm:zod"); const s = "import(\'no\')"; m'
    prepared = await stripper.prepare(code)
    assert prepared.imports == ()
    assert prepared.code == code.replace('import("npm:zod")', '__mcpi("npm:zod")')


async def test_an_import_clause_that_cannot_be_read_is_refused(stripper: TypeStripper) -> None:
    with pytest.raises(InvalidRequest):
        await stripper.prepare('import { a as } from "x"')


async def test_a_module_gets_absolute_specifiers_and_lists_its_dependencies(
    stripper: TypeStripper,
) -> None:
    source = (
        'import { b } from "./b.ts"; export * from "../c.js";\n'
        "const x: number = 1; export default await import('./d.js');\n"
        'import type { T } from "./t.ts"; import "npm:y"; export { x };'
    )
    prepared = await stripper.prepare_module(source, "http://127.0.0.1:9/a/m.ts", typescript=True)
    assert prepared.dependencies == (
        "http://127.0.0.1:9/a/b.ts",
        "http://127.0.0.1:9/c.js",
        "http://127.0.0.1:9/a/d.js",
        "npm:y",
    )
    assert 'from "http://127.0.0.1:9/a/b.ts"' in prepared.code
    assert 'import("http://127.0.0.1:9/a/d.js")' in prepared.code
    assert ": number" not in prepared.code


async def test_a_module_that_does_not_parse_is_refused_naming_its_url(
    stripper: TypeStripper,
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape("http://127.0.0.1:9/bad.js")):
        await stripper.prepare_module(
            "export const a = `unterminated", "http://127.0.0.1:9/bad.js", typescript=False
        )


async def test_concurrent_strips_each_get_their_own_result(stripper: TypeStripper) -> None:
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        results[i] = await stripper.strip(f"let v{i}: Array<number> = [{i}]; v{i}")

    with anyio.fail_after(WAIT_BOUND_S):
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert results == {i: f"let v{i}                = [{i}]; v{i}" for i in range(200)}


@pytest.mark.deno
async def test_a_helper_that_died_is_restarted(tmp_path: Path) -> None:
    ts = TypeStripper(DENO, tmp_path)
    try:
        with anyio.fail_after(WAIT_BOUND_S):
            await ts.start()
            first = ts.pid
            assert first is not None
            os.killpg(first, signal.SIGKILL)
            assert await ts.strip(ANNOTATED) == STRIPPED
            assert ts.pid not in (None, first)
    finally:
        await ts.aclose()


@pytest.mark.deno
async def test_a_helper_that_does_not_answer_is_killed_and_replaced(tmp_path: Path) -> None:
    ts = TypeStripper(DENO, tmp_path, timeout_s=0.5)
    try:
        with anyio.fail_after(WAIT_BOUND_S):
            await ts.start()
            stuck = ts.pid
            assert stuck is not None
            os.killpg(stuck, signal.SIGSTOP)
            with pytest.raises(SandboxUnavailable, match=r"did not answer within 0\.5 s"):
                await ts.strip(ANNOTATED)
            assert await ts.strip(ANNOTATED) == STRIPPED
            assert ts.pid != stuck
    finally:
        await ts.aclose()
    with pytest.raises(ProcessLookupError):
        os.killpg(stuck, 0)


@pytest.mark.deno
async def test_closing_stops_the_helper_and_later_strips_fail(tmp_path: Path) -> None:
    ts = TypeStripper(DENO, tmp_path)
    with anyio.fail_after(WAIT_BOUND_S):
        await ts.start()
    pid = ts.pid
    assert pid is not None
    await ts.aclose()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with pytest.raises(SandboxUnavailable, match="closed"):
        await ts.strip("1")


@pytest.mark.deno
async def test_a_second_start_loads_amaro_from_the_cache_without_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(WAIT_BOUND_S):
        warm = TypeStripper(DENO, tmp_path)
        await warm.start()
        await warm.aclose()
        # Any connection would now fail: a proxy nobody listens on.
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        cached = TypeStripper(DENO, tmp_path)
        try:
            await cached.start()
            assert cached.amaro_version == AMARO_VERSION
        finally:
            await cached.aclose()


@pytest.mark.deno
async def test_a_helper_that_cannot_download_amaro_fails_to_start_with_deno_s_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9/")
    ts = TypeStripper(DENO, tmp_path)
    with anyio.fail_after(WAIT_BOUND_S), pytest.raises(SandboxUnavailable) as caught:
        await ts.start()
    assert "exited while starting" in caught.value.message
    assert "amaro" in caught.value.message
    # Within retry_after_s, requests fail at once instead of trying again.
    (tmp_path / LOG_NAME).unlink()
    with pytest.raises(SandboxUnavailable) as again:
        await ts.strip(ANNOTATED)
    assert again.value.message == caught.value.message
    assert not (tmp_path / LOG_NAME).exists()
    await ts.aclose()


@pytest.mark.deno
async def test_a_tarball_that_does_not_match_the_pinned_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor.typescript, "AMARO_INTEGRITY", "sha512-" + "A" * 86 + "==")
    ts = TypeStripper(DENO, tmp_path)
    with anyio.fail_after(WAIT_BOUND_S), pytest.raises(SandboxUnavailable) as caught:
        await ts.start()
    assert "checksum" in caught.value.message
    await ts.aclose()


async def test_an_unusable_cache_directory_is_reported(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    ts = TypeStripper(DENO, occupied / "cache")
    with pytest.raises(SandboxUnavailable, match=r"cache directory .* is not usable"):
        await ts.start()


async def test_a_missing_deno_binary_is_reported(tmp_path: Path) -> None:
    ts = TypeStripper(str(tmp_path / "no-deno"), tmp_path)
    with pytest.raises(SandboxUnavailable, match="cannot start the TypeScript stripper"):
        await ts.start()
