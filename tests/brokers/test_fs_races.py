"""Symlink races: a directory swapped for a link to outside while the broker works inside it.

A thread exchanges ``allowed/d`` (a real directory) and a symlink to ``outside`` atomically with
``renameat2(RENAME_EXCHANGE)``, as fast as it can, while the broker performs thousands of allowed
operations under ``allowed/d``. Checking ``realpath`` and then opening by name loses this race;
the broker's walk from directory handles with ``O_NOFOLLOW`` must never reach ``outside``.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.brokers.fs import FsBroker
from supervisor.brokers.models import BrokerError, FsOp, FsRequest, FsResponse
from tests._requirements import guards
from tests.brokers.test_fs import prefix_policy

pytestmark = pytest.mark.anyio

OPERATIONS = 2000
SECRET = b"SECRET"
PUBLIC = b"public, and longer than the secret"
OUTSIDE_NAMES = ["f", "outside-only"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchanger() -> Callable[[Path, Path], None] | None:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]

    def exchange(a: Path, b: Path) -> None:
        if renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return exchange


EXCHANGE = _exchanger()


@dataclass
class Tally:
    """What the broker's operations came to while the swapper ran."""

    attempted: int = 0
    succeeded: int = 0
    escapes: int = 0
    swaps: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


@dataclass
class Arena:
    allowed: Path
    outside: Path

    @property
    def inside(self) -> Path:
        return self.allowed / "d"


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "d").mkdir(parents=True)
    (allowed / "d" / "f").write_bytes(PUBLIC)
    outside.mkdir()
    (outside / "f").write_bytes(SECRET)
    (outside / "outside-only").write_bytes(SECRET)
    (allowed / "swap").symlink_to(outside)
    return Arena(allowed, outside)


@contextmanager
def swapping(arena: Arena, tally: Tally) -> Iterator[None]:
    """Keep exchanging ``allowed/d`` and a link to ``outside`` until the block ends."""
    assert EXCHANGE is not None
    exchange = EXCHANGE
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            exchange(arena.inside, arena.allowed / "swap")
            tally.swaps += 1

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        if arena.inside.is_symlink():
            exchange(arena.inside, arena.allowed / "swap")


async def attempt(
    tally: Tally,
    decide: Callable[[dict[str, Any]], Awaitable[Any]],
    op: FsOp,
    path: Path,
    **kw: Any,
) -> FsResponse | None:
    tally.attempted += 1
    try:
        response = await FsBroker().handle(FsRequest(op=op, path=str(path), **kw), decide)
    except BrokerError as error:
        assert error.code != "EPOLICY", error
        tally.refusals[error.code] += 1
        return None
    tally.succeeded += 1
    return response


def assert_outside_untouched(arena: Arena) -> None:
    assert sorted(p.name for p in arena.outside.iterdir()) == OUTSIDE_NAMES
    assert all((arena.outside / name).read_bytes() == SECRET for name in OUTSIDE_NAMES)


pytest_skip_without_exchange = pytest.mark.skipif(
    EXCHANGE is None, reason="renameat2(RENAME_EXCHANGE) is not available"
)


async def race_reads(arena: Arena, operations: int = OPERATIONS) -> Tally:
    """Read, list and stat under ``allowed/d`` while it is swapped; count what leaked."""
    tally = Tally()
    decide = prefix_policy(arena.allowed)
    with swapping(arena, tally), anyio.fail_after(60):
        for i in range(operations):
            match i % 3:
                case 0:
                    got = await attempt(tally, decide, "readFile", arena.inside / "f")
                    leaked = got is not None and got.data == SECRET
                case 1:
                    got = await attempt(tally, decide, "readdir", arena.inside)
                    leaked = got is not None and "outside-only" in (got.names or ())
                case _:
                    got = await attempt(tally, decide, "stat", arena.inside / "f")
                    info = got.stat if got is not None else None
                    leaked = info is not None and info.size == len(SECRET)
            tally.escapes += leaked
    return tally


async def race_writes(arena: Arena, operations: int = OPERATIONS) -> Tally:
    """Create, overwrite, copy, move and remove under ``allowed/d`` while it is swapped."""
    tally = Tally()
    decide = prefix_policy(arena.allowed)
    d = arena.inside
    with swapping(arena, tally), anyio.fail_after(60):
        for i in range(operations):
            match i % 6:
                case 0:
                    await attempt(tally, decide, "writeFile", d / "f", data=PUBLIC)
                case 1:
                    await attempt(tally, decide, "appendFile", d / f"log-{i}", data=b"x")
                case 2:
                    await attempt(tally, decide, "mkdir", d / f"m-{i}" / "n", recursive=True)
                case 3:
                    await attempt(tally, decide, "rm", d / "outside-only", recursive=True)
                case 4:
                    await attempt(tally, decide, "rename", d / "f", destination=str(d / "g"))
                    await attempt(tally, decide, "rename", d / "g", destination=str(d / "f"))
                case _:
                    await attempt(tally, decide, "copyFile", d / "f", destination=str(d / f"c-{i}"))
    copies = [p for p in arena.inside.iterdir() if p.name.startswith("c-")]
    tally.escapes += sum(p.read_bytes() == SECRET for p in copies)
    return tally


@guards("fs:no-escape")
@pytest_skip_without_exchange
async def test_swapping_a_directory_for_a_symlink_never_leaks_outside_contents(
    arena: Arena,
) -> None:
    tally = await race_reads(arena)
    assert tally.attempted == OPERATIONS
    assert tally.escapes == 0, tally
    # The race really ran: some operations saw the real directory, some the swapped-in link.
    assert tally.succeeded > 0 and tally.refusals["ELOOP"] > 0, tally
    assert set(tally.refusals) <= {"ELOOP", "ENOENT"}, tally
    assert_outside_untouched(arena)


@guards("fs:no-escape")
@pytest_skip_without_exchange
async def test_swapping_a_directory_for_a_symlink_never_writes_outside(arena: Arena) -> None:
    tally = await race_writes(arena)
    assert tally.attempted >= OPERATIONS
    assert tally.escapes == 0, tally
    assert tally.succeeded > 0 and tally.refusals["ELOOP"] > 0, tally
    assert_outside_untouched(arena)
