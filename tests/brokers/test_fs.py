"""The fs broker: every operation, Node-like errors, and the policy holding for the file touched."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.brokers.fs import FsBroker, normalize_path
from supervisor.brokers.models import BrokerError, FsOp, FsResponse
from supervisor.brokers.models import FsRequest as Request
from supervisor.policy.base import Decision
from tests._requirements import guards

pytestmark = pytest.mark.anyio

Decide = Callable[[dict[str, Any]], Awaitable[Decision]]


async def allow_all(policy_input: dict[str, Any]) -> Decision:
    return Decision(allowed=True)


def prefix_policy(prefix: Path) -> Decide:
    """Allow a request only if its path (and destination) are ``prefix`` or under it."""
    root = str(prefix)

    async def decide(policy_input: dict[str, Any]) -> Decision:
        paths = [policy_input["path"], policy_input.get("destination", root)]
        if all(p == root or p.startswith(root + "/") for p in paths):
            return Decision(allowed=True)
        return Decision(allowed=False, reason=f"only {root} is allowed")

    return decide


async def call(
    op: FsOp,
    path: Path | str,
    decide: Decide = allow_all,
    broker: FsBroker | None = None,
    **kw: Any,
) -> FsResponse:
    if isinstance(kw.get("destination"), Path):
        kw["destination"] = str(kw["destination"])
    return await (broker or FsBroker()).handle(Request(op=op, path=str(path), **kw), decide)


async def refused(op: FsOp, path: Path | str, decide: Decide = allow_all, **kw: Any) -> BrokerError:
    with pytest.raises(BrokerError) as caught:
        await call(op, path, decide, **kw)
    return caught.value


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    (tmp_path / "allowed").mkdir()
    return tmp_path / "allowed"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the allowed one holding a secret."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"SECRET")
    return tmp_path / "outside"


def assert_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"SECRET"


# --- every operation, round trip ---


async def test_written_bytes_come_back_as_they_were_with_either_encoding(tmp_path: Path) -> None:
    data = "héllo\n".encode() + bytes(range(256))
    await call("writeFile", tmp_path / "f", data=data)
    assert (await call("readFile", tmp_path / "f")).data == data
    assert (await call("readFile", tmp_path / "f", encoding="buffer")).data == data
    assert (tmp_path / "f").read_bytes() == data


async def test_write_file_replaces_a_longer_file_entirely(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"a much longer old content")
    await call("writeFile", tmp_path / "f", data=b"new")
    assert (tmp_path / "f").read_bytes() == b"new"


async def test_append_file_creates_a_file_then_extends_it(tmp_path: Path) -> None:
    await call("appendFile", tmp_path / "log", data=b"one ")
    await call("appendFile", tmp_path / "log", data=b"two")
    assert (tmp_path / "log").read_bytes() == b"one two"


async def test_readdir_lists_names_sorted(tmp_path: Path) -> None:
    for name in ("b", "a", "C"):
        (tmp_path / name).touch()
    (tmp_path / "dir").mkdir()
    assert (await call("readdir", tmp_path)).names == ("C", "a", "b", "dir")


async def test_stat_describes_files_and_directories(tmp_path: Path) -> None:
    before_ms = time.time() * 1000 - 5000
    (tmp_path / "f").write_bytes(b"12345")
    file_stat = (await call("stat", tmp_path / "f")).stat
    dir_stat = (await call("stat", tmp_path)).stat
    assert file_stat is not None and dir_stat is not None
    assert (file_stat.size, file_stat.is_file, file_stat.is_directory) == (5, True, False)
    assert not file_stat.is_symlink and stat.S_ISREG(file_stat.mode)
    assert before_ms < file_stat.mtime_ms < time.time() * 1000 + 5000
    assert file_stat.atime_ms > before_ms and file_stat.ctime_ms > before_ms
    assert (dir_stat.is_file, dir_stat.is_directory) == (False, True)


async def test_mkdir_creates_one_directory_and_refuses_an_existing_one(tmp_path: Path) -> None:
    await call("mkdir", tmp_path / "d")
    assert (tmp_path / "d").is_dir()
    assert (await refused("mkdir", tmp_path / "d")).code == "EEXIST"
    assert (await refused("mkdir", tmp_path / "no" / "d")).code == "ENOENT"


async def test_mkdir_recursive_creates_parents_and_accepts_an_existing_tree(tmp_path: Path) -> None:
    await call("mkdir", tmp_path / "a" / "b" / "c", recursive=True)
    assert (tmp_path / "a" / "b" / "c").is_dir()
    await call("mkdir", tmp_path / "a" / "b", recursive=True)
    (tmp_path / "file").touch()
    assert (await refused("mkdir", tmp_path / "file", recursive=True)).code == "EEXIST"
    assert (await refused("mkdir", tmp_path / "file" / "x", recursive=True)).code == "ENOTDIR"


async def test_rm_removes_a_file_but_a_directory_only_when_recursive(tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    await call("rm", tmp_path / "f")
    assert not (tmp_path / "f").exists()
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_text("x")
    (tmp_path / "d" / "g").write_text("y")
    assert (await refused("rm", tmp_path / "d")).code == "EISDIR"
    await call("rm", tmp_path / "d", recursive=True)
    assert not (tmp_path / "d").exists()
    assert (await refused("rm", tmp_path / "d", recursive=True)).code == "ENOENT"


async def test_rename_moves_a_file_and_copy_file_copies_over_an_existing_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").write_bytes(b"payload")
    (tmp_path / "a").chmod(0o640)
    await call("rename", tmp_path / "a", destination=tmp_path / "b")
    assert not (tmp_path / "a").exists() and (tmp_path / "b").read_bytes() == b"payload"
    (tmp_path / "c").write_bytes(b"an older and longer file")
    await call("copyFile", tmp_path / "b", destination=tmp_path / "c")
    await call("copyFile", tmp_path / "b", destination=tmp_path / "d")
    assert (tmp_path / "c").read_bytes() == (tmp_path / "d").read_bytes() == b"payload"
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o640


async def test_copying_a_file_onto_itself_leaves_it_intact(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"payload")
    await call("copyFile", tmp_path / "a", destination=tmp_path / "." / "a")
    assert (tmp_path / "a").read_bytes() == b"payload"


async def test_exists_answers_true_or_false_and_never_raises_enoent(tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    assert (await call("exists", tmp_path / "f")).exists is True
    assert (await call("exists", tmp_path)).exists is True
    assert (await call("exists", "/")).exists is True
    assert (await call("exists", tmp_path / "missing")).exists is False
    assert (await call("exists", tmp_path / "missing" / "deeper")).exists is False
    assert (await call("exists", tmp_path / "f" / "under-a-file")).exists is False


# --- errors as Node reports them ---


async def test_a_missing_file_fails_with_enoent_worded_like_node(tmp_path: Path) -> None:
    error = await refused("readFile", tmp_path / "x" / ".." / "missing")
    assert error.code == "ENOENT"
    assert error.message == f"ENOENT: no such file or directory, open '{tmp_path}/missing'"
    assert error.path == f"{tmp_path}/missing"


async def test_rename_errors_name_both_paths(tmp_path: Path) -> None:
    error = await refused("rename", tmp_path / "a", destination=tmp_path / "b")
    assert (
        error.message
        == f"ENOENT: no such file or directory, rename '{tmp_path}/a' -> '{tmp_path}/b'"
    )


async def test_reading_or_writing_a_directory_fails_with_eisdir(tmp_path: Path) -> None:
    assert (await refused("readFile", tmp_path)).code == "EISDIR"
    assert (await refused("writeFile", tmp_path, data=b"x")).code == "EISDIR"
    assert (await refused("readFile", "/")).code == "EISDIR"


async def test_a_path_through_a_file_fails_with_enotdir(tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    assert (await refused("readFile", tmp_path / "f" / "x")).code == "ENOTDIR"
    assert (await refused("readdir", tmp_path / "f")).code == "ENOTDIR"


async def test_renaming_a_directory_onto_a_non_empty_one_fails_with_enotempty(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").touch()
    error = await refused("rename", tmp_path / "a", destination=tmp_path / "b")
    assert error.code == "ENOTEMPTY"
    assert (tmp_path / "b" / "keep").exists()


async def test_reads_larger_than_the_cap_fail_with_efbig(tmp_path: Path) -> None:
    broker = FsBroker(max_read_bytes=10)
    (tmp_path / "ten").write_bytes(b"0123456789")
    (tmp_path / "eleven").write_bytes(b"0123456789a")
    assert (await call("readFile", tmp_path / "ten", broker=broker)).data == b"0123456789"
    with pytest.raises(BrokerError) as caught:
        await call("readFile", tmp_path / "eleven", broker=broker)
    assert caught.value.code == "EFBIG"
    assert "limit is 10 bytes" in caught.value.message


async def test_empty_paths_and_nul_bytes_are_refused_before_the_policy_is_asked() -> None:
    async def never(policy_input: dict[str, Any]) -> Decision:
        raise AssertionError("the policy was asked")

    assert (await refused("readFile", "", never)).code == "ENOENT"
    assert (await refused("readFile", "/tmp/a\0b", never)).code == "EINVAL"
    assert (await refused("rename", "/tmp/a", never)).code == "EINVAL"


async def test_removing_the_root_directory_is_refused_before_the_policy_is_asked() -> None:
    async def never(policy_input: dict[str, Any]) -> Decision:
        raise AssertionError("the policy was asked")

    for path in ("/", "/tmp/..", ".", "a/../.."):
        error = await refused("rm", path, never, recursive=True)
        assert error.code == "EPERM"


# --- the policy input ---


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b", "/a/b"),
        ("a/b", "/a/b"),
        ("//a//./b/", "/a/b"),
        ("/a/../../../b", "/b"),
        ("../etc/passwd", "/etc/passwd"),
        ("/", "/"),
        (".", "/"),
    ],
)
def test_paths_are_made_absolute_against_root_and_normalized_as_text(
    path: str, expected: str
) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            Request("readFile", "/a/./b"),
            {"operation": "readFile", "path": "/a/b", "encoding": "utf8"},
        ),
        (
            Request("readFile", "a", encoding="buffer"),
            {"operation": "readFile", "path": "/a", "encoding": "buffer"},
        ),
        (
            Request("writeFile", "/a", encoding="utf-8", data=b"x"),
            {"operation": "writeFile", "path": "/a"},
        ),
        (
            Request("mkdir", "/a", recursive=True),
            {"operation": "mkdir", "path": "/a", "recursive": True},
        ),
        (Request("rm", "/a"), {"operation": "rm", "path": "/a", "recursive": False}),
        (Request("stat", "/a/"), {"operation": "stat", "path": "/a"}),
        (
            Request("rename", "/a", destination="b/../c"),
            {"operation": "rename", "path": "/a", "destination": "/c"},
        ),
        (
            Request("copyFile", "/x/../a", destination="/c"),
            {"operation": "copyFile", "path": "/a", "destination": "/c"},
        ),
    ],
)
async def test_the_policy_sees_exactly_the_operation_and_its_normalized_paths(
    request_: Request, expected: dict[str, Any]
) -> None:
    seen: list[dict[str, Any]] = []

    async def deny(policy_input: dict[str, Any]) -> Decision:
        seen.append(policy_input)
        return Decision(allowed=False)

    with pytest.raises(BrokerError):
        await FsBroker().handle(request_, deny)
    assert seen == [expected]


async def test_a_denial_says_denied_by_policy_with_the_reason_and_touches_nothing(
    tmp_path: Path, allowed: Path
) -> None:
    decide = prefix_policy(allowed)
    error = await refused("writeFile", tmp_path / "elsewhere", decide, data=b"x")
    assert error.code == "EPOLICY"
    assert "denied by policy" in error.message and f"only {allowed} is allowed" in error.message
    assert error.path == str(tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    await call("writeFile", allowed / "inside", decide, data=b"x")
    assert (allowed / "inside").read_bytes() == b"x"


@guards("fs:no-escape")
async def test_dot_dot_out_of_the_allowed_prefix_is_denied(allowed: Path, outside: Path) -> None:
    decide = prefix_policy(allowed)
    escape = f"{allowed}/../outside/secret"
    assert (await refused("readFile", escape, decide)).code == "EPOLICY"
    assert (await refused("writeFile", escape, decide, data=b"x")).code == "EPOLICY"
    (allowed / "mine").touch()
    error = await refused("rename", allowed / "mine", decide, destination=escape)
    assert error.code == "EPOLICY"
    error = await refused("copyFile", escape, decide, destination=allowed / "copy")
    assert error.code == "EPOLICY"
    assert not (allowed / "copy").exists()
    assert_untouched(outside)


# --- links, /proc and special files ---


@guards("fs:no-escape")
async def test_a_symlink_to_an_outside_file_is_never_followed(allowed: Path, outside: Path) -> None:
    decide = prefix_policy(allowed)
    (allowed / "link").symlink_to(outside / "secret")
    (allowed / "mine").write_bytes(b"mine")
    for error in [
        await refused("readFile", allowed / "link", decide),
        await refused("writeFile", allowed / "link", decide, data=b"x"),
        await refused("appendFile", allowed / "link", decide, data=b"x"),
        await refused("copyFile", allowed / "link", decide, destination=allowed / "copy"),
        await refused("copyFile", allowed / "mine", decide, destination=allowed / "link"),
    ]:
        assert error.code == "ELOOP"
        assert "symbolic links are not followed" in error.message
    assert not (allowed / "copy").exists()
    link_stat = (await call("stat", allowed / "link", decide)).stat
    assert link_stat is not None and link_stat.is_symlink and not link_stat.is_file
    assert (await call("exists", allowed / "link", decide)).exists is True
    assert_untouched(outside)


@guards("fs:no-escape")
async def test_a_symlinked_directory_in_the_middle_of_a_path_is_never_followed(
    allowed: Path, outside: Path
) -> None:
    decide = prefix_policy(allowed)
    (allowed / "dir").symlink_to(outside)
    through = allowed / "dir"
    for error in [
        await refused("readFile", through / "secret", decide),
        await refused("writeFile", through / "new", decide, data=b"x"),
        await refused("writeFile", through / "secret", decide, data=b"x"),
        await refused("appendFile", through / "secret", decide, data=b"x"),
        await refused("readdir", through, decide),
        await refused("stat", through / "secret", decide),
        await refused("exists", through / "secret", decide),
        await refused("mkdir", through / "sub", decide),
        await refused("mkdir", through / "sub" / "deeper", decide, recursive=True),
        await refused("rm", through / "secret", decide),
        await refused("rm", through / "secret", decide, recursive=True),
        await refused("rename", through / "secret", decide, destination=allowed / "stolen"),
        await refused("copyFile", through / "secret", decide, destination=allowed / "stolen"),
    ]:
        assert error.code == "ELOOP", error
        assert f"'{through}' is one" in error.message
    assert not (allowed / "stolen").exists()
    assert_untouched(outside)


async def test_rm_removes_symlinks_themselves_and_never_their_targets(
    allowed: Path, outside: Path
) -> None:
    decide = prefix_policy(allowed)
    (allowed / "file-link").symlink_to(outside / "secret")
    (allowed / "dir-link").symlink_to(outside)
    (allowed / "tree" / "sub").mkdir(parents=True)
    (allowed / "tree" / "sub" / "into-outside").symlink_to(outside)
    (allowed / "tree" / "secret-link").symlink_to(outside / "secret")
    await call("rm", allowed / "file-link", decide)
    await call("rm", allowed / "dir-link", decide, recursive=True)
    await call("rm", allowed / "tree", decide, recursive=True)
    assert list(allowed.iterdir()) == []
    assert_untouched(outside)


@guards("fs:no-hardlink")
async def test_a_hard_link_to_an_outside_file_is_refused_for_reads_and_writes(
    allowed: Path, outside: Path
) -> None:
    decide = prefix_policy(allowed)
    os.link(outside / "secret", allowed / "hard")
    for error in [
        await refused("readFile", allowed / "hard", decide),
        await refused("writeFile", allowed / "hard", decide, data=b"x"),
        await refused("appendFile", allowed / "hard", decide, data=b"x"),
        await refused("copyFile", allowed / "hard", decide, destination=allowed / "copy"),
    ]:
        assert error.code == "EPERM"
        assert "2 hard links" in error.message
    assert not (allowed / "copy").exists()
    await call("rm", allowed / "hard", decide)
    assert_untouched(outside)


@guards("fs:no-escape")
async def test_proc_self_root_paths_are_denied_by_a_prefix_policy(
    allowed: Path, outside: Path
) -> None:
    decide = prefix_policy(allowed)
    for path in (f"/proc/self/root{outside}/secret", f"/proc/{os.getpid()}/root{outside}/secret"):
        assert (await refused("readFile", path, decide)).code == "EPOLICY"
        assert (await refused("writeFile", path, decide, data=b"x")).code == "EPOLICY"
    assert_untouched(outside)


@guards("fs:no-escape")
async def test_proc_links_are_not_followed_even_when_the_policy_allows_them(
    outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(outside)
    for path in (
        f"/proc/self/root{outside}/secret",
        f"/proc/thread-self/root{outside}/secret",
        f"/proc/{os.getpid()}/root{outside}/secret",
        "/proc/self/cwd/secret",
        f"/proc/{os.getpid()}/cwd/secret",
    ):
        assert (await refused("readFile", path)).code == "ELOOP", path
        assert (await refused("writeFile", path, data=b"x")).code == "ELOOP", path
    assert_untouched(outside)


async def test_relative_paths_ignore_the_working_directory(
    allowed: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(outside)
    seen: list[str] = []

    async def decide(policy_input: dict[str, Any]) -> Decision:
        seen.append(policy_input["path"])
        return await prefix_policy(allowed)(policy_input)

    assert (await refused("readFile", "secret", decide)).code == "EPOLICY"
    assert (await refused("readFile", "./secret")).code == "ENOENT"
    assert seen == ["/secret"]
    assert_untouched(outside)


async def test_fifos_are_refused_without_blocking(allowed: Path) -> None:
    fifo = allowed / "fifo"
    os.mkfifo(fifo)
    with anyio.fail_after(5):
        for error in [
            await refused("readFile", fifo),
            await refused("writeFile", fifo, data=b"x"),
            await refused("appendFile", fifo, data=b"x"),
            await refused("copyFile", fifo, destination=allowed / "copy"),
        ]:
            assert error.code == "EPERM"
            assert "not a regular file (FIFO)" in error.message
        (allowed / "mine").touch()
        assert (await refused("copyFile", allowed / "mine", destination=fifo)).code == "EPERM"
        assert (await refused("readdir", fifo)).code == "ENOTDIR"
        fifo_stat = (await call("stat", fifo)).stat
        assert fifo_stat is not None and stat.S_ISFIFO(fifo_stat.mode)
        await call("rm", fifo)
    assert list(allowed.iterdir()) == [allowed / "mine"]


async def test_device_files_are_refused() -> None:
    with anyio.fail_after(5):
        for error in [
            await refused("readFile", "/dev/zero"),
            await refused("writeFile", "/dev/null", data=b"x"),
        ]:
            assert error.code == "EPERM"
            assert "not a regular file (device" in error.message


async def test_file_operations_run_off_the_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    listdir = os.listdir

    def recording_listdir(path: Any) -> list[str]:
        threads.append(threading.current_thread())
        return listdir(path)

    monkeypatch.setattr(os, "listdir", recording_listdir)
    await call("readdir", tmp_path)
    assert threads and threading.main_thread() not in threads
