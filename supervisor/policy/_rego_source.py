"""Rego source files: finding them, placing regopy's errors on a line, and checks before loading.

rego-cpp (regopy 1.5.2) is lenient or silent where OPA is strict, so a few mistakes are caught
here, from the text, with the file and line they are on:

- a call of a function that is neither a built-in of regopy nor defined in the modules (rego-cpp
  reports it only when evaluation reaches the call, so a guarded call would silently deny; and
  some OPA built-ins, such as ``net.cidr_contains``, are missing from regopy);
- ``print()``: rego-cpp writes its output to the process's stdout whatever the log level, which
  would corrupt an MCP stdio channel;
- two ``default`` values for one rule (rego-cpp's build fails without a position, and querying
  that failed build crashes the process);
- one function defined with two arities (rego-cpp's build crashes the process).

The checks read the text with comments and string literals blanked out; they are a net for
mistakes, not a Rego parser: anything they miss still fails closed at evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.errors import ConfigError

# Strings (plain and raw) and comments, blanked so the checks below see only code.
_NOISE = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|#[^\n]*')
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_][\w.]*)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w.]+)(?:[ \t]+as[ \t]+(\w+))?", re.M)
_DEFAULT = re.compile(r"^[ \t]*default[ \t]+([A-Za-z_][\w.]*)", re.M)
# A function head: ``f(x, y) := ...``, ``f(x) = v if``, ``f(x) if {``, ``default f(_) := v``.
_FUNCTION_HEAD = re.compile(
    r"^[ \t]*(?:default[ \t]+)?([A-Za-z_][\w.]*)\(([^()]*)\)[ \t]*(?::=|=(?!=)|if\b|\{|else\b)",
    re.M,
)
_CALL = re.compile(r"(?<![\w.$])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\(")
_KEYWORDS = frozenset(
    {"as", "contains", "default", "else", "every", "if", "import", "in", "not", "package"}
    | {"some", "with", "set", "true", "false", "null"}
)


@dataclass(frozen=True)
class RegoModule:
    """One Rego source file; ``path`` is also the module name regopy reports errors under."""

    path: str
    source: str
    _code: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        blank = _NOISE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), self.source)
        object.__setattr__(self, "_code", blank)

    @property
    def code(self) -> str:
        """The source with comments and string literals blanked (same lines and columns)."""
        return self._code

    @property
    def package(self) -> str | None:
        """The module's package (``mcp.fetch``), or None without a package line."""
        match = _PACKAGE.search(self._code)
        return match.group(1) if match else None

    def line_of(self, index: int) -> int:
        """1-based line of a character index into the source."""
        return self.source.count("\n", 0, index) + 1

    def position_of_byte(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a UTF-8 byte offset, as regopy's errors give them."""
        before = self.source.encode("utf-8")[:offset].decode("utf-8", errors="replace")
        return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def collect_modules(path: Path, *, include_tests: bool = False) -> tuple[RegoModule, ...]:
    """Read a ``.rego`` file, or every ``*.rego`` under a directory (recursively).

    ``*_test.rego`` files in a directory are skipped unless ``include_tests``: they are for the
    test runner, not for the server. Raises :class:`ConfigError` naming the file.
    """
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*.rego")
            if p.is_file() and (include_tests or not p.name.endswith("_test.rego"))
        )
        if not files:
            raise ConfigError(f"Rego policy directory {path} holds no .rego files")
    elif path.exists():
        files = [path]
    else:
        raise ConfigError(f"Rego policy {path} does not exist")
    modules = []
    for file in files:
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Rego policy {file} cannot be read: {exc}") from None
        modules.append(RegoModule(str(file.absolute()), source))
    return tuple(modules)


def check_modules(
    modules: Sequence[RegoModule],
    packages: Iterable[str],
    is_builtin: Callable[[str], bool],
    *,
    source_name: str,
) -> None:
    """Reject what rego-cpp would accept silently or crash on; see the module docstring.

    ``packages`` are the packages the caller will query (``mcp.fetch``): each must be declared.
    """
    for module in modules:
        if module.package is None:
            raise ConfigError(f"cannot load Rego policy {module.path}:1: no package declaration")
    declared = {m.package for m in modules}
    for package in packages:
        if package not in declared:
            raise ConfigError(
                f"Rego policy {source_name} is configured for {package.rsplit('.', 1)[-1]} "
                f"but none of its modules declares package {package}"
            )
    _check_defaults_and_arities(modules)
    _check_calls(modules, is_builtin)


def _check_defaults_and_arities(modules: Sequence[RegoModule]) -> None:
    defaults: dict[tuple[str | None, str], str] = {}
    arities: dict[tuple[str | None, str], tuple[int, str]] = {}
    for module in modules:
        for match in _DEFAULT.finditer(module.code):
            key = (module.package, match.group(1))
            where = f"{module.path}:{module.line_of(match.start(1))}"
            if key in defaults:
                raise ConfigError(
                    f"cannot load Rego policy {where}: a second default for "
                    f"{match.group(1)} (the first is at {defaults[key]})"
                )
            defaults[key] = where
        for match in _FUNCTION_HEAD.finditer(module.code):
            key = (module.package, match.group(1))
            arity = _arity(match.group(2))
            where = f"{module.path}:{module.line_of(match.start(1))}"
            first = arities.setdefault(key, (arity, where))
            if first[0] != arity:
                raise ConfigError(
                    f"cannot load Rego policy {where}: function {match.group(1)} takes "
                    f"{arity} argument(s) here but {first[0]} at {first[1]}"
                )


def _check_calls(modules: Sequence[RegoModule], is_builtin: Callable[[str], bool]) -> None:
    defined = {m.group(1) for module in modules for m in _FUNCTION_HEAD.finditer(module.code)}
    for module in modules:
        aliases = {"data", "input"}
        for match in _IMPORT.finditer(module.code):
            aliases.add(match.group(2) or match.group(1).rsplit(".", 1)[-1])
        for match in _CALL.finditer(module.code):
            name = match.group(1)
            if name in _KEYWORDS or name in defined or name.split(".", 1)[0] in aliases:
                continue
            where = f"{module.path}:{module.line_of(match.start(1))}"
            if name == "print":
                raise ConfigError(
                    f"cannot load Rego policy {where}: print() is not allowed "
                    "(regopy writes its output to the server's stdout)"
                )
            if not is_builtin(name):
                raise ConfigError(
                    f"cannot load Rego policy {where}: {name}() is neither a built-in of "
                    "regopy nor a function defined in the policy"
                )


def _arity(arguments: str) -> int:
    if not arguments.strip():
        return 0
    depth, count = 0, 1
    for char in arguments:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            count += 1
    return count


def locate_call(modules: Sequence[RegoModule], name: str) -> str | None:
    """``path:line`` of the first call of ``name`` in the modules, if there is one."""
    call = re.compile(rf"(?<![\w.$]){re.escape(name)}\(")
    for module in modules:
        match = call.search(module.code)
        if match:
            return f"{module.path}:{module.line_of(match.start())}"
    return None


def locate_rule(modules: Sequence[RegoModule], ref: str) -> str | None:
    """``path:line`` of the first definition of the rule ``data.<package>.<rule>``."""
    package, _, rule = ref.removeprefix("data.").rpartition(".")
    head = re.compile(rf"^[ \t]*(?:default[ \t]+)?{re.escape(rule)}\b", re.M)
    for module in modules:
        if module.package == package:
            match = head.search(module.code)
            if match:
                return f"{module.path}:{module.line_of(match.start())}"
    return None


def describe_load_error(text: str, modules: Sequence[RegoModule]) -> str:
    """Turn regopy's S-expression error text into ``path:line:column: message`` lines.

    regopy reports a parse error as ``(error <n>:<module name>|<byte offset>|<length>
    (errormsg <n>:<message>) ...)``, lengths in UTF-8 bytes.
    """
    raw = text.encode("utf-8")
    by_name = {module.path.encode("utf-8"): module for module in modules}
    described = []
    for error in raw.split(b"(error ")[1:]:
        where = "unknown position"
        name = _length_prefixed(error)
        if name is not None and name in by_name:
            offset = re.match(rb"\|(\d+)\|", error[error.index(b":") + 1 + len(name) :])
            if offset:
                line, column = by_name[name].position_of_byte(int(offset.group(1)))
                where = f"{by_name[name].path}:{line}:{column}"
            else:
                where = by_name[name].path
        message = b"error"
        start = error.find(b"(errormsg ")
        if start >= 0:
            message = _length_prefixed(error[start + len(b"(errormsg ") :]) or message
        described.append(f"{where}: {message.decode('utf-8', errors='replace')}")
    return "; ".join(described) or text.strip()


def error_message(text: str) -> str:
    """The first ``errormsg`` of a regopy error text, or the text itself."""
    raw = text.encode("utf-8")
    start = raw.find(b"(errormsg ")
    if start < 0:
        return text.strip()[:200]
    message = _length_prefixed(raw[start + len(b"(errormsg ") :])
    return message.decode("utf-8", errors="replace") if message else text.strip()[:200]


def _length_prefixed(chunk: bytes) -> bytes | None:
    """``<n>:<n bytes>`` at the start of ``chunk``: the n bytes."""
    match = re.match(rb"(\d+):", chunk)
    if not match:
        return None
    start = match.end()
    return chunk[start : start + int(match.group(1))]
