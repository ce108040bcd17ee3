"""The runner each child evaluates: ``sandbox_host``'s modules joined into one script.

A child starts from the tiny ``bootstrap.js`` and receives this script first
on stdin: Deno analyses every module file it loads, and evaluating the runner
as a script skips that, ~2.5 ms of CPU per execution. The modules follow two
rules that make joining safe: they import only each other, by relative path
and without renaming, and their top-level names are unique across files.

Parsing costs a child ~0.03 ms per KB, so modules most runs never use are not
in the script: a module that asks for ``lazyModule("name.js")`` (``lazy.js``)
gets a function returning that module's exports, and ``name.js`` travels
beside the script as text, compiled by the child on first use. A lazily
loaded module may import from the joined modules and from other lazily
loaded ones: it becomes a function taking its imports as one object, and the
joined script starts with ``LAZY_IMPORTS``, which builds that object for each.

The boot message: a big-endian u32 length and the script (an async function
expression taking ``LAZY_SOURCES``), then a u32 length and the lazily loaded
modules as JSON text (``{"name.js": "<function expression>"}``).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"\./([\w.-]+)";\s*$', re.MULTILINE)
_EXPORT = re.compile(r"^export\s+(?=const|let|function|class|async)", re.MULTILINE)
_EXPORTED_NAME = re.compile(
    r"^export\s+(?:async\s+)?(?:const|let|function\*?|class)\s+([A-Za-z_$][\w$]*)", re.MULTILINE
)
_LAZY = re.compile(r'\blazyModule\("([\w.-]+)"\)')
_NAME = re.compile(r"^[A-Za-z_$][\w$]*$")


@dataclass
class _Plan:
    """What goes into the script and what beside it, in dependency order."""

    joined: list[Path] = field(default_factory=list)
    lazy: list[Path] = field(default_factory=list)
    # module file name -> [(imported names, module file name)], and -> its text
    imports: dict[str, list[tuple[list[str], str]]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def join_modules(entry: Path) -> str:
    """Return one script holding ``entry`` and the local modules it imports, dependencies first."""
    return _script_body(_plan(entry))


def lazy_modules(entry: Path) -> dict[str, str]:
    """The modules ``entry``'s script loads lazily: file name to a function expression."""
    plan = _plan(entry)
    return {path.name: _lazy_function(path, plan) for path in plan.lazy}


def boot_message(entry: Path) -> bytes:
    """What the supervisor writes to a new child's stdin before anything else."""
    plan = _plan(entry)
    # An async function, so the runner's top-level awaits keep working.
    script = f"(async function (LAZY_SOURCES) {{\n{_script_body(plan)}\n}})\n".encode()
    lazy = json.dumps({path.name: _lazy_function(path, plan) for path in plan.lazy}).encode()
    return struct.pack(">I", len(script)) + script + struct.pack(">I", len(lazy)) + lazy


def _imports(path: Path, source: str) -> list[tuple[list[str], str]]:
    found = []
    for names_text, module in _IMPORT.findall(source):
        names = [name.strip() for name in names_text.split(",") if name.strip()]
        if not all(_NAME.match(name) for name in names):
            raise ValueError(f"{path.name} renames an import from {module}; joined modules cannot")
        found.append((names, module))
    return found


def _plan(entry: Path) -> _Plan:
    plan = _Plan()
    wanted_lazily: list[str] = []

    def read(path: Path) -> None:
        if path.name not in plan.sources:
            source = path.read_text(encoding="utf-8")
            plan.sources[path.name] = source
            plan.imports[path.name] = _imports(path, source)
            wanted_lazily.extend(_LAZY.findall(source))

    seen: set[Path] = set()

    def visit(path: Path) -> None:
        if path in seen:
            return
        seen.add(path)
        read(path)
        for _names, module in plan.imports[path.name]:
            visit(path.parent / module)
        plan.joined.append(path)

    visit(entry)
    joined = {path.name for path in plan.joined}
    loading: list[str] = []

    def visit_lazy(name: str) -> None:
        path = entry.parent / name
        if name in joined:
            raise ValueError(f"{name} is both imported and loaded lazily")
        if path in plan.lazy:
            return
        if name in loading:
            raise ValueError(f"lazily loaded modules import each other: {' -> '.join(loading)}")
        loading.append(name)
        read(path)
        for _names, module in plan.imports[name]:
            if module not in joined:
                visit_lazy(module)
        loading.pop()
        plan.lazy.append(path)

    while wanted_lazily:
        visit_lazy(wanted_lazily.pop(0))
    return plan


def _strip(source: str) -> str:
    return _EXPORT.sub("", _IMPORT.sub("", source))


def _script_body(plan: _Plan) -> str:
    joined = {path.name for path in plan.joined}
    table = []
    for path in plan.lazy:
        bindings = []
        for names, module in plan.imports[path.name]:
            for name in names:
                if module in joined:
                    bindings.append(name)
                else:
                    bindings.append(f'{name}: lazyModule("{module}")().{name}')
        table.append(f'  "{path.name}": () => ({{ {", ".join(bindings)} }}),')
    parts = [
        "// --- imports of the lazily loaded modules\n"
        "const LAZY_IMPORTS = {\n" + "".join(f"{row}\n" for row in table) + "};"
    ]
    parts.extend(f"// --- {path.name}\n{_strip(plan.sources[path.name])}" for path in plan.joined)
    return "\n".join(parts)


def _lazy_function(path: Path, plan: _Plan) -> str:
    names = [name for names, _module in plan.imports[path.name] for name in names]
    source = plan.sources[path.name]
    exports = ", ".join(_EXPORTED_NAME.findall(source))
    return (
        f"(function ({{ {', '.join(names)} }}) {{\n{_strip(source)}\nreturn {{ {exports} }};\n}})\n"
    )
