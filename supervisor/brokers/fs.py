"""The ``fs`` broker: decide each request by policy, then perform it without following links.

The sandboxed child has no filesystem permission; its ``fs`` calls arrive here. For each one:

1. **Paths are made absolute and normalized lexically**: a relative path is taken against ``/``
   (the supervisor's working directory plays no part), ``.`` and ``..`` are resolved as text, and
   repeated slashes collapse. Nothing on disk is consulted, so ``..`` can never climb out of
   where the text says.
2. **The policy decides on exactly** ``{operation, path, destination?, recursive?, encoding?}``
   with the normalized paths: ``destination`` for ``rename`` and ``copyFile``, ``recursive`` for
   ``mkdir`` and ``rm``, ``encoding`` for ``readFile`` (``"utf-8"`` when the caller gave none).
3. **The I/O touches only what the normalized path names.** It never re-reads the path by name
   from ``/``: it walks from a handle on ``/`` one component at a time, opening each with
   ``O_PATH | O_NOFOLLOW`` and checking the handle with ``fstat`` (no window for a swap), and
   does every operation relative to the handle of the last directory (``openat``, ``mkdirat``,
   ``unlinkat``, ``renameat``, ``fstatat``). So:

   - **Symbolic links are never followed**, anywhere in the path, including one swapped in
     after the decision: the request fails with ``ELOOP`` ("symbolic links are not followed").
     ``/proc/self``, ``/proc/<pid>/root`` and ``/proc/<pid>/cwd`` are links, so those tricks
     fail the same way. ``stat`` and ``exists`` describe a final link itself (``is_symlink``);
     ``rm`` (also recursive) and ``rename`` act on the link, never on its target.
   - **Hard links**: another name for a file is the same inode, so a path check cannot tell
     which names it has. Regular files with more than one link are refused for ``readFile``,
     ``writeFile``, ``appendFile`` and ``copyFile`` (``EPERM``); ``stat``, ``rm`` and
     ``rename`` act on the name only and are allowed.
   - **Only regular files and directories are opened.** FIFOs would block, devices may act on
     open: a file is checked before opening (``fstatat``), opened with ``O_NONBLOCK`` and
     ``O_NOCTTY``, and checked again on the open handle (``EPERM`` otherwise); an existing file
     is truncated only after that check.
   - Reads are capped (``EFBIG``); ``copyFile`` streams and has no cap.
   - ``rm`` of ``/`` is refused before the policy is asked.

   Not covered: a policy that allows ``/proc/<pid>/...`` by number (those are plain files: do
   not allow ``/proc``), bind mounts inside an allowed directory, and host processes that move
   a directory the broker already holds, or swap in a device in the instant between a file's
   check and its open (it is then opened, without blocking, and refused).

Blocking calls run in a worker thread. Failures are :class:`BrokerError` with Node-like codes
and messages (``"ENOENT: no such file or directory, open '/tmp/x'"``); a denial has code
``EPOLICY`` and says "denied by policy".
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, Protocol

import anyio.to_thread

from supervisor.brokers.models import BrokerError, FsRequest, FsResponse, FsStat, denial_detail

__all__ = ["DEFAULT_MAX_READ_BYTES", "FsBroker", "PolicyVerdict", "normalize_path"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_READ_BYTES = 16 * 1024 * 1024

_Parts = tuple[str, ...]

# O_PATH needs only search permission on the way, and never opens a device.
_ROOT = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20

_SYSCALLS = {
    "readFile": "open",
    "writeFile": "open",
    "appendFile": "open",
    "readdir": "scandir",
    "stat": "stat",
    "exists": "stat",
    "mkdir": "mkdir",
    "rm": "rm",
    "rename": "rename",
    "copyFile": "copyfile",
}
_WITH_DESTINATION = frozenset({"rename", "copyFile"})
_WITH_RECURSIVE = frozenset({"mkdir", "rm"})

# libuv's wording where it differs from strerror's, so messages read as Node's do.
_NODE_WORDING = {
    "EEXIST": "file already exists",
    "EISDIR": "illegal operation on a directory",
    "ELOOP": "too many symbolic links encountered",
    "EBUSY": "resource busy or locked",
    "EXDEV": "cross-device link not permitted",
    "ENAMETOOLONG": "name too long",
}


def _describe(code: str) -> str:
    return _NODE_WORDING.get(code) or os.strerror(getattr(errno, code, 0)).lower()


class PolicyVerdict(Protocol):
    """What ``decide`` answers; ``supervisor.policy.Decision`` is one."""

    @property
    def allowed(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class _Refused(Exception):
    """A failure inside the worker thread, before the path is attached to the message."""

    def __init__(self, code: str, description: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.description = description or _describe(code)


def normalize_path(path: str) -> str:
    """``path`` made absolute against ``/``; ``.``, ``..`` and extra slashes resolved as text."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts)


class FsBroker:
    """Performs the sandbox's ``fs`` requests that the policy allows, never following links."""

    def __init__(self, *, max_read_bytes: int = DEFAULT_MAX_READ_BYTES) -> None:
        self._max_read_bytes = max_read_bytes

    async def handle(
        self,
        request: FsRequest,
        decide: Callable[[dict[str, Any]], Awaitable[PolicyVerdict]],
    ) -> FsResponse:
        """Decide ``request`` with ``decide`` and perform it; raises :class:`BrokerError`."""
        op = request.op
        syscall = _SYSCALLS.get(op)
        if syscall is None:
            raise BrokerError("EINVAL", f"EINVAL: unknown fs operation {op!r}")
        path = _checked_path(request.path, syscall)
        destination = None
        if op in _WITH_DESTINATION:
            if not request.destination:
                raise BrokerError("EINVAL", f"EINVAL: {op} needs a destination, {syscall} '{path}'")
            destination = _checked_path(request.destination, syscall)
        if op == "rm" and path == "/":
            raise BrokerError("EPERM", "EPERM: refusing to remove the root directory, rm '/'", "/")

        policy_input: dict[str, Any] = {"operation": op, "path": path}
        if destination is not None:
            policy_input["destination"] = destination
        if op in _WITH_RECURSIVE:
            policy_input["recursive"] = request.recursive
        if op == "readFile":
            policy_input["encoding"] = request.encoding or "utf8"
        decision = await decide(policy_input)
        if not decision.allowed:
            logger.debug("fs %s %s denied by policy: %s", op, path, decision.reason)
            target = f" -> '{destination}'" if destination is not None else ""
            reason = denial_detail(decision.reason)
            raise BrokerError(
                "EPOLICY",
                f"EPOLICY: {op} '{path}'{target} denied by policy{reason}",
                path,
                {"reason": decision.reason},
            )

        perform = partial(self._perform, request, _parts(path), destination)
        try:
            return await anyio.to_thread.run_sync(perform)
        except _Refused as refused:
            target = f" -> '{destination}'" if destination is not None else ""
            message = f"{refused.code}: {refused.description}, {syscall} '{path}'{target}"
            raise BrokerError(refused.code, message, path, {"syscall": syscall}) from None

    def _perform(self, request: FsRequest, parts: _Parts, destination: str | None) -> FsResponse:
        """Run one allowed request (in a worker thread)."""
        try:
            match request.op:
                case "readFile":
                    return FsResponse(data=_read(parts, self._max_read_bytes))
                case "writeFile" | "appendFile":
                    _write(parts, request.data, append=request.op == "appendFile")
                case "readdir":
                    return FsResponse(names=_list(parts))
                case "stat":
                    return FsResponse(stat=_stat(parts))
                case "exists":
                    return FsResponse(exists=_exists(parts))
                case "mkdir" if request.recursive:
                    _make_tree(parts)
                case "mkdir":
                    _make_dir(parts)
                case "rm":
                    _remove(parts, recursive=request.recursive)
                case "rename":
                    assert destination is not None
                    _rename(parts, _parts(destination))
                case "copyFile":
                    assert destination is not None
                    _copy(parts, _parts(destination))
        except OSError as exc:
            raise _Refused(errno.errorcode.get(exc.errno or 0, "EIO")) from exc
        return FsResponse()


def _checked_path(raw: str, syscall: str) -> str:
    if not raw:
        raise BrokerError("ENOENT", f"ENOENT: no such file or directory, {syscall} ''", raw)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise BrokerError("EINVAL", f"EINVAL: path is not valid UTF-8, {syscall}", raw) from None
    if "\0" in raw:
        raise BrokerError("EINVAL", f"EINVAL: path contains a NUL byte, {syscall} {raw!r}", raw)
    return normalize_path(raw)


def _parts(path: str) -> _Parts:
    return tuple(part for part in path.split("/") if part)


def _shown(parts: _Parts) -> str:
    return "/" + "/".join(parts)


def _link_refusal(where: _Parts) -> _Refused:
    return _Refused("ELOOP", f"symbolic links are not followed ('{_shown(where)}' is one)")


def _openat(parent: int, name: str, flags: int, where: _Parts, mode: int = 0o666) -> int:
    """``openat`` of a file with ``O_NOFOLLOW``: a link there fails as a refusal of links."""
    try:
        return os.open(name, flags, mode, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_refusal(where) from None
        raise


def _step(parent: int, name: str, where: _Parts) -> int:
    """An ``O_PATH`` handle on directory ``name`` in ``parent``, or a refusal if it is not one.

    ``O_PATH | O_NOFOLLOW`` opens whatever the entry is (a link itself, never a device's
    driver), and ``fstat`` of that handle tells what was opened, with no window for a swap.
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        return fd
    os.close(fd)
    if stat.S_ISLNK(mode):
        raise _link_refusal(where)
    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))


def _open_listing(parent: int, name: str, where: _Parts) -> int:
    """A readable handle on directory ``name`` (for listing), reached as :func:`_step` does."""
    with _closing(_step(parent, name, where)) as handle:
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=handle)


@contextmanager
def _parent(parts: _Parts) -> Iterator[tuple[int, str]]:
    """A handle on the directory holding the last component, reached without following links.

    Yields ``(dir_fd, name)``; for ``/`` itself the name is ``"."``.
    """
    fd = os.open("/", _ROOT)
    try:
        for depth, name in enumerate(parts[:-1]):
            child = _step(fd, name, parts[: depth + 1])
            os.close(fd)
            fd = child
        yield fd, parts[-1] if parts else "."
    finally:
        os.close(fd)


@contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _check_regular(info: os.stat_result, where: _Parts) -> None:
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        raise _link_refusal(where)
    if stat.S_ISDIR(mode):
        raise _Refused("EISDIR")
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "device, socket or other special file"
        raise _Refused("EPERM", f"not a regular file ({kind}); only files and directories open")
    if info.st_nlink > 1:
        raise _Refused(
            "EPERM",
            f"file has {info.st_nlink} hard links; refused because its contents are also "
            "reachable at another path",
        )


def _open_regular(parent: int, name: str, where: _Parts, flags: int) -> tuple[int, os.stat_result]:
    """Open a regular file with one link; checked before (no device is opened) and after."""
    _check_regular(os.stat(name, dir_fd=parent, follow_symlinks=False), where)
    fd = _openat(parent, name, flags | _FILE, where)
    try:
        info = os.fstat(fd)
        _check_regular(info, where)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _open_for_write(parent: int, name: str, where: _Parts, *, append: bool) -> int:
    """Open an existing regular file, or create one exclusively; never truncates."""
    flags = os.O_WRONLY | (os.O_APPEND if append else 0)
    for _attempt in range(3):  # the entry may appear or vanish between the two tries
        with suppress(FileNotFoundError):
            return _open_regular(parent, name, where, flags)[0]
        with suppress(FileExistsError):
            return _openat(parent, name, flags | os.O_CREAT | os.O_EXCL | _FILE, where)
    raise _Refused("EAGAIN", "the file kept changing while being opened")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read(parts: _Parts, limit: int) -> bytes:
    too_big = _Refused("EFBIG", f"file too large (the limit is {limit} bytes)")
    with _parent(parts) as (parent, name):
        fd, info = _open_regular(parent, name, parts, os.O_RDONLY)
        with _closing(fd):
            if info.st_size > limit:
                raise too_big
            chunks: list[bytes] = []
            total = 0
            # Read past st_size: files may grow, and /proc-like files report size 0.
            while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
                total += len(chunk)
                if total > limit:
                    raise too_big
                chunks.append(chunk)
            return b"".join(chunks)


def _write(parts: _Parts, data: bytes, *, append: bool) -> None:
    with (
        _parent(parts) as (parent, name),
        _closing(_open_for_write(parent, name, parts, append=append)) as fd,
    ):
        if not append:
            os.ftruncate(fd, 0)  # only now: the handle was checked first
        _write_all(fd, data)


def _copy(source: _Parts, destination: _Parts) -> None:
    with _parent(source) as (parent, name):
        src, info = _open_regular(parent, name, source, os.O_RDONLY)
        with (
            _closing(src),
            _parent(destination) as (dst_parent, dst_name),
            _closing(_open_for_write(dst_parent, dst_name, destination, append=False)) as dst,
        ):
            target = os.fstat(dst)
            if (target.st_dev, target.st_ino) == (info.st_dev, info.st_ino):
                return  # copying a file onto itself changes nothing (as libuv)
            os.ftruncate(dst, 0)
            while chunk := os.read(src, _CHUNK):
                _write_all(dst, chunk)
            os.fchmod(dst, stat.S_IMODE(info.st_mode) & 0o777)


def _list(parts: _Parts) -> tuple[str, ...]:
    with _parent(parts) as (parent, name), _closing(_open_listing(parent, name, parts)) as fd:
        names = os.listdir(fd)
    # Names that are not UTF-8 cannot cross to JavaScript as they are.
    return tuple(sorted(os.fsencode(n).decode("utf-8", "replace") for n in names))


def _stat(parts: _Parts) -> FsStat:
    with _parent(parts) as (parent, name):
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    return FsStat(
        size=info.st_size,
        is_file=stat.S_ISREG(info.st_mode),
        is_directory=stat.S_ISDIR(info.st_mode),
        is_symlink=stat.S_ISLNK(info.st_mode),
        mtime_ms=info.st_mtime_ns / 1e6,
        atime_ms=info.st_atime_ns / 1e6,
        ctime_ms=info.st_ctime_ns / 1e6,
        mode=info.st_mode,
    )


def _exists(parts: _Parts) -> bool:
    try:
        with _parent(parts) as (parent, name):
            os.stat(name, dir_fd=parent, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _make_dir(parts: _Parts) -> None:
    with _parent(parts) as (parent, name):
        os.mkdir(name, 0o777, dir_fd=parent)


def _make_tree(parts: _Parts) -> None:
    """``mkdir -p``: each component opened without following links, created when missing."""
    fd = os.open("/", _ROOT)
    try:
        for depth, name in enumerate(parts):
            where = parts[: depth + 1]
            try:
                child = _step(fd, name, where)
            except FileNotFoundError:
                with suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
                child = _step(fd, name, where)
            except NotADirectoryError:
                if depth == len(parts) - 1:
                    raise _Refused("EEXIST") from None
                raise
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _remove(parts: _Parts, *, recursive: bool) -> None:
    with _parent(parts) as (parent, name):
        if recursive:
            _remove_tree(parent, name, parts)
        else:
            os.unlink(name, dir_fd=parent)  # EISDIR for a directory, as Node's rm


def _unlinked(parent: int, name: str) -> bool:
    """Unlink anything but a directory (a link goes, its target stays); False for a directory."""
    try:
        os.unlink(name, dir_fd=parent)
    except IsADirectoryError:
        return False
    return True


def _remove_tree(parent: int, name: str, where: _Parts) -> None:
    """``rm -r`` depth first over directory handles, with an explicit stack (no recursion)."""
    if _unlinked(parent, name):
        return
    stack: list[tuple[int, str, int, Iterator[str], _Parts]] = []

    def enter(holder: int, dirname: str, path: _Parts) -> None:
        with _close_on_error(_open_listing(holder, dirname, path)) as fd:
            stack.append((holder, dirname, fd, iter(os.listdir(fd)), path))

    try:
        enter(parent, name, where)
        while stack:
            holder, dirname, fd, entries, path = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                os.close(fd)
                os.rmdir(dirname, dir_fd=holder)
            elif not _unlinked(fd, entry):
                enter(fd, entry, (*path, entry))
    finally:
        for _holder, _dirname, fd, _entries, _path in stack:
            os.close(fd)


@contextmanager
def _close_on_error(fd: int) -> Iterator[int]:
    """Yield ``fd``, closing it only if the block fails (on success the caller owns it)."""
    try:
        yield fd
    except BaseException:
        os.close(fd)
        raise


def _rename(source: _Parts, destination: _Parts) -> None:
    with _parent(source) as (parent, name), _parent(destination) as (dst_parent, dst_name):
        os.rename(name, dst_name, src_dir_fd=parent, dst_dir_fd=dst_parent)
