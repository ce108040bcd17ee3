"""One ``deno bundle`` subprocess per bundle: its flags, its environment, reading its verdict.

Why a subprocess each time and not a long-lived helper: Deno's bundler
panics on some inputs (a package or version that does not exist), and a
panic in a shared helper would fail every resolution in flight. A bundle is
built once and then served from the cache, so its cost (~0.2 s for lodash-es
with the tarball already in ``DENO_DIR``; ~0.5 s on first use, esbuild's
download included) is paid once per package.

The flags, all in :func:`bundler_argv`: ``--no-config --no-lock`` so no
``deno.json`` or lockfile near the working directory changes the result;
``--platform browser`` because ``deno`` picks packages' Node builds, which
call ``createRequire`` and break in the sandbox; ``--allow-import`` names the
JSR registry's host alone, so nothing but JSR packages is loaded over the
network by Deno (URL modules are downloaded by the supervisor, under policy,
and handed to the bundler as local files through an import map);
``--sourcemap=external`` because the source map lists every file whose code
went into the bundle, which is how :func:`check_sources` proves the bundle
holds only downloaded code (the map costs ~10 ms for lodash-es). That check
matters: a module's ``require("/etc/passwd")`` is not an import the
supervisor sees, and the bundler inlines the file (measured).

The format is ``cjs`` first (the sandbox evaluates it as a plain function
body, ~11 ms for lodash against ~30 ms as a module) and ``esm`` when the cjs
build fails or warns about something only a module can do (top-level await,
``import.meta``).

The environment is the cache as ``DENO_DIR``, the configured registries, and
only what reaching them may need (a proxy, an extra CA). ``HOME`` stays out,
so no ``~/.npmrc`` (and no token in it) is read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
from anyio.abc import ByteReceiveStream

from supervisor.config import REGISTRY_ENV_PASSTHROUGH, ModuleSettings
from supervisor.modules.cache import ModuleCache
from supervisor.modules.models import BundleFormat, ErrorCode, ModuleError
from supervisor.modules.specifiers import registry_base

logger = logging.getLogger(__name__)

OUTPUT_NAME = "bundle.js"
MIRROR_DIR = "m"

_STREAM_TAIL_BYTES = 64 * 1024
_MESSAGE_CHARS = 1000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CJS_ONLY = '"cjs" output format'
_PANIC_PACKAGE = re.compile(
    r'PackageReq \{ name: StackString\("([^"]+)"\), version_req: VersionReq \{ '
    r'raw_text: SmallStackString\("([^"]*)"\)'
)
_NOT_FOUND_HINTS = (
    "Could not find constraint",
    "Could not resolve",
    "Do not know how to load path",
    "Module not found",
    "not found",
)
_NETWORK_HINTS = ("error sending request", "Failed loading", "dns error", "Connection refused")
_UNLOADABLE = re.compile(r"Do not know how to load path: deno:(\S+)")
_CODE_FRAME = re.compile(r"(?:\d+ *)?\|")  # the source excerpt under a syntax error
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def import_host(jsr_registry: str) -> str:
    """``host:port`` of the JSR registry, the only host Deno may load modules from."""
    url = httpx.URL(registry_base(jsr_registry))
    port = url.port or (443 if url.scheme == "https" else 80)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{port}"


def bundler_argv(
    deno_path: str,
    *,
    entry: str,
    fmt: BundleFormat,
    jsr_registry: str,
    import_map: str | None = None,
) -> list[str]:
    """Command line of one bundling; the only place that knows the bundler's Deno flags.

    ``entry`` is an ``npm:``/``jsr:`` specifier or a mirror file relative to
    the working directory; the bundle is written to :data:`OUTPUT_NAME` there.
    """
    argv = [
        deno_path,
        "bundle",
        "--no-config",
        "--no-lock",
        f"--allow-import={import_host(jsr_registry)}",
        "--platform",
        "browser",
        "--format",
        fmt,
        "--sourcemap=external",
        "--output",
        OUTPUT_NAME,
    ]
    if import_map is not None:
        argv += ["--import-map", import_map]
    return [*argv, entry]


def bundler_env(
    deno_dir: Path | str,
    settings: ModuleSettings,
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of the bundler: the cache, the registries, and how to reach them."""
    source = os.environ if parent is None else parent
    env = {key: source[key] for key in REGISTRY_ENV_PASSTHROUGH if key in source}
    env.update(
        DENO_DIR=str(deno_dir),
        NPM_CONFIG_REGISTRY=registry_base(settings.npm_registry),
        JSR_URL=registry_base(settings.jsr_registry),
        DENO_NO_UPDATE_CHECK="1",
        NO_COLOR="1",
    )
    return env


@dataclass(frozen=True)
class BundleJob:
    """What to bundle (``subject`` names it in messages)."""

    subject: str
    entry: str
    workdir: Path
    import_map: str | None = None
    local_names: Mapping[str, str] = field(default_factory=dict)


class Bundler:
    """Runs ``deno bundle`` for a job and returns the bundle's bytes and format."""

    def __init__(
        self,
        deno_path: str,
        settings: ModuleSettings,
        cache: ModuleCache,
    ) -> None:
        self.deno_path = deno_path
        self.settings = settings
        self.cache = cache
        self.runs = 0  # bundler processes started, for tests and metrics
        # Each bundling is a CPU-bound process (Deno and esbuild): no more of
        # them at once than there are cores, however many imports arrive.
        self._limiter = anyio.CapacityLimiter(os.cpu_count() or 1)

    async def bundle(self, job: BundleJob) -> tuple[bytes, BundleFormat]:
        """The bundle of ``job``: cjs if it can be, else esm; :class:`ModuleError` on failure."""
        env = bundler_env(self.cache.deno_dir, self.settings)
        for fmt in ("cjs", "esm"):
            argv = bundler_argv(
                self.deno_path,
                entry=job.entry,
                fmt=fmt,
                jsr_registry=self.settings.jsr_registry,
                import_map=job.import_map,
            )
            async with self._limiter:
                started = time.monotonic()
                self.runs += 1
                returncode, stderr = await _run(argv, env, job.workdir)
            text = _readable(stderr, job)
            logger.debug(
                "deno bundle %s (%s) exited %s in %.0f ms",
                job.subject,
                fmt,
                returncode,
                (time.monotonic() - started) * 1000,
            )
            if fmt == "cjs" and _CJS_ONLY in text:
                continue  # top-level await, import.meta: only a module can have them
            if returncode != 0:
                raise self._failure(text, job)
            return await anyio.to_thread.run_sync(self._collect, job, fmt)
        raise AssertionError("unreachable: the esm build returns or raises")

    def _collect(self, job: BundleJob, fmt: BundleFormat) -> tuple[bytes, BundleFormat]:
        output = job.workdir / OUTPUT_NAME
        try:
            size = output.stat().st_size
            if size > self.settings.max_module_bytes:
                raise ModuleError(
                    "EPARSE",
                    f"the bundle of {job.subject} is {size} bytes, over the limit of "
                    f"{self.settings.max_module_bytes}",
                )
            code = output.read_bytes()
            source_map = json.loads((job.workdir / f"{OUTPUT_NAME}.map").read_bytes())
        except (OSError, ValueError):
            raise ModuleError(
                "EPARSE", f"the bundler wrote no usable bundle for {job.subject}"
            ) from None
        check_sources(source_map, job, self.cache.deno_dir, self.settings.jsr_registry)
        return code, fmt

    def _failure(self, text: str, job: BundleJob) -> ModuleError:
        """The error a failed bundling stands for, from what Deno wrote to stderr."""
        if "Deno has panicked" in text:
            panic = _PANIC_PACKAGE.search(text)
            if panic:
                name, wanted = panic.groups()
                registry = registry_base(self.settings.npm_registry)
                return ModuleError(
                    "ENOTFOUND",
                    f"npm package {name!r} has no version matching {wanted or '*'!r} in {registry}",
                )
            logger.error("deno bundle panicked on %s: %s", job.subject, text[-2000:])
            return ModuleError("EPARSE", f"cannot bundle {job.subject}: the bundler crashed")
        detail = _error_detail(text) or "the bundler failed without saying why"
        unloadable = _UNLOADABLE.search(detail)
        if unloadable and unloadable.group(1).startswith("jsr:"):
            registry = registry_base(self.settings.jsr_registry)
            return ModuleError(
                "ENOTFOUND",
                f"cannot bundle {job.subject}: {unloadable.group(1)} was not found on the JSR "
                f"registry {registry} (no such version, or no such export)",
            )
        if unloadable:
            # Every URL the supervisor saw is in the import map: this one was
            # reached through require() or a computed specifier.
            return ModuleError(
                "EINVAL",
                f"cannot bundle {job.subject}: {unloadable.group(1)} is imported in a way that "
                "cannot be followed (require() or a computed specifier); import it statically",
            )
        code: ErrorCode = "EPARSE"
        if "Requires import access" in detail:
            code = "EACCES"
        elif any(hint in detail for hint in _NETWORK_HINTS):
            code = "ENETWORK"
        elif any(hint in detail for hint in _NOT_FOUND_HINTS):
            code = "ENOTFOUND"
        return ModuleError(code, f"cannot bundle {job.subject}: {detail}")


def check_sources(source_map: object, job: BundleJob, deno_dir: Path, jsr_registry: str) -> None:
    """Refuse a bundle holding code from anywhere but downloads: npm packages, JSR, the mirror.

    Every file the bundler read code from is in the source map's
    ``sources``, relative to the bundle. Paths must resolve (symbolic links
    followed) inside the npm package cache or the mirror of downloaded
    modules; URLs must be on the JSR registry. Anything else, or a map that
    cannot be read, refuses the bundle.
    """
    sources = source_map.get("sources") if isinstance(source_map, dict) else None
    if not isinstance(sources, list):
        raise ModuleError("EPARSE", f"cannot tell what the bundle of {job.subject} contains")
    roots = [os.path.realpath(deno_dir / "npm"), os.path.realpath(job.workdir / MIRROR_DIR)]
    jsr = registry_base(jsr_registry)
    for source in sources:
        if not isinstance(source, str):
            raise ModuleError("EPARSE", f"cannot tell what the bundle of {job.subject} contains")
        name = source.removeprefix("deno:")
        if _URL_LIKE.match(name) and not name.startswith("file:"):
            if name.startswith(jsr):
                continue
        elif name:
            real = os.path.realpath(job.workdir / name)
            if any(real == root or real.startswith(root + os.sep) for root in roots):
                continue
        shown = job.local_names.get(name, name)
        raise ModuleError(
            "EACCES",
            f"cannot bundle {job.subject}: it would include {shown!r}, "
            "which is neither a package file nor a downloaded module",
        )


def _readable(stderr: bytes, job: BundleJob) -> str:
    """Deno's stderr without colours, mirror files named by the URLs they hold."""
    text = _ANSI.sub("", stderr.decode("utf-8", "replace"))
    workdir_url = job.workdir.resolve().as_uri()
    for path, url in job.local_names.items():
        text = text.replace(f"{workdir_url}/{path}", url)
        bare = re.compile(rf"(?<![\w/.:-]){re.escape(path)}\b")
        text = bare.sub(url.replace("\\", "\\\\"), text)
    return text.replace(workdir_url + "/", "")


def _error_detail(text: str) -> str:
    """The first ``error:`` of Deno's output with the lines that explain it, on one line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("error:") or line.strip() == "error: bundling failed":
            continue
        parts = [line.removeprefix("error:").strip()]
        for follow in lines[index + 1 : index + 12]:
            if follow.startswith(("error:", "⚠", "Download ", "Bundled ")):
                break
            text = follow.strip()
            if text and not _CODE_FRAME.match(text):
                parts.append(text)
        detail = " ".join(parts)
        return detail if len(detail) <= _MESSAGE_CHARS else detail[:_MESSAGE_CHARS] + "..."
    return ""


async def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, bytes]:
    """Run the bundler in its own process group; its exit status and the tail of its stderr.

    If the wait ends early (cancelled, timed out), the whole group is killed,
    esbuild included, and the process reaped.
    """
    process = await anyio.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(cwd),
        start_new_session=True,
    )
    stderr = bytearray()
    try:
        async with anyio.create_task_group() as group:
            assert process.stdout is not None and process.stderr is not None
            group.start_soon(_drain, process.stdout, bytearray())
            group.start_soon(_drain, process.stderr, stderr)
        returncode = await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            await process.aclose()
    return returncode, bytes(stderr)


async def _drain(stream: ByteReceiveStream, tail: bytearray) -> None:
    """Read ``stream`` to its end, keeping its last bytes in ``tail``."""
    with contextlib.suppress(
        anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError
    ):
        while True:
            tail += await stream.receive(65536)
            if len(tail) > _STREAM_TAIL_BYTES:
                del tail[: len(tail) - _STREAM_TAIL_BYTES]
