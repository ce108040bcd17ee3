"""OutputSink: line splitting, stream prefixes and the byte cap."""

from __future__ import annotations

import pytest

from protocol import OutputStream
from supervisor.executions.output import OutputSink

PREFIXES: dict[OutputStream, str] = {"log": "", "warn": "[WARN] ", "error": "[ERROR] "}

# Frames that cut lines and characters' neighbours, in every stream.
FRAMES: list[tuple[OutputStream, str]] = [
    ("log", "ab\ncdé"),
    ("log", "f\n"),
    ("warn", "漢字\nwa"),
    ("warn", "rn\n"),
    ("error", "😀x\n\n"),
    ("log", "end\n"),
]
LINES = [
    "ab\n",
    "cdéf\n",
    "[WARN] 漢字\n",
    "[WARN] warn\n",
    "[ERROR] 😀x\n",
    "[ERROR] \n",
    "end\n",
]
FULL = "".join(LINES)
FULL_BYTES = len(FULL.encode())


def truncation_line(limit: int) -> str:
    return f"[output truncated: limit of {limit} bytes reached]\n"


def run(limit: int, frames: list[tuple[OutputStream, str]]) -> tuple[OutputSink, list[str]]:
    """Write every frame, taking lines after each one as the engine does."""
    sink = OutputSink(limit)
    lines: list[str] = []
    for stream, text in frames:
        sink.write(stream, text)
        lines += sink.take()
    lines += sink.take(final=True)
    return sink, lines


def test_lines_cut_across_frames_are_joined() -> None:
    sink = OutputSink(1000)
    sink.write("log", "ab")
    assert sink.take() == []
    sink.write("log", "c\nde")
    assert sink.take() == ["abc\n"]
    sink.write("log", "f\n")
    assert sink.take() == ["def\n"]


def test_one_frame_with_many_lines_gives_many_lines() -> None:
    sink = OutputSink(1000)
    sink.write("log", "a\nb\n\nc\n")
    assert sink.take() == ["a\n", "b\n", "\n", "c\n"]


def test_take_keeps_the_partial_line_until_final() -> None:
    sink = OutputSink(1000)
    sink.write("log", "a\nb")
    assert sink.take() == ["a\n"]
    assert sink.take() == []
    assert sink.take(final=True) == ["b\n"]
    assert sink.take(final=True) == []


def test_take_final_with_no_partial_line_adds_nothing() -> None:
    sink = OutputSink(1000)
    sink.write("log", "a\n")
    assert sink.take(final=True) == ["a\n"]


def test_empty_text_changes_nothing() -> None:
    sink = OutputSink(1000)
    sink.write("warn", "")
    sink.write("log", "")
    assert sink.take(final=True) == []


def test_mixed_frames_give_the_expected_lines() -> None:
    sink, lines = run(1000, FRAMES)
    assert lines == LINES
    assert not sink.truncated


@pytest.mark.parametrize("stream", ["log", "warn", "error"])
def test_every_line_gets_its_stream_prefix_wherever_the_frames_cut(stream: OutputStream) -> None:
    text = "one\ntwo é\n\nthree 漢😀\n"
    expected = [PREFIXES[stream] + line + "\n" for line in text.split("\n")[:-1]]
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            _, lines = run(1000, [(stream, text[:i]), (stream, text[i:j]), (stream, text[j:])])
            assert lines == expected, (i, j)


def test_warn_and_error_prefix_every_line_of_one_frame() -> None:
    sink = OutputSink(1000)
    sink.write("warn", "a\nb\n")
    sink.write("error", "c\nd\n")
    assert sink.take() == ["[WARN] a\n", "[WARN] b\n", "[ERROR] c\n", "[ERROR] d\n"]


def test_a_prefixed_line_spanning_frames_gets_one_prefix() -> None:
    sink = OutputSink(1000)
    sink.write("warn", "ab")
    sink.write("warn", "c\nd")
    sink.write("warn", "e\n")
    assert sink.take() == ["[WARN] abc\n", "[WARN] de\n"]


def test_output_of_exactly_the_limit_is_not_truncated() -> None:
    sink, lines = run(FULL_BYTES, FRAMES)
    assert lines == LINES
    assert not sink.truncated


def test_one_byte_past_the_limit_truncates() -> None:
    sink = OutputSink(4)
    sink.write("log", "abc\n")
    sink.write("log", "d\n")
    assert sink.truncated
    assert sink.take(final=True) == ["abc\n", truncation_line(4)]


def test_a_limit_of_zero_keeps_only_the_truncation_line() -> None:
    sink, lines = run(0, [("log", "a\n")])
    assert sink.truncated
    assert lines == [truncation_line(0)]


@pytest.mark.parametrize("limit", range(FULL_BYTES))
def test_the_cap_keeps_as_much_as_fits_and_ends_with_the_truncation_line(limit: int) -> None:
    sink, lines = run(limit, FRAMES)
    assert sink.truncated
    assert lines[-1] == truncation_line(limit)
    assert "truncated" in lines[-1]
    # The longest prefix of the uncapped output that fits, cut on a character boundary and,
    # if the cut fell inside a line, ended by a newline of the sink's own (which counts).

    def closed(n: int) -> str:
        part = FULL[:n]
        return part if not part or part.endswith("\n") else part + "\n"

    fits = max(n for n in range(len(FULL) + 1) if len(closed(n).encode()) <= limit)
    assert "".join(lines[:-1]) == closed(fits)


@pytest.mark.parametrize("limit", range(FULL_BYTES))
def test_nothing_written_after_the_truncation_line_is_kept(limit: int) -> None:
    sink, lines = run(limit, FRAMES)
    assert lines.count(truncation_line(limit)) == 1
    sink.write("log", "more\n")
    sink.write("warn", "and more")
    assert sink.take() == []
    assert sink.take(final=True) == []


@pytest.mark.parametrize("limit", range(9))
def test_the_cap_never_splits_a_multi_byte_character(limit: int) -> None:
    _, lines = run(limit, [("log", "é漢😀é漢😀")])
    kept = "".join(lines[:-1]).rstrip("\n")
    assert "é漢😀é漢😀".startswith(kept)
    assert "\ufffd" not in kept
    assert len(kept.encode()) <= limit


def test_taking_lines_as_they_come_or_all_at_the_end_gives_the_same_output() -> None:
    for limit in range(FULL_BYTES + 2):
        _, stepwise = run(limit, FRAMES)
        sink = OutputSink(limit)
        for stream, text in FRAMES:
            sink.write(stream, text)
        assert sink.take(final=True) == stepwise, limit


def test_the_lines_before_the_truncation_line_never_exceed_the_limit() -> None:
    sink = OutputSink(5)
    sink.write("log", "abcdefgh\n")
    lines = sink.take(final=True)
    assert lines[-1] == truncation_line(5)
    assert sum(len(line.encode()) for line in lines[:-1]) <= 5  # stored: "abcde\n", 6 bytes
