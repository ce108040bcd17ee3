"""Joining the runner's ES modules into the one script each child runs."""

from __future__ import annotations

import json
import re
import struct
from collections import Counter
from pathlib import Path

import pytest

from sandbox_host import ROOT, RUNNER
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
    assert list(lazy) == ["snapshot.js"]
    joined = Counter(_HEADER.findall(join_modules(RUNNER)))
    assert joined == dict.fromkeys(sorted(set(modules) - set(lazy)), 1)
    assert "function takeSnapshot" not in join_modules(RUNNER)


def test_the_joined_runner_puts_dependencies_first_and_the_entry_last() -> None:
    order = _HEADER.findall(join_modules(RUNNER))
    assert order[-1] == "runner.js"
    assert order.index("wire.js") < order.index("channel.js")
    assert order.index("render.js") < order.index("console.js")


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
    assert script.rstrip().endswith("return { shown, later, VALUE };\n})()")


def test_a_lazy_module_that_imports_is_refused(tmp_path: Path) -> None:
    (tmp_path / "base.js").write_text("export const BASE = 1;\n")
    (tmp_path / "extra.js").write_text(
        'import { BASE } from "./base.js";\nexport const X = BASE;\n'
    )
    (tmp_path / "main.js").write_text('const extra = lazyModule("extra.js");\n')
    with pytest.raises(ValueError, match=r"extra\.js is loaded lazily"):
        lazy_modules(tmp_path / "main.js")


def test_the_bootstrap_has_no_top_level_comment() -> None:
    # Deno inspects a module's top-level comments for pragmas; the first one
    # costs every child ~0.5-0.9 ms of CPU (measured), comments in a block nothing.
    lines = (ROOT / "bootstrap.js").read_text().splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert all(line.startswith("  ") or line in ("{", "}") for line in lines)
