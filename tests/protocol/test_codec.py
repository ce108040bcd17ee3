"""The frame codec: round trips, size cap, malformed input, hostile bytes."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    PROTOCOL_VERSION,
    ChildFrame,
    Done,
    ErrorInfo,
    FrameDecoder,
    FrameError,
    HostFrame,
    Output,
    Ready,
    Run,
    encode_frame,
)
from protocol.codec import HEADER_BYTES, MAGIC
from tests._requirements import guards

MAX = 1 << 20

CHILD_FRAMES: list[msgspec.Struct] = [
    Ready(protocol=PROTOCOL_VERSION, deno="2.9.8", v8="13.0"),
    Output(stream="log", text="hello\n"),
    Output(stream="warn", text="careful é 漢 😀\n"),
    Output(stream="error", text=""),
    Done(ok=True, result="42"),
    Done(ok=True),
    Done(ok=False, error=ErrorInfo(name="TypeError", message="x is not a function")),
    Done(ok=False, error=ErrorInfo(name="Error", message="boom", stack="Error: boom\n    at a")),
]
HOST_FRAMES: list[msgspec.Struct] = [
    Run(protocol=PROTOCOL_VERSION, code="1 + 1", output_limit_bytes=1024),
    Run(protocol=PROTOCOL_VERSION, code="", output_limit_bytes=0),
]


def child_decoder(max_frame_bytes: int = MAX) -> FrameDecoder[ChildFrame]:
    return FrameDecoder(ChildFrame, max_frame_bytes=max_frame_bytes)


def raw_frame(body: bytes, blob: bytes = b"") -> bytes:
    """Wire bytes for an arbitrary JSON body, valid or not."""
    return struct.pack(">2sII", MAGIC, len(body), len(blob)) + body + blob


def rechunk(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """Cut ``data`` into pieces of the given sizes, cycling through them."""
    position, index = 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        yield data[position : position + size]
        position += size
        index += 1


def feed_all(decoder: FrameDecoder[Any], chunks: Iterator[bytes] | list[bytes]) -> list[Any]:
    frames: list[Any] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


# --- round trips ------------------------------------------------------------


@pytest.mark.parametrize("frame", CHILD_FRAMES, ids=repr)
def test_every_child_frame_type_round_trips(frame: msgspec.Struct) -> None:
    assert child_decoder().feed(encode_frame(frame)) == [(frame, b"")]


@pytest.mark.parametrize("frame", HOST_FRAMES, ids=repr)
def test_every_host_frame_type_round_trips(frame: msgspec.Struct) -> None:
    decoder: FrameDecoder[HostFrame] = FrameDecoder(HostFrame, max_frame_bytes=MAX)
    assert decoder.feed(encode_frame(frame)) == [(frame, b"")]


def test_several_frames_in_one_feed_all_come_out_in_order() -> None:
    data = b"".join(encode_frame(frame) for frame in CHILD_FRAMES)
    assert child_decoder().feed(data) == [(frame, b"") for frame in CHILD_FRAMES]


def test_blobs_round_trip_with_their_frame() -> None:
    blobs = [b"\x00\x01binary\xff", b"", bytes(range(256)) * 4]
    frames = [Output(stream="log", text=str(i)) for i in range(len(blobs))]
    data = b"".join(encode_frame(f, b) for f, b in zip(frames, blobs, strict=True))
    assert child_decoder().feed(data) == list(zip(frames, blobs, strict=True))


def test_a_frame_split_at_every_byte_decodes_the_same() -> None:
    blob = b"attachment \x00\xff"
    data = b"".join(encode_frame(frame, blob) for frame in CHILD_FRAMES)
    expected = [(frame, blob) for frame in CHILD_FRAMES]
    for cut in range(len(data) + 1):
        decoder = child_decoder()
        assert feed_all(decoder, [data[:cut], data[cut:]]) == expected, cut
        assert decoder.buffered == 0


def test_a_frame_fed_one_byte_at_a_time_decodes_the_same() -> None:
    frame = Output(stream="warn", text="é 漢 😀\n")
    data = encode_frame(frame, b"blob")
    decoder = child_decoder()
    results = [decoder.feed(data[i : i + 1]) for i in range(len(data))]
    assert results[:-1] == [[]] * (len(data) - 1)
    assert results[-1] == [(frame, b"blob")]


def test_buffered_counts_the_bytes_of_an_unfinished_frame() -> None:
    data = encode_frame(Output(stream="log", text="partial\n"))
    decoder = child_decoder()
    assert decoder.feed(data[:-3]) == []
    assert decoder.buffered == len(data) - 3
    assert len(decoder.feed(data[-3:])) == 1
    assert decoder.buffered == 0


# --- size cap ---------------------------------------------------------------


def test_a_frame_of_exactly_the_limit_is_accepted() -> None:
    frame = Output(stream="log", text="x" * 100)
    data = encode_frame(frame, b"blob")
    limit = len(data) - HEADER_BYTES
    assert child_decoder(limit).feed(data) == [(frame, b"blob")]


def test_a_frame_over_the_limit_raises_naming_the_limit() -> None:
    data = encode_frame(Output(stream="log", text="x" * 200))
    with pytest.raises(FrameError, match="100-byte frame limit"):
        child_decoder(100).feed(data)


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    data = encode_frame(Output(stream="log", text="x" * 200))
    with pytest.raises(FrameError, match="100-byte"):
        child_decoder(100).feed(data[:HEADER_BYTES])


def test_a_blob_counts_toward_the_frame_limit() -> None:
    data = encode_frame(Output(stream="log", text="x"), b"\x00" * 200)
    with pytest.raises(FrameError, match="100-byte"):
        child_decoder(100).feed(data)


def test_a_header_claiming_four_gigabytes_is_refused() -> None:
    header = struct.pack(">2sII", MAGIC, 0xFFFFFFFF, 0xFFFFFFFF)
    with pytest.raises(FrameError, match="frame limit"):
        child_decoder().feed(header)


# --- malformed input --------------------------------------------------------


def test_bad_magic_raises_frame_error() -> None:
    data = b"XX" + encode_frame(Output(stream="log", text="a\n"))[2:]
    with pytest.raises(FrameError, match="bad frame header"):
        child_decoder().feed(data)


def test_text_printed_outside_the_protocol_raises_frame_error() -> None:
    with pytest.raises(FrameError):
        child_decoder().feed(b"Hello from a stray console.log\n")


MALFORMED_BODIES = {
    "invalid json": b'{"type": "output", "stream": ',
    "not an object": b"[1, 2, 3]",
    "empty body": b"",
    "invalid utf-8": b'{"type":"output","stream":"log","text":"\xff\xfe"}',
    "utf-8 encoded surrogate": b'{"type":"output","stream":"log","text":"\xed\xa0\x80"}',
    "lone high surrogate escape": b'{"type":"output","stream":"log","text":"\\ud800"}',
    "lone high surrogate escape then text": b'{"type":"output","stream":"log","text":"\\ud800a"}',
    "lone low surrogate escape": b'{"type":"output","stream":"log","text":"\\udc00"}',
    "reversed surrogate pair": b'{"type":"output","stream":"log","text":"\\udc00\\ud800"}',
    "unknown tag": b'{"type":"explode","stream":"log","text":"a"}',
    "missing tag": b'{"stream":"log","text":"a"}',
    "host frame on the child channel": b'{"type":"run","protocol":1,"code":"",'
    b'"output_limit_bytes":1}',
    "unknown field": b'{"type":"output","stream":"log","text":"a","extra":1}',
    "unknown field in a nested struct": b'{"type":"done","ok":false,'
    b'"error":{"name":"E","message":"m","extra":1}}',
    "missing field": b'{"type":"ready","protocol":1,"deno":"2"}',
    "wrong field type": b'{"type":"ready","protocol":"1","deno":"2","v8":"3"}',
    "unknown stream": b'{"type":"output","stream":"debug","text":"a"}',
    "trailing garbage": b'{"type":"done","ok":true} x',
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_a_malformed_body_raises_frame_error_and_nothing_else(body: bytes) -> None:
    with pytest.raises(FrameError, match="malformed frame"):
        child_decoder().feed(raw_frame(body))


def test_the_decoder_stays_failed_after_an_error() -> None:
    decoder = child_decoder()
    good = encode_frame(Output(stream="log", text="a\n"))
    with pytest.raises(FrameError):
        decoder.feed(raw_frame(b"{"))
    for data in (good, b"", good):
        with pytest.raises(FrameError):
            decoder.feed(data)
    assert decoder.buffered == 0


def test_frames_before_the_bad_one_in_earlier_feeds_were_already_delivered() -> None:
    decoder = child_decoder()
    frame = Output(stream="log", text="a\n")
    assert decoder.feed(encode_frame(frame)) == [(frame, b"")]
    with pytest.raises(FrameError):
        decoder.feed(b"garbage!!!!")


# --- properties -------------------------------------------------------------

_texts = st.text(st.characters(codec="utf-8"), max_size=40)
_error_infos = st.builds(ErrorInfo, name=_texts, message=_texts, stack=st.none() | _texts)
_child_frames = st.one_of(
    st.builds(Ready, protocol=st.integers(0, 2**31), deno=_texts, v8=_texts),
    st.builds(Output, stream=st.sampled_from(["log", "warn", "error"]), text=_texts),
    st.builds(Done, ok=st.booleans(), result=st.none() | _texts, error=st.none() | _error_infos),
)
_frames_with_blobs = st.tuples(_child_frames, st.binary(max_size=20))
_chunk_sizes = st.lists(st.integers(1, 64), min_size=1, max_size=20)

_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    _texts,
    st.sampled_from(["ready", "output", "done", "run", "log", "warn", "error"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(_texts, st.integers(), max_size=3),
)
_json_bodies = st.dictionaries(
    st.sampled_from(
        ["type", "stream", "text", "ok", "result", "error", "protocol", "deno", "v8", "x"]
    ),
    _json_values,
    max_size=5,
).map(lambda obj: json.dumps(obj).encode())
_headers = st.builds(
    lambda json_len, blob_len: struct.pack(">2sII", MAGIC, json_len, blob_len),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
_hostile_pieces = st.one_of(
    st.binary(max_size=64),
    _frames_with_blobs.map(lambda fb: encode_frame(*fb)),
    st.builds(raw_frame, _json_bodies, st.binary(max_size=8)),
    st.builds(raw_frame, st.binary(max_size=64), st.binary(max_size=8)),
    _headers,
)
_hostile_streams = st.lists(_hostile_pieces, max_size=6).map(b"".join)


def feed_hostile(decoder: FrameDecoder[ChildFrame], chunks: Iterator[bytes]) -> None:
    """Feed every chunk: only FrameError may escape, and once failed, always failed."""
    failed = False
    for chunk in chunks:
        try:
            frames = decoder.feed(chunk)
        except FrameError:
            failed = True
            continue
        assert not failed, "a failed decoder accepted more bytes"
        for frame, blob in frames:
            assert isinstance(frame, Ready | Output | Done)
            assert isinstance(blob, bytes)


@guards("channel:decoder-total")
@settings(max_examples=200, deadline=None)
@given(data=_hostile_streams, sizes=_chunk_sizes)
def test_feed_never_raises_anything_but_frame_error(data: bytes, sizes: list[int]) -> None:
    feed_hostile(child_decoder(4096), rechunk(data, sizes))


@guards("channel:decoder-total")
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512), sizes=_chunk_sizes)
def test_feed_of_arbitrary_bytes_never_raises_anything_but_frame_error(
    data: bytes, sizes: list[int]
) -> None:
    feed_hostile(child_decoder(4096), rechunk(data, sizes))


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(_frames_with_blobs, max_size=8), sizes=_chunk_sizes)
def test_valid_frames_rechunked_arbitrarily_decode_to_the_same_frames(
    frames: list[tuple[msgspec.Struct, bytes]], sizes: list[int]
) -> None:
    data = b"".join(encode_frame(frame, blob) for frame, blob in frames)
    decoder = child_decoder()
    assert feed_all(decoder, rechunk(data, sizes)) == frames
    assert decoder.buffered == 0
