"""Preloaded WebAssembly modules (``--wasm-module name=path``, ``--wasm-config``).

Each module is read and checked once at start-up. An execution receives the
bytes of the modules its code (or, when it resumes a heap, the functions it
restores) mentions by name, and compiles them only when first touched, so
executions that do not use a module do not pay for it.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import ConfigError

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_RESERVED = frozenset(
    [
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "import",
        "in",
        "instanceof",
        "new",
        "null",
        "return",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "let",
        "static",
        "implements",
        "interface",
        "package",
        "private",
        "protected",
        "public",
        "await",
        "arguments",
        "eval",
        "undefined",
        "NaN",
        "Infinity",
    ]
)
_MAGIC = b"\0asm\x01\0\0\0"

# Checks every module with the engine that will run it; no permission needed.
_VALIDATE = """
const head = new Uint8Array(4);
const chunks = [];
const buf = new Uint8Array(1 << 16);
for (;;) {
  const n = Deno.stdin.readSync(buf);
  if (n === null) break;
  chunks.push(buf.slice(0, n));
}
const all = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
let o = 0; for (const c of chunks) { all.set(c, o); o += c.length; }
const view = new DataView(all.buffer);
const out = [];
for (let at = 0; at < all.length;) {
  const size = view.getUint32(at); at += 4;
  const bytes = all.subarray(at, at + size); at += size;
  try {
    const mod = new WebAssembly.Module(bytes);
    out.push({ ok: true, imports: WebAssembly.Module.imports(mod).length });
  } catch (e) { out.push({ ok: false, error: String(e.message) }); }
}
console.log(JSON.stringify(out));
"""


@dataclass(frozen=True)
class WasmModule:
    """A module ready to hand to executions."""

    name: str
    path: Path
    data: bytes
    has_imports: bool

    def mentioned_in(self, text: str) -> bool:
        """Whether ``text`` names this module (as ``name`` or ``__wasm_name``)."""
        return re.search(rf"(?<![\w$]){re.escape(self.name)}(?![\w$])", text) is not None or (
            f"__wasm_{self.name}" in text
        )


def _entries(flags: tuple[str, ...], configs: tuple[Path, ...]) -> list[tuple[str, Path, str]]:
    entries: list[tuple[str, Path, str]] = []
    for flag in flags:
        name, sep, path = flag.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--wasm-module {flag!r}: expected name=path")
        entries.append((name, Path(path), "--wasm-module"))
    for config in configs:
        try:
            mapping = json.loads(config.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--wasm-config {config}: {exc}") from None
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ConfigError(f"--wasm-config {config}: expected an object of name to path")
        for name, path in mapping.items():
            resolved = Path(path) if Path(path).is_absolute() else config.parent / path
            entries.append((name, resolved, f"--wasm-config {config}"))
    return entries


def load_wasm_modules(
    flags: tuple[str, ...], configs: tuple[Path, ...], deno_path: str
) -> tuple[WasmModule, ...]:
    """Read, name-check and validate every preloaded module, or raise :class:`ConfigError`."""
    entries = _entries(flags, configs)
    if not entries:
        return ()
    seen: dict[str, str] = {}
    loaded: list[tuple[str, Path, bytes]] = []
    for name, path, source in entries:
        if not _IDENTIFIER.fullmatch(name) or name in _RESERVED:
            raise ConfigError(f"{source}: {name!r} is not a usable JavaScript identifier")
        if name in seen:
            raise ConfigError(f"wasm module {name!r} is defined twice ({seen[name]} and {source})")
        seen[name] = source
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
        if not data.startswith(_MAGIC):
            raise ConfigError(f"{source}: {path} is not a WebAssembly module (bad header)")
        loaded.append((name, path, data))
    payload = b"".join(struct.pack(">I", len(d)) + d for _, _, d in loaded)
    try:
        done = subprocess.run(
            [deno_path, "eval", "--no-config", _VALIDATE],
            input=payload,
            capture_output=True,
            timeout=60,
            env={"NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "DENO_DIR": "/dev/null/mcp-v8"},
            check=False,
        )
        results = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise ConfigError(f"cannot validate wasm modules with Deno: {exc}") from None
    modules = []
    for (name, path, data), result in zip(loaded, results, strict=True):
        if not result["ok"]:
            raise ConfigError(f"wasm module {name!r} ({path}) is invalid: {result['error']}")
        modules.append(WasmModule(name, path, data, result["imports"] > 0))
    return tuple(modules)
