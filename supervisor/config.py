"""One frozen settings tree, built once by the CLI and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024

# What a trusted Deno helper may need from the server's environment to reach a
# package registry: a proxy, an extra CA. Nothing else (no HOME, no token).
REGISTRY_ENV_PASSTHROUGH = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "NODE_EXTRA_CA_CERTS",
)


def default_cache_dir() -> Path:
    """Downloads shared by every run of the server (the TypeScript stripper's package)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcp-v8"


def default_data_dir() -> Path:
    """Where executions are kept when ``--data-dir`` is not given."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mcp-v8"


@dataclass(frozen=True, kw_only=True)
class SandboxSettings:
    """How sandbox children are started, limited and pooled."""

    deno_path: str
    heap_memory_max_mb: int = 8
    external_memory_max_mb: int = 64
    execution_timeout_s: float = 30.0
    max_concurrent_executions: int = field(default_factory=lambda: os.cpu_count() or 1)
    pool_size: int = 0  # 0: as many as max_concurrent_executions
    spawn_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    spawn_timeout_s: float = 10.0  # for the start-up check's child to announce itself
    output_limit_bytes: int = 16 * MIB
    max_frame_bytes: int = 64 * MIB
    max_code_bytes: int = 1 * MIB
    shutdown_grace_s: float = 0.2
    memory_poll_interval_s: float = 0.01
    memory_cgroups: bool = True
    typescript: bool = True
    cache_dir: Path = field(default_factory=default_cache_dir)

    @property
    def effective_pool_size(self) -> int:
        """Ready children kept waiting for work."""
        return self.pool_size or self.max_concurrent_executions


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """The HTTP listener (Streamable HTTP or SSE MCP, plus REST)."""

    host: str = "127.0.0.1"
    http_port: int | None = None
    sse_port: int | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 2 * MIB


DEFAULT_HEAP_DIR = Path("/tmp/mcp-v8-heaps")  # noqa: S108 - the original's documented default
DEFAULT_SESSION_DB = Path("/tmp/mcp-v8-sessions")  # noqa: S108


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Where executions, output, heap snapshots and session logs are kept.

    Stateful unless ``stateless``: snapshots go to S3 when ``s3_bucket`` is set
    (behind a local cache when ``cache_dir`` is), else to ``heap_dir``.
    """

    data_dir: Path
    stateless: bool = False
    heap_dir: Path = DEFAULT_HEAP_DIR
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "heaps/"
    cache_dir: Path | None = None
    cache_size_bytes: int = 1024 * MIB
    session_db_path: Path = DEFAULT_SESSION_DB


@dataclass(frozen=True, kw_only=True)
class CapabilitySettings:
    """Brokered capabilities: their policies, fetch header injection and size caps."""

    policies_json: str | None = None  # inline JSON or a path
    fetch_headers: tuple[str, ...] = ()
    fetch_header_configs: tuple[Path, ...] = ()
    fetch_max_response_bytes: int = 10 * MIB
    fetch_timeout_s: float = 30.0
    fs_max_read_bytes: int = 16 * MIB
    wasm_modules: tuple[str, ...] = ()  # name=path
    wasm_configs: tuple[Path, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModuleSettings:
    """External modules (``npm:``, ``jsr:``, URL imports): resolved and bundled host-side."""

    enabled: bool = False  # --allow-external-modules
    npm_registry: str = "https://registry.npmjs.org/"
    jsr_registry: str = "https://jsr.io/"
    cdn: str | None = None  # an esm.sh-compatible CDN: npm: specifiers load from it as URLs
    cache_dir: Path = field(default_factory=lambda: default_cache_dir() / "modules")
    max_module_bytes: int = 32 * MIB  # one download, and one bundle
    timeout_s: float = 120.0  # one resolution, downloads and bundling included


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server needs, in one place."""

    sandbox: SandboxSettings
    http: HttpSettings
    storage: StorageSettings
    capabilities: CapabilitySettings = CapabilitySettings()
    modules: ModuleSettings = ModuleSettings()
    session_id: str | None = None  # the session of a stdio connection
