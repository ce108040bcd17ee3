"""The SQLite execution store: records, recovery after a crash, and output paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervisor.errors import StorageError
from supervisor.store import (
    INTERRUPTED,
    ByteRange,
    ExecutionRecord,
    ExecutionStatus,
    LineRange,
    OutputPage,
    SqliteExecutionStore,
)

pytestmark = pytest.mark.anyio

CREATED = "2025-01-01T00:00:00.000000Z"
STARTED = "2025-01-01T00:00:01.000000Z"
COMPLETED = "2025-01-01T00:00:02.000000Z"

# Lines of one, two, three and four bytes per character, an empty line, a long one.
OUTPUT_LINES = [
    "plain ascii\n",
    "é accents é\n",
    "漢字 and 漢\n",
    "emoji 😀🎉 end\n",
    "\n",
    "mixé漢😀\n",
    "x\n",
    "😀\n",
    "a longer line " * 5 + "é\n",
    "漢\n",
    "last line 🎉\n",
]
BATCH_SIZES = [1, 3, 2, 1, 4]  # several chunks, cutting the output at varied lines
FULL = "".join(OUTPUT_LINES)
FULL_BYTES = FULL.encode()


def make_record(
    execution_id: str,
    status: ExecutionStatus = ExecutionStatus.QUEUED,
    *,
    started_at: str | None = None,
    completed_at: str | None = None,
    error: str | None = None,
) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=execution_id,
        status=status,
        code=f"console.log({execution_id!r})",
        error=error,
        heap_memory_max_mb=8,
        execution_timeout_secs=30.0,
        created_at=CREATED,
        started_at=started_at,
        completed_at=completed_at,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteExecutionStore]:
    store = SqliteExecutionStore(tmp_path / "data" / "executions.sqlite3")
    assert await store.open() == 0
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def with_output(store: SqliteExecutionStore) -> SqliteExecutionStore:
    """A store holding execution ``e`` whose output was appended in several batches."""
    await store.create(make_record("e"))
    position = 0
    for size in BATCH_SIZES:
        await store.append_output("e", OUTPUT_LINES[position : position + size])
        position += size
    assert position == len(OUTPUT_LINES)
    return store


async def read(store: SqliteExecutionStore, page: LineRange | ByteRange) -> OutputPage:
    result = await store.read_output("e", page)
    assert result is not None
    return result


async def pages_by_bytes(store: SqliteExecutionStore, limit: int) -> list[OutputPage]:
    """Every page from the start, following ``next_byte_offset``."""
    pages: list[OutputPage] = []
    offset = 0
    for _ in range(len(FULL_BYTES) + 2):
        page = await read(store, ByteRange(offset, limit))
        pages.append(page)
        if not page.has_more:
            return pages
        offset = page.next_byte_offset
    raise AssertionError(f"byte paging with limit {limit} does not end")


async def pages_by_lines(store: SqliteExecutionStore, limit: int) -> list[OutputPage]:
    """Every page from the start, following ``next_line_offset``."""
    pages: list[OutputPage] = []
    offset = 1
    for _ in range(len(OUTPUT_LINES) + 2):
        page = await read(store, LineRange(offset, limit))
        pages.append(page)
        if not page.has_more:
            return pages
        offset = page.next_line_offset
    raise AssertionError(f"line paging with limit {limit} does not end")


def line_of_byte(position: int) -> int:
    """1-based number of the line holding byte ``position`` of the whole output."""
    return FULL_BYTES.count(b"\n", 0, position) + 1


# --- records ----------------------------------------------------------------


async def test_a_created_execution_reads_back_unchanged(store: SqliteExecutionStore) -> None:
    record = make_record("a")
    await store.create(record)
    assert await store.get("a") == record


async def test_an_unknown_execution_is_none(store: SqliteExecutionStore) -> None:
    assert await store.get("nope") is None


async def test_list_returns_newest_first_and_pages(store: SqliteExecutionStore) -> None:
    for execution_id in ["a", "b", "c", "d"]:
        await store.create(make_record(execution_id))
    assert [r.execution_id for r in await store.list(limit=10, offset=0)] == ["d", "c", "b", "a"]
    assert [r.execution_id for r in await store.list(limit=2, offset=1)] == ["c", "b"]
    assert await store.list(limit=10, offset=4) == []


async def test_mark_running_then_finish_records_the_lifecycle(
    store: SqliteExecutionStore,
) -> None:
    await store.create(make_record("a"))
    await store.mark_running("a", STARTED)
    running = await store.get("a")
    assert running is not None
    assert running.status is ExecutionStatus.RUNNING
    assert running.started_at == STARTED
    assert running.completed_at is None

    await store.finish(
        "a", ExecutionStatus.COMPLETED, result="42", error=None, completed_at=COMPLETED
    )
    done = await store.get("a")
    assert done is not None
    assert done.status is ExecutionStatus.COMPLETED
    assert (done.result, done.error) == ("42", None)
    assert (done.started_at, done.completed_at) == (STARTED, COMPLETED)


async def test_finish_records_an_error(store: SqliteExecutionStore) -> None:
    await store.create(make_record("a"))
    await store.finish(
        "a", ExecutionStatus.FAILED, result=None, error="TypeError: x", completed_at=COMPLETED
    )
    done = await store.get("a")
    assert done is not None
    assert (done.status, done.result, done.error) == (ExecutionStatus.FAILED, None, "TypeError: x")


async def test_a_closed_store_raises_storage_error(tmp_path: Path) -> None:
    store = SqliteExecutionStore(tmp_path / "executions.sqlite3")
    with pytest.raises(StorageError, match="not open"):
        await store.get("a")


async def test_reopening_fails_unfinished_executions_and_leaves_final_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "executions.sqlite3"
    first = SqliteExecutionStore(path)
    await first.open()
    await first.create(make_record("queued"))
    await first.create(make_record("running", ExecutionStatus.RUNNING, started_at=STARTED))
    final = [
        make_record(
            status.value, status, started_at=STARTED, completed_at=COMPLETED, error="its own"
        )
        for status in ExecutionStatus
        if status.is_final
    ]
    for record in final:
        await first.create(record)
    await first.close()

    second = SqliteExecutionStore(path)
    try:
        assert await second.open() == 2
        queued = await second.get("queued")
        running = await second.get("running")
        assert queued is not None
        assert running is not None
        assert (queued.status, queued.error) == (ExecutionStatus.FAILED, INTERRUPTED)
        assert (running.status, running.error) == (ExecutionStatus.FAILED, INTERRUPTED)
        assert queued.completed_at == CREATED
        assert running.completed_at == STARTED
        for record in final:
            assert await second.get(record.execution_id) == record
    finally:
        await second.close()


async def test_opening_again_after_recovery_marks_nothing(tmp_path: Path) -> None:
    path = tmp_path / "executions.sqlite3"
    store = SqliteExecutionStore(path)
    await store.open()
    await store.create(make_record("a"))
    await store.close()
    marked = []
    for _ in range(2):
        store = SqliteExecutionStore(path)
        marked.append(await store.open())
        await store.close()
    assert marked == [1, 0]


# --- output: whole-output properties ----------------------------------------


async def test_appending_counts_lines_and_bytes(with_output: SqliteExecutionStore) -> None:
    record = await with_output.get("e")
    assert record is not None
    assert record.total_lines == len(OUTPUT_LINES)
    assert record.total_bytes == len(FULL_BYTES)


async def test_an_empty_batch_stores_nothing(store: SqliteExecutionStore) -> None:
    await store.create(make_record("e"))
    await store.append_output("e", [])
    record = await store.get("e")
    assert record is not None
    assert (record.total_lines, record.total_bytes) == (0, 0)


async def test_output_of_an_unknown_execution_is_none(with_output: SqliteExecutionStore) -> None:
    assert await with_output.read_output("nope", LineRange()) is None
    assert await with_output.read_output("nope", ByteRange()) is None


@pytest.mark.parametrize("page", [LineRange(), ByteRange()], ids=["lines", "bytes"])
async def test_an_execution_without_output_has_one_empty_page(
    store: SqliteExecutionStore, page: LineRange | ByteRange
) -> None:
    await store.create(make_record("e"))
    result = await read(store, page)
    assert result.data == ""
    assert not result.has_more
    assert (result.total_lines, result.total_bytes) == (0, 0)
    assert (result.start_byte, result.end_byte, result.next_byte_offset) == (0, 0, 0)
    assert result.next_line_offset == 1


async def test_a_page_carries_the_execution_status(with_output: SqliteExecutionStore) -> None:
    assert (await read(with_output, LineRange())).status is ExecutionStatus.QUEUED
    await with_output.finish(
        "e", ExecutionStatus.COMPLETED, result=None, error=None, completed_at=COMPLETED
    )
    assert (await read(with_output, ByteRange())).status is ExecutionStatus.COMPLETED


# --- output: byte mode ------------------------------------------------------

BYTE_LIMITS = [*range(1, 12), 13, 17, 31, 64, 100, len(FULL_BYTES) - 1, len(FULL_BYTES), 10_000]


@pytest.mark.parametrize("limit", BYTE_LIMITS)
async def test_byte_pages_concatenate_to_the_whole_output(
    with_output: SqliteExecutionStore, limit: int
) -> None:
    pages = await pages_by_bytes(with_output, limit)
    assert b"".join(page.data.encode() for page in pages) == FULL_BYTES


@pytest.mark.parametrize("limit", BYTE_LIMITS)
async def test_byte_page_fields_agree_with_the_data(
    with_output: SqliteExecutionStore, limit: int
) -> None:
    expected_start = 0
    for page in await pages_by_bytes(with_output, limit):
        data = page.data.encode()
        assert page.start_byte == expected_start
        assert data == FULL_BYTES[page.start_byte : page.end_byte]
        assert page.next_byte_offset == page.end_byte
        # Never more than the limit, unless one character alone is longer.
        assert len(data) <= max(limit, 4)
        assert data  # progress on every page
        assert page.start_line == line_of_byte(page.start_byte)
        assert page.end_line == line_of_byte(page.end_byte - 1)
        ends_a_line = data.endswith(b"\n")
        assert page.next_line_offset == page.end_line + (1 if ends_a_line else 0)
        assert (page.total_lines, page.total_bytes) == (len(OUTPUT_LINES), len(FULL_BYTES))
        assert page.has_more == (page.end_byte < len(FULL_BYTES))
        expected_start = page.end_byte
    assert expected_start == len(FULL_BYTES)


async def test_a_byte_page_of_one_byte_returns_one_whole_character(
    with_output: SqliteExecutionStore,
) -> None:
    pages = await pages_by_bytes(with_output, 1)
    assert [page.data for page in pages] == list(FULL)


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
async def test_a_byte_offset_inside_a_character_starts_at_that_character(
    with_output: SqliteExecutionStore, limit: int
) -> None:
    for offset in range(len(FULL_BYTES)):
        page = await read(with_output, ByteRange(offset, limit))
        data = page.data.encode()
        assert data == FULL_BYTES[page.start_byte : page.end_byte]
        assert page.start_byte <= offset < page.end_byte
        assert offset - page.start_byte < 4


@pytest.mark.parametrize("beyond", [0, 1, 1000])
async def test_a_byte_offset_at_or_past_the_end_gives_an_empty_last_page(
    with_output: SqliteExecutionStore, beyond: int
) -> None:
    page = await read(with_output, ByteRange(len(FULL_BYTES) + beyond, 10))
    assert page.data == ""
    assert not page.has_more
    assert page.start_byte == page.end_byte == page.next_byte_offset == len(FULL_BYTES)
    assert page.next_line_offset == len(OUTPUT_LINES) + 1


# --- output: line mode ------------------------------------------------------

LINE_LIMITS = [*range(1, len(OUTPUT_LINES) + 2), 100]


@pytest.mark.parametrize("limit", LINE_LIMITS)
async def test_line_pages_concatenate_to_the_whole_output(
    with_output: SqliteExecutionStore, limit: int
) -> None:
    pages = await pages_by_lines(with_output, limit)
    assert b"".join(page.data.encode() for page in pages) == FULL_BYTES


@pytest.mark.parametrize("limit", LINE_LIMITS)
async def test_line_page_fields_agree_with_the_data(
    with_output: SqliteExecutionStore, limit: int
) -> None:
    expected_line = 1
    for page in await pages_by_lines(with_output, limit):
        lines = OUTPUT_LINES[expected_line - 1 : expected_line - 1 + limit]
        assert page.data == "".join(lines)
        assert page.start_line == expected_line
        assert page.end_line == expected_line + len(lines) - 1
        assert page.next_line_offset == page.end_line + 1
        assert page.start_byte == len("".join(OUTPUT_LINES[: expected_line - 1]).encode())
        assert page.end_byte == page.start_byte + len(page.data.encode())
        assert page.next_byte_offset == page.end_byte
        assert (page.total_lines, page.total_bytes) == (len(OUTPUT_LINES), len(FULL_BYTES))
        assert page.has_more == (page.end_line < len(OUTPUT_LINES))
        expected_line = page.next_line_offset
    assert expected_line == len(OUTPUT_LINES) + 1


async def test_any_line_range_reads_exactly_those_lines(
    with_output: SqliteExecutionStore,
) -> None:
    for offset in range(1, len(OUTPUT_LINES) + 1):
        for limit in range(1, len(OUTPUT_LINES) + 2 - offset):
            page = await read(with_output, LineRange(offset, limit))
            assert page.data == "".join(OUTPUT_LINES[offset - 1 : offset - 1 + limit])


@pytest.mark.parametrize("beyond", [1, 2, 1000])
async def test_a_line_offset_past_the_end_gives_an_empty_last_page(
    with_output: SqliteExecutionStore, beyond: int
) -> None:
    page = await read(with_output, LineRange(len(OUTPUT_LINES) + beyond, 10))
    assert page.data == ""
    assert not page.has_more
    assert page.end_line == len(OUTPUT_LINES)
    assert page.next_line_offset == len(OUTPUT_LINES) + 1
    assert page.start_byte == page.end_byte == len(FULL_BYTES)


async def test_output_of_two_executions_does_not_mix(store: SqliteExecutionStore) -> None:
    await store.create(make_record("e"))
    await store.create(make_record("f"))
    await store.append_output("e", ["e1\n"])
    await store.append_output("f", ["f1\n", "f2\n"])
    await store.append_output("e", ["e2\n"])
    assert (await read(store, LineRange())).data == "e1\ne2\n"
    other = await store.read_output("f", ByteRange())
    assert other is not None
    assert other.data == "f1\nf2\n"


# --- known bugs ---------------------------------------------------------------


async def test_a_line_holding_other_line_breaks_pages_as_one_line(
    store: SqliteExecutionStore,
) -> None:
    lines = ["progress 10%\rprogress 100%\n", "form\x0cfeed\n", "sep\u2028arator\n", "last\n"]
    await store.create(make_record("e"))
    await store.append_output("e", lines[:2])
    await store.append_output("e", lines[2:])
    page = await read(store, LineRange(1, len(lines)))
    assert page.data == "".join(lines)
    assert not page.has_more
    one_by_one = [(await read(store, LineRange(n, 1))).data for n in range(1, len(lines) + 1)]
    assert one_by_one == lines


async def test_a_failed_append_leaves_the_output_as_it_was(store: SqliteExecutionStore) -> None:
    await store.create(make_record("e"))
    await store.append_output("e", ["first\n"])
    # Stand-in for a crash between storing the chunk and updating the totals.
    store.db.execute(
        "CREATE TEMP TRIGGER fail_totals BEFORE UPDATE OF total_lines ON executions "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    with pytest.raises(StorageError, match="injected failure"):
        await store.append_output("e", ["lost\n"])
    store.db.execute("DROP TRIGGER fail_totals")

    await store.append_output("e", ["second\n"])
    assert (await read(store, ByteRange())).data == "first\nsecond\n"
