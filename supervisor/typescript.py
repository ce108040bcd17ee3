"""TypeScript type stripping through a long-lived, trusted Deno helper running amaro.

The helper (``sandbox_host/strip_helper.js``) never runs user code: it turns
TypeScript text into JavaScript text, keeping every line and column where it
was, and stays loaded so no execution pays the ~60 ms amaro takes to load.

Its flags, all in :func:`strip_helper_argv`: no ``--allow-*`` flag at all.
Deno loads (and on first use downloads) ``npm:`` modules without any
permission, and stdin/stdout need none, so the helper cannot read files, open
sockets, read the environment or spawn processes. ``--no-remote`` refuses
URL imports; ``--lock`` with ``--frozen`` pins amaro's tarball to the
integrity hash below, so a registry serving other bytes for the version
stops the helper instead of loading them. The npm cache lives in the
writable ``DENO_DIR`` given as ``cache_dir``: the first start downloads amaro
(one package, no dependencies), later starts load it from there (~60 ms here)
without touching the network. A warm helper holds ~95 MB RSS.
"""

from __future__ import annotations

import contextlib
import itertools
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
from typing import IO, Any

import anyio
from anyio.abc import Process

import sandbox_host
from supervisor.config import REGISTRY_ENV_PASSTHROUGH
from supervisor.errors import InvalidRequest, SandboxUnavailable

logger = logging.getLogger(__name__)

HELPER = sandbox_host.ROOT / "strip_helper.js"

# Keep in step with the `npm:amaro@...` import in strip_helper.js (a test checks).
AMARO_VERSION = "1.2.1"
AMARO_INTEGRITY = (
    "sha512-RXNB1/mbpbpwr4mVlQgYZVdY4CHl7rFExwov+XOTWfghpsM1s2sD/"
    "5u4oTQkKL4Pt0BGNIExSVjRcLMjcytIDQ=="
)
# The import lexer, pinned the same way (a test checks the helper imports it).
LEXER_VERSION = "3.0.5"
LEXER_INTEGRITY = (
    "sha512-RNq2lKJw53c7z9QRHeiKeA6Ez0oikOqiBGdmxQhKDxEiOX1g5QJR4I"
    "oFVwicn8uCZcRWNrXC3NZaJihgK7aEbg=="
)
LOCK_NAME = f"strip-helper-amaro-{AMARO_VERSION}-lexer-{LEXER_VERSION}.lock"
LOG_NAME = "strip-helper.log"

# Only what reaching the npm registry may need: a proxy, a registry mirror, an
# extra CA. HOME stays out, so no ~/.npmrc (and no token in it) is read.
_ENV_PASSTHROUGH = (*REGISTRY_ENV_PASSTHROUGH, "NPM_CONFIG_REGISTRY")
_READ_CHUNK = 256 * 1024
_LOG_TAIL_BYTES = 4000


def strip_helper_argv(deno_path: str, cache_dir: Path | str) -> list[str]:
    """Command line of the helper; the only place that knows its Deno flags."""
    return [
        deno_path,
        "run",
        "--no-prompt",
        "--no-config",
        "--no-remote",
        f"--lock={Path(cache_dir) / LOCK_NAME}",
        "--frozen",
        str(HELPER),
    ]


def strip_helper_env(
    cache_dir: Path | str, parent: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment of the helper: its cache as ``DENO_DIR``, and how to reach the registry."""
    source = os.environ if parent is None else parent
    env = {key: source[key] for key in _ENV_PASSTHROUGH if key in source}
    env.update(DENO_DIR=str(cache_dir), DENO_NO_UPDATE_CHECK="1", NO_COLOR="1")
    return env


def lockfile_text() -> str:
    """The Deno lockfile pinning amaro's and the lexer's exact versions and tarball hashes."""
    lock = {
        "version": "5",
        "specifiers": {
            f"npm:amaro@{AMARO_VERSION}": AMARO_VERSION,
            f"npm:es-module-lexer@{LEXER_VERSION}": LEXER_VERSION,
        },
        "npm": {
            f"amaro@{AMARO_VERSION}": {"integrity": AMARO_INTEGRITY},
            f"es-module-lexer@{LEXER_VERSION}": {"integrity": LEXER_INTEGRITY},
        },
    }
    return json.dumps(lock, indent=2) + "\n"


def _prepare_cache(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = cache_dir / LOCK_NAME
    text = lockfile_text()
    with contextlib.suppress(FileNotFoundError):
        if lock.read_text(encoding="utf-8") == text:
            return
    partial = lock.with_name(f"{lock.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(lock)


# Everything TypeScript adds to JavaScript needs one of these characters or
# words (annotations, generics, `x!`, `x?`, `as`, declarations...), and so does
# an import. Code with none of them is plain JavaScript with nothing to strip
# or take out, and skips the round trip to the helper (~0.2-0.8 ms).
_MAYBE_TYPESCRIPT = re.compile(
    r"[:<!?@]|\b(?:abstract|accessor|as|asserts|declare|enum|implements|import|infer|"
    r"interface|is|keyof|module|namespace|override|private|protected|public|readonly|"
    r"satisfies|type|unique)\b"
)


def needs_helper(code: str) -> bool:
    """Whether ``code`` may hold TypeScript or imports; ``False`` only for plain JavaScript."""
    return _MAYBE_TYPESCRIPT.search(code) is not None


def format_failure(error: Mapping[str, Any]) -> str:
    """The message a client sees for code the helper could not strip."""
    where = f"line {error.get('line', '?')}, column {error.get('column', '?')}"
    message = str(error.get("message", "cannot be stripped"))
    if error.get("kind") == "syntax":
        return f"TypeScript: syntax error at {where}: {message}"
    construct = error.get("construct")
    if construct:
        hint = error.get("hint")
        suffix = f"; {hint}" if hint else ""
        return f"TypeScript: {construct} needs transformation ({where}){suffix}"
    return f"TypeScript: {message} ({where})"


@dataclass(frozen=True)
class ImportDecl:
    """One static ``import`` statement of a cell: what it loads and the names it binds."""

    specifier: str
    default: str | None = None
    namespace: str | None = None
    named: tuple[tuple[str, str], ...] = ()  # (exported name, local name)


@dataclass(frozen=True)
class PreparedCell:
    """A cell as the sandbox runs it: JavaScript, its static imports taken out."""

    code: str
    imports: tuple[ImportDecl, ...] = ()


@dataclass(frozen=True)
class PreparedModule:
    """A downloaded module ready to bundle: JavaScript with absolute specifiers only."""

    code: str
    dependencies: tuple[str, ...]


class _HelperGone(Exception):
    """The helper exited or closed its pipes."""


@dataclass(eq=False)
class _Helper:
    """One running helper process and the replies read from it so far."""

    process: Process
    log: IO[bytes]
    buffer: bytearray = field(default_factory=bytearray)
    gone: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(eq=False)
class _Waiter:
    reply: dict[str, Any] | None = None


class TypeStripper:
    """Strips TypeScript types through one warm helper, shared by all executions.

    ``strip`` may be called concurrently: requests are pipelined and replies
    matched by id. A helper that died is restarted once per request; a
    request that takes longer than ``timeout_s`` kills the helper (the next
    request starts a new one). Code the helper cannot strip raises
    :class:`InvalidRequest`; a helper that cannot run raises
    :class:`SandboxUnavailable`.
    """

    def __init__(
        self,
        deno_path: str,
        cache_dir: Path,
        *,
        timeout_s: float = 10.0,
        start_timeout_s: float = 120.0,
        shutdown_grace_s: float = 1.0,
        retry_after_s: float = 5.0,
    ) -> None:
        self.deno_path = deno_path
        self.cache_dir = Path(cache_dir)
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.shutdown_grace_s = shutdown_grace_s
        self.retry_after_s = retry_after_s
        self.amaro_version: str | None = None
        self._helper: _Helper | None = None
        self._closed = False
        self._start_failure: tuple[float, str] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Waiter] = {}
        self._start_lock = anyio.Lock()
        self._write_lock = anyio.Lock()
        self._read_lock = anyio.Lock()

    @property
    def pid(self) -> int | None:
        """The running helper's pid (also its process group), if one is running."""
        helper = self._helper
        return None if helper is None or helper.gone else helper.pid

    async def start(self) -> None:
        """Start the helper and wait until amaro is loaded (downloaded on first use)."""
        await self._ensure_helper(None)

    async def strip(self, code: str) -> str:
        """``code`` with its TypeScript types removed; lines and columns stay where they were."""
        reply = await self._ask({"code": code})
        return str(reply["code"])

    async def prepare(self, code: str) -> PreparedCell:
        """Types stripped and static imports taken out (blanked, so positions hold).

        Each ``import(`` becomes ``__mcpi(``, the sandbox's brokered loader, of
        the same width. An import clause that cannot be read raises
        :class:`InvalidRequest`.
        """
        reply = await self._ask({"code": code, "imports": True})
        imports = tuple(_import_decl(item) for item in reply.get("imports") or ())
        return PreparedCell(code=str(reply["code"]), imports=imports)

    async def prepare_module(self, code: str, url: str, *, typescript: bool) -> PreparedModule:
        """A downloaded module with types stripped and relative specifiers made absolute."""
        reply = await self._ask(
            {"op": "module", "code": code, "url": url, "typescript": typescript}
        )
        dependencies = reply.get("dependencies") or []
        return PreparedModule(
            code=str(reply["code"]), dependencies=tuple(str(d) for d in dependencies)
        )

    async def _ask(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One request answered: a reply with ``code``, or the error it stands for raised."""
        helper = await self._ensure_helper(None)
        try:
            reply = await self._request(helper, payload)
        except _HelperGone:
            logger.warning("TypeScript stripper %s exited; restarting it", helper.pid)
            helper = await self._ensure_helper(helper)
            try:
                reply = await self._request(helper, payload)
            except _HelperGone:
                raise SandboxUnavailable(
                    f"the TypeScript stripper exited twice: {self._log_tail()}"
                ) from None
        if "code" in reply:
            return reply
        error = reply.get("error") or {}
        if error.get("kind") in ("syntax", "unsupported"):
            raise InvalidRequest(format_failure(error))
        if error.get("kind") == "import":
            raise InvalidRequest(str(error.get("message")))
        # amaro threw something that is not a report about the code: its wasm
        # state is not to be trusted after that, so the next request gets a new helper.
        logger.error("TypeScript stripper %s failed: %s", helper.pid, error.get("message"))
        helper.gone = True
        _signal_group(helper.pid, signal.SIGKILL)
        raise SandboxUnavailable("the TypeScript stripper failed")

    async def aclose(self) -> None:
        """Stop the helper: close its stdin, then SIGTERM and SIGKILL its group if it lingers."""
        self._closed = True
        helper, self._helper = self._helper, None
        if helper is not None:
            await self._shut_down(helper)

    async def _ensure_helper(self, retired: _Helper | None) -> _Helper:
        """The running helper, starting one if there is none or it is ``retired``.

        A start that failed is not retried for ``retry_after_s``: requests fail
        fast instead of each waiting for another download that will not come.
        """
        async with self._start_lock:
            if self._closed:
                raise SandboxUnavailable("the TypeScript stripper is closed")
            helper = self._helper
            if helper is not None and helper is not retired and not helper.gone:
                return helper
            if helper is not None:
                self._helper = None
                await self._shut_down(helper)
            failed = self._start_failure
            if failed is not None and time.monotonic() - failed[0] < self.retry_after_s:
                raise SandboxUnavailable(failed[1])
            try:
                helper = await self._spawn()
            except SandboxUnavailable as exc:
                self._start_failure = (time.monotonic(), exc.message)
                raise
            self._start_failure = None
            if self._closed:  # aclose() ran while amaro was loading
                await self._shut_down(helper)
                raise SandboxUnavailable("the TypeScript stripper is closed")
            self._helper = helper
            return helper

    async def _spawn(self) -> _Helper:
        started = time.monotonic()
        try:
            await anyio.to_thread.run_sync(_prepare_cache, self.cache_dir)
            log = await anyio.to_thread.run_sync(lambda: (self.cache_dir / LOG_NAME).open("w+b"))
        except OSError as exc:
            raise SandboxUnavailable(
                f"the TypeScript cache directory {self.cache_dir} is not usable: {exc}"
            ) from None
        try:
            process = await anyio.open_process(
                strip_helper_argv(self.deno_path, self.cache_dir),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=strip_helper_env(self.cache_dir),
                cwd=str(self.cache_dir),
                start_new_session=True,
            )
        except OSError as exc:
            log.close()
            raise SandboxUnavailable(
                f"cannot start the TypeScript stripper with Deno at {self.deno_path!r}: {exc}"
            ) from None
        helper = _Helper(process, log)
        try:
            with anyio.fail_after(self.start_timeout_s):
                ready = await self._read_line(helper)
            self.amaro_version = str(ready["amaro"])
        except (_HelperGone, TimeoutError, KeyError, TypeError, ValueError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else "exited"
            await self._shut_down(helper)
            raise SandboxUnavailable(
                f"the TypeScript stripper {reason} while starting: {self._log_tail()}"
            ) from None
        except BaseException:
            await self._shut_down(helper)
            raise
        logger.info(
            "TypeScript stripper %s ready (amaro %s) in %.0f ms",
            process.pid,
            self.amaro_version,
            (time.monotonic() - started) * 1000,
        )
        return helper

    async def _request(self, helper: _Helper, payload: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        waiter = _Waiter()
        self._pending[request_id] = waiter
        line = json.dumps({"id": request_id, **payload}).encode() + b"\n"
        try:
            with anyio.fail_after(self.timeout_s):
                async with self._write_lock:
                    assert helper.process.stdin is not None
                    try:
                        await helper.process.stdin.send(line)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        helper.gone = True
                        raise _HelperGone from None
                # Whoever holds the read lock reads for everyone: each reply goes
                # to its waiter, so no background task is needed.
                while waiter.reply is None:
                    async with self._read_lock:
                        if waiter.reply is not None:
                            break
                        if helper.gone:
                            raise _HelperGone
                        self._dispatch(await self._read_line(helper))
        except TimeoutError:
            logger.error(
                "TypeScript stripper %s took over %s s; killing it", helper.pid, self.timeout_s
            )
            helper.gone = True
            _signal_group(helper.pid, signal.SIGKILL)
            raise SandboxUnavailable(
                f"the TypeScript stripper did not answer within {self.timeout_s} s"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        return waiter.reply

    def _dispatch(self, reply: dict[str, Any]) -> None:
        request_id = reply.get("id")
        waiter = self._pending.get(request_id) if isinstance(request_id, int) else None
        if waiter is None:
            # The answer to a request that timed out, or to a line that was not JSON.
            logger.debug("TypeScript stripper reply without a waiter: %s", reply.get("error"))
            return
        waiter.reply = reply

    async def _read_line(self, helper: _Helper) -> dict[str, Any]:
        """The next JSON line from the helper; :class:`_HelperGone` at end of output."""
        assert helper.process.stdout is not None
        while True:
            newline = helper.buffer.find(b"\n")
            if newline >= 0:
                line = bytes(helper.buffer[:newline])
                del helper.buffer[: newline + 1]
                try:
                    value = json.loads(line)
                except ValueError:
                    helper.gone = True
                    logger.error("TypeScript stripper %s wrote something not JSON", helper.pid)
                    raise _HelperGone from None
                if not isinstance(value, dict):
                    helper.gone = True
                    raise _HelperGone
                return value
            try:
                helper.buffer += await helper.process.stdout.receive(_READ_CHUNK)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                helper.gone = True
                raise _HelperGone from None

    async def _shut_down(self, helper: _Helper) -> None:
        """Close stdin, wait, SIGTERM the group, wait, SIGKILL the group, reap; shielded."""
        helper.gone = True
        process = helper.process
        with anyio.CancelScope(shield=True):
            rung = "exited"
            if process.returncode is None:
                if process.stdin is not None:
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        await process.stdin.aclose()
                if not await _wait(process, self.shutdown_grace_s):
                    rung = "sigterm"
                    _signal_group(process.pid, signal.SIGTERM)
                    if not await _wait(process, self.shutdown_grace_s):
                        rung = "sigkill"
                        _signal_group(process.pid, signal.SIGKILL)
                        await process.wait()
            await process.aclose()
            helper.log.close()
        logger.debug("TypeScript stripper %s shut down (%s)", process.pid, rung)

    def _log_tail(self) -> str:
        """What the last helper wrote to stderr (Deno's own errors), for an error message."""
        try:
            with (self.cache_dir / LOG_NAME).open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return "no log"
        return text.strip() or "no output"


def _import_decl(item: Any) -> ImportDecl:
    if not isinstance(item, dict) or not isinstance(item.get("specifier"), str):
        raise SandboxUnavailable("the TypeScript stripper described an import it should not")
    named = item.get("named") or []
    return ImportDecl(
        specifier=item["specifier"],
        default=item.get("default"),
        namespace=item.get("namespace"),
        named=tuple((str(pair[0]), str(pair[1])) for pair in named),
    )


async def _wait(process: Process, timeout_s: float) -> bool:
    with anyio.move_on_after(timeout_s):
        await process.wait()
        return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


__all__ = [
    "AMARO_INTEGRITY",
    "AMARO_VERSION",
    "HELPER",
    "LEXER_INTEGRITY",
    "LEXER_VERSION",
    "LOCK_NAME",
    "LOG_NAME",
    "ImportDecl",
    "PreparedCell",
    "PreparedModule",
    "TypeStripper",
    "format_failure",
    "lockfile_text",
    "needs_helper",
    "strip_helper_argv",
    "strip_helper_env",
]
