"""The content-addressed module cache, shared by every execution and every server process.

Layout under ``cache_dir``::

    blobs/<sha256>         downloaded modules and finished bundles, named by their hash
    urls/<sha256(url)>     a download: the redirect chain, the blob, the content type
    bundles/<sha256(key)>  a bundle: its blob, its format, the imports to decide again
    deno/                  DENO_DIR of the bundler (npm tarballs, esbuild)
    tmp/                   one working directory per bundling, removed afterwards

Every file is written to a temporary name and renamed into place, so a
reader sees a whole file or none, and processes that race to write the same
entry both succeed. A blob is written before the index entry that names it,
and a blob whose bytes do not hash to its name is treated as missing: a torn
or tampered cache costs a rebuild, never a wrong module. Index entries carry
a version; an entry of another version, or one that is not valid JSON, is a
miss.

Working directories live here, not in the system temporary directory, so that
the bundler sees ``deno/`` at the same relative path from every one of them
and the paths it writes into bundle comments (``../../deno/npm/...``) are the
same on every machine: a bundle's bytes, and its hash, do not depend on
where the cache is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from supervisor.modules.models import BundleFormat

INDEX_VERSION = 1


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Download:
    """A downloaded module: ``chain`` is every URL from the one asked for to the final one."""

    chain: tuple[str, ...]
    sha256: str
    content_type: str

    @property
    def final_url(self) -> str:
        return self.chain[-1]


@dataclass(frozen=True)
class BundleEntry:
    """A finished bundle, and the (specifier, url) imports it was built from besides its own."""

    sha256: str
    format: BundleFormat
    decisions: tuple[tuple[str, str], ...]


class ModuleCache:
    """Blobs by hash, downloads by URL, bundles by key; all blocking, call from a thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.urls = self.root / "urls"
        self.bundles = self.root / "bundles"
        self.deno_dir = self.root / "deno"
        self.tmp = self.root / "tmp"

    def ensure(self) -> None:
        """Create the directories (idempotent)."""
        for directory in (self.blobs, self.urls, self.bundles, self.deno_dir, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)

    def read_blob(self, sha256: str) -> bytes | None:
        """The blob's bytes, or None if it is missing or its bytes do not match its name."""
        try:
            data = (self.blobs / sha256).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data if sha256_hex(data) == sha256 else None

    def write_blob(self, data: bytes) -> str:
        """Store ``data`` under its hash (once) and return the hash."""
        digest = sha256_hex(data)
        path = self.blobs / digest
        if self.read_blob(digest) is None:
            _atomic_write(path, data)
        return digest

    def read_download(self, url: str) -> Download | None:
        """What ``url`` last downloaded to, if its entry and blob are intact."""
        entry = self._read_index(self.urls, url)
        if entry is None:
            return None
        try:
            chain = tuple(str(u) for u in entry["chain"])
            download = Download(chain, str(entry["sha256"]), str(entry["content_type"]))
        except (KeyError, TypeError):
            return None
        return download if chain and chain[0] == url else None

    def write_download(self, download: Download) -> None:
        """Index ``download`` by the URL asked for (its blob must be written first)."""
        entry = {
            "chain": list(download.chain),
            "sha256": download.sha256,
            "content_type": download.content_type,
        }
        self._write_index(self.urls, download.chain[0], entry)

    def read_bundle(self, key: str) -> BundleEntry | None:
        """The bundle built for ``key``, if its entry is intact (the caller checks the blob)."""
        entry = self._read_index(self.bundles, key)
        if entry is None:
            return None
        try:
            fmt = entry["format"]
            if fmt not in ("cjs", "esm"):
                return None
            decisions = tuple((str(s), str(u)) for s, u in entry["decisions"])
            return BundleEntry(str(entry["sha256"]), cast(BundleFormat, fmt), decisions)
        except (KeyError, TypeError, ValueError):
            return None

    def write_bundle(self, key: str, bundle: BundleEntry) -> None:
        """Index ``bundle`` under ``key`` (its blob must be written first)."""
        entry = {
            "sha256": bundle.sha256,
            "format": bundle.format,
            "decisions": [list(pair) for pair in bundle.decisions],
        }
        self._write_index(self.bundles, key, entry)

    def make_workdir(self) -> Path:
        """A fresh, private working directory for one bundling."""
        self.ensure()
        return Path(tempfile.mkdtemp(prefix="bundle-", dir=self.tmp))

    @staticmethod
    def remove_workdir(path: Path) -> None:
        """Remove a working directory and everything in it."""
        shutil.rmtree(path, ignore_errors=True)

    def _read_index(self, directory: Path, name: str) -> dict[str, Any] | None:
        path = directory / sha256_hex(name.encode())
        try:
            value = json.loads(path.read_bytes())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        if not isinstance(value, dict) or value.get("version") != INDEX_VERSION:
            return None
        if value.get("name") != name:  # a hash collision, or a file put there by hand
            return None
        return value

    def _write_index(self, directory: Path, name: str, entry: dict[str, Any]) -> None:
        body = {"version": INDEX_VERSION, "name": name, **entry}
        _atomic_write(directory / sha256_hex(name.encode()), json.dumps(body).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
