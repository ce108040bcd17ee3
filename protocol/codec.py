"""Length-prefixed frame codec with an incremental, size-capped decoder."""

from __future__ import annotations

import struct
from typing import Any, Generic, TypeVar

import msgspec

MAGIC = b"MV"
_HEADER = struct.Struct(">2sII")
HEADER_BYTES = _HEADER.size

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class FrameError(Exception):
    """Bytes on the channel that are not a valid frame; the channel is unusable after it."""


def encode_frame(frame: msgspec.Struct, blob: bytes = b"") -> bytes:
    """Serialize one frame (and an optional binary attachment) to wire bytes."""
    body = _encoder.encode(frame)
    return _HEADER.pack(MAGIC, len(body), len(blob)) + body + blob


class FrameDecoder(Generic[T]):
    """Turns a byte stream into frames of one tagged union.

    ``feed`` never raises anything but :class:`FrameError`, whatever the bytes
    or however they are chunked. After an error the decoder stays failed.
    """

    def __init__(self, frame_type: Any, *, max_frame_bytes: int) -> None:
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(frame_type)
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._failed: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[T, bytes]]:
        """Add bytes; return every complete ``(frame, blob)`` now available."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        frames: list[tuple[T, bytes]] = []
        start = 0
        buf = self._buf
        try:
            while len(buf) - start >= HEADER_BYTES:
                magic, json_len, blob_len = _HEADER.unpack_from(buf, start)
                if magic != MAGIC:
                    raise FrameError("data outside the frame protocol (bad frame header)")
                size = json_len + blob_len
                if size > self._max:
                    raise FrameError(
                        f"frame of {size} bytes exceeds the {self._max}-byte frame limit"
                    )
                end = start + HEADER_BYTES + size
                if len(buf) < end:
                    break
                body_end = start + HEADER_BYTES + json_len
                # One copy out of the buffer (slicing a bytearray would copy twice).
                with memoryview(buf) as view:
                    body = bytes(view[start + HEADER_BYTES : body_end])
                    blob = bytes(view[body_end:end])
                try:
                    frame = self._decoder.decode(body)
                except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
                    raise FrameError(f"malformed frame: {exc}") from None
                frames.append((frame, blob))
                start = end
        except FrameError as exc:
            self._failed = exc
            self._buf = bytearray()
            if not frames:
                raise
            # Frames that arrived whole before the garbage still count; the
            # error is raised by the next call.
            return frames
        if start:
            del buf[:start]
        return frames
