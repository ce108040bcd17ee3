"""Joining the runner's ES modules into the one script each child runs."""

from __future__ import annotations

import re
import struct
from collections import Counter
from pathlib import Path

from sandbox_host import ROOT, RUNNER
from supervisor.sandbox.script import boot_message, join_modules

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


def test_the_joined_runner_holds_every_module_but_the_bootstrap_once() -> None:
    modules = sorted(
        path.name
        for path in ROOT.glob("*.js")
        if path.name not in {"bootstrap.js", "strip_helper.js"}
    )
    assert Counter(_HEADER.findall(join_modules(RUNNER))) == dict.fromkeys(modules, 1)


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


def test_the_boot_message_is_the_joined_runner_as_a_length_prefixed_async_script() -> None:
    message = boot_message(RUNNER)
    (length,) = struct.unpack(">I", message[:4])
    script = message[4:].decode("utf-8")
    assert length == len(message) - 4
    assert script.startswith("(async function () {")
    assert join_modules(RUNNER) in script
    assert "import.meta" not in script  # a script has no import.meta
