"""Download the official SQLite WebAssembly build from the npm registry and keep its sqlite3.wasm.

    python examples/sqlite/fetch_wasm.py [DESTINATION]     (default: ./sqlite3.wasm)

The tarball is checked against the integrity hash the registry publishes for
the pinned version (the same version sqlite.js imports), so a tampered
download is refused. Only the standard library and httpx (a dependency of
mcp-v8) are used; no Emscripten is needed anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
from pathlib import Path

import httpx

PACKAGE = "@sqlite.org/sqlite-wasm"
VERSION = "3.54.1-build1"  # keep in step with the import in sqlite.js
INTEGRITY = (
    "sha512-foW427VBLJ3G87bsnvQTZCc9zYe0Fq1wH0pz1I6B"
    "lKLKXcArIAyTkHtq0iT2llmhcMQt9T/p6l5PpQQh+6O8uQ=="
)
MEMBER = "package/dist/sqlite3.wasm"
REGISTRY = "https://registry.npmjs.org/"


def fetch_wasm(destination: Path, registry: str = REGISTRY) -> Path:
    """Write sqlite3.wasm to ``destination`` (kept if it is already there) and return it."""
    if destination.is_file():
        return destination
    tarball = f"{registry.rstrip('/')}/{PACKAGE}/-/sqlite-wasm-{VERSION}.tgz"
    data = httpx.get(tarball, follow_redirects=True, timeout=60).raise_for_status().content
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"{tarball} does not match the published integrity hash")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise SystemExit(f"{MEMBER} is missing from {tarball}")
        wasm = member.read()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.write_bytes(wasm)
    partial.replace(destination)
    return destination


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("sqlite3.wasm")
    print(fetch_wasm(target))
