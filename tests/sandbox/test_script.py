"""Joining the runner's ES modules into the one script each child runs."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import deno
import pytest

from sandbox_host import BOOTSTRAP, ROOT, RUNNER
from supervisor.sandbox.argv import child_env, deno_argv
from supervisor.sandbox.script import boot_message, join_modules, lazy_modules

# A static import or export statement at the start of a line; dynamic
# `import("...")` and `import.meta` are expressions and stay.
_STATIC_IMPORT = re.compile(r"^\s*import(?!\s*\()(?!\.meta)\b", re.MULTILINE)
_EXPORT = re.compile(r"^\s*export\b", re.MULTILINE)
_HEADER = re.compile(r"^// --- (\S+)$", re.MULTILINE)
_TOP_LEVEL_NAME = re.compile(
    r"^(?:async\s+)?(?:const|let|var|function\*?|class)\s+([A-Za-z_$][\w$]*)", re.MULTILINE
)


def test_the_joined_runner_has_no_import_or_export_statement() -> None:
    text = join_modules(RUNNER)
    assert _STATIC_IMPORT.findall(text) == []
    assert _EXPORT.findall(text) == []


def test_every_module_is_in_the_runner_once_or_loaded_lazily() -> None:
    modules = sorted(
        path.name
        for path in ROOT.glob("*.js")
        if path.name not in {"bootstrap.js", "strip_helper.js"}
    )
    lazy = lazy_modules(RUNNER)
    # What a `1 + 1` never uses is compiled only by the runs that do.
    assert sorted(lazy) == [
        "calls.js",
        "capabilities.js",
        "console.js",
        "modules.js",
        "repl.js",
        "snapshot.js",
        "timers.js",
    ]
    joined = Counter(_HEADER.findall(join_modules(RUNNER)))
    assert joined == dict.fromkeys(sorted(set(modules) - set(lazy)), 1)
    assert "function takeSnapshot" not in join_modules(RUNNER)
    assert "function brokeredFetch" not in join_modules(RUNNER)


def test_the_joined_runner_puts_dependencies_first_and_the_entry_last() -> None:
    order = _HEADER.findall(join_modules(RUNNER))
    assert order[-1] == "runner.js"
    assert order.index("wire.js") < order.index("channel.js")
    assert order.index("lazy.js") < order.index("runner.js")


def test_top_level_names_are_unique_across_the_joined_modules() -> None:
    names = Counter(_TOP_LEVEL_NAME.findall(join_modules(RUNNER)))
    assert [name for name, count in names.items() if count > 1] == []


def test_a_module_imported_twice_is_included_once(tmp_path: Path) -> None:
    (tmp_path / "base.js").write_text("export const BASE = 1;\n")
    (tmp_path / "left.js").write_text(
        'import { BASE } from "./base.js";\nexport function left() { return BASE; }\n'
    )
    (tmp_path / "right.js").write_text('import { BASE } from "./base.js";\nexport class Right {}\n')
    (tmp_path / "main.js").write_text(
        'import { left } from "./left.js";\n'
        'import {\n  Right,\n} from "./right.js";\n'
        'const x = await import("node:inspector");\n'
        "left(); new Right();\n"
    )
    text = join_modules(tmp_path / "main.js")
    assert _HEADER.findall(text) == ["base.js", "left.js", "right.js", "main.js"]
    assert _STATIC_IMPORT.findall(text) == []
    assert _EXPORT.findall(text) == []
    assert "const BASE = 1;" in text
    assert "function left()" in text
    assert 'await import("node:inspector")' in text


def test_the_boot_message_is_the_runner_script_then_the_lazy_modules() -> None:
    message = boot_message(RUNNER)
    (length,) = struct.unpack(">I", message[:4])
    script = message[4 : 4 + length].decode("utf-8")
    assert script.startswith("(async function (LAZY_SOURCES) {")
    assert join_modules(RUNNER) in script
    assert "import.meta" not in script  # a script has no import.meta
    (lazy_length,) = struct.unpack(">I", message[4 + length : 8 + length])
    assert len(message) == 8 + length + lazy_length
    assert json.loads(message[8 + length :]) == lazy_modules(RUNNER)


def test_a_lazy_module_becomes_a_script_returning_its_exports(tmp_path: Path) -> None:
    (tmp_path / "extra.js").write_text(
        "const hidden = 1;\nexport function shown() { return hidden; }\n"
        "export async function later() {}\nexport const VALUE = 2;\n"
    )
    (tmp_path / "main.js").write_text('const extra = lazyModule("extra.js");\n')
    assert _HEADER.findall(join_modules(tmp_path / "main.js")) == ["main.js"]
    script = lazy_modules(tmp_path / "main.js")["extra.js"]
    assert _EXPORT.findall(script) == []
    assert script.startswith("(function ({  }) {")
    assert script.rstrip().endswith("return { shown, later, VALUE };\n})")


def test_lazy_modules_get_their_imports_from_joined_and_lazy_modules(tmp_path: Path) -> None:
    # Run for real: the bootstrap evaluates the joined script, which compiles
    # `outer.js` on first use, which imports `inner.js` (lazy too) and `base.js`.
    shutil.copy(ROOT / "lazy.js", tmp_path / "lazy.js")
    (tmp_path / "base.js").write_text("export const BASE = 40;\n")
    (tmp_path / "inner.js").write_text(
        'import { BASE } from "./base.js";\nexport function inner() { return BASE + 1; }\n'
    )
    (tmp_path / "outer.js").write_text(
        'import { BASE } from "./base.js";\nimport { inner } from "./inner.js";\n'
        "export const total = () => `${BASE} ${inner() + 1}`;\n"
    )
    (tmp_path / "main.js").write_text(
        'import { lazyModule } from "./lazy.js";\nimport { BASE } from "./base.js";\n'
        'const outer = lazyModule("outer.js");\n'
        "const once = outer() === outer();\n"
        "Deno.stdout.writeSync(new TextEncoder().encode(`${BASE} ${outer().total()} ${once}`));\n"
    )
    assert _HEADER.findall(join_modules(tmp_path / "main.js")) == ["lazy.js", "base.js", "main.js"]
    assert list(lazy_modules(tmp_path / "main.js")) == ["inner.js", "outer.js"]
    argv = deno_argv(str(deno.find_deno_bin()), str(BOOTSTRAP), heap_memory_max_mb=8)
    done = subprocess.run(
        argv,
        input=boot_message(tmp_path / "main.js"),
        capture_output=True,
        env=child_env(),
        timeout=30,
        check=False,
    )
    assert done.stdout.decode() == "40 40 42 true", done.stderr.decode()


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (
            {"main.js": 'import { X } from "./extra.js";\nconst e = lazyModule("extra.js");\n'},
            r"extra\.js is both imported and loaded lazily",
        ),
        (
            {
                "main.js": 'const e = lazyModule("extra.js");\n',
                "extra.js": 'import { Y } from "./other.js";\nexport const X = 1;\n',
                "other.js": 'import { X } from "./extra.js";\nexport const Y = 1;\n',
            },
            r"lazily loaded modules import each other: extra\.js -> other\.js",
        ),
        (
            {"main.js": 'import { X as Y } from "./extra.js";\n'},
            r"main\.js renames an import from extra\.js",
        ),
    ],
)
def test_modules_that_cannot_be_joined_are_refused(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    (tmp_path / "extra.js").write_text("export const X = 1;\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=problem):
        boot_message(tmp_path / "main.js")


def test_the_bootstrap_has_no_top_level_comment() -> None:
    # Deno inspects a module's top-level comments for pragmas; the first one
    # costs every child ~0.5-0.9 ms of CPU (measured), comments in a block nothing.
    lines = (ROOT / "bootstrap.js").read_text().splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert all(line.startswith("  ") or line in ("{", "}") for line in lines)
