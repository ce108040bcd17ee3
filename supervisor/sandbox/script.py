"""The runner each child evaluates: ``sandbox_host``'s modules joined into one script.

A child starts from the tiny ``bootstrap.js`` and receives this script first
on stdin: Deno analyses every module file it loads, and evaluating the runner
as a script skips that, ~2.5 ms of CPU per execution. The modules follow two
rules that make joining safe: they import only each other, by relative path,
and their top-level names are unique across files.

Parsing costs a child ~0.03 ms per KB, so modules most runs never use are not
in the script: a module that asks for ``lazyModule("name.js")`` (``lazy.js``)
gets a function returning that module's exports, and ``name.js`` travels
beside the script as text, compiled by the child on first use. A lazily
loaded module imports nothing.

The boot message: a big-endian u32 length and the script (an async function
expression taking ``LAZY_SOURCES``), then a u32 length and the lazily loaded
modules as JSON text (``{"name.js": "<script returning its exports>"}``).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

_IMPORT = re.compile(r'^import\s*\{[^}]*\}\s*from\s*"\./([\w.-]+)";\s*$', re.MULTILINE)
_EXPORT = re.compile(r"^export\s+(?=const|let|function|class|async)", re.MULTILINE)
_EXPORTED_NAME = re.compile(
    r"^export\s+(?:async\s+)?(?:const|let|function\*?|class)\s+([A-Za-z_$][\w$]*)", re.MULTILINE
)
_LAZY = re.compile(r'\blazyModule\("([\w.-]+)"\)')


def join_modules(entry: Path) -> str:
    """Return one script holding ``entry`` and the local modules it imports, dependencies first."""
    return _join(entry)[0]


def lazy_modules(entry: Path) -> dict[str, str]:
    """The modules ``entry``'s script loads lazily: file name to a script returning its exports."""
    return _lazy_scripts(entry, _join(entry)[1])


def _join(entry: Path) -> tuple[str, list[str]]:
    seen: set[Path] = set()
    parts: list[str] = []
    lazy: list[str] = []

    def visit(path: Path) -> None:
        if path in seen:
            return
        seen.add(path)
        source = path.read_text(encoding="utf-8")
        for name in _IMPORT.findall(source):
            visit(path.parent / name)
        lazy.extend(name for name in _LAZY.findall(source) if name not in lazy)
        body = _EXPORT.sub("", _IMPORT.sub("", source))
        parts.append(f"// --- {path.name}\n{body}")

    visit(entry)
    return "\n".join(parts), lazy


def _lazy_scripts(entry: Path, names: list[str]) -> dict[str, str]:
    return {name: _lazy_script(entry.parent / name) for name in names}


def _lazy_script(path: Path) -> str:
    source = path.read_text(encoding="utf-8")
    if _IMPORT.search(source):
        raise ValueError(f"{path.name} is loaded lazily, so it may not import anything")
    exports = ", ".join(_EXPORTED_NAME.findall(source))
    return f"(function () {{\n{_EXPORT.sub('', source)}\nreturn {{ {exports} }};\n}})()\n"


def boot_message(entry: Path) -> bytes:
    """What the supervisor writes to a new child's stdin before anything else."""
    # An async function, so the runner's top-level awaits keep working.
    joined, lazy_names = _join(entry)
    script = f"(async function (LAZY_SOURCES) {{\n{joined}\n}})\n".encode()
    lazy = json.dumps(_lazy_scripts(entry, lazy_names)).encode()
    return struct.pack(">I", len(script)) + script + struct.pack(">I", len(lazy)) + lazy
