"""The wire protocol between the supervisor and a sandbox child.

Sans-IO: this package turns frames into bytes and bytes into frames. It imports
nothing but msgspec and the standard library; all I/O lives in the supervisor.

Frame layout on the pipe::

    magic "MV" (2 bytes) | json length (u32 BE) | blob length (u32 BE) | json | blob

The JSON part is one frame of the direction's tagged union; the optional blob
carries large binary payloads (snapshots, file bodies) without base64.
"""

from protocol.codec import FrameDecoder, FrameError, encode_frame
from protocol.frames import (
    PROTOCOL_VERSION,
    Call,
    CallError,
    ChildFrame,
    Done,
    ErrorInfo,
    Hello,
    HostFrame,
    ImportBinding,
    ImportName,
    Lost,
    Output,
    OutputStream,
    Preload,
    Preloaded,
    PreloadModule,
    Ready,
    Reply,
    Run,
    WasmPreload,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Call",
    "CallError",
    "ChildFrame",
    "Done",
    "ErrorInfo",
    "FrameDecoder",
    "FrameError",
    "Hello",
    "HostFrame",
    "ImportBinding",
    "ImportName",
    "Lost",
    "Output",
    "OutputStream",
    "Preload",
    "PreloadModule",
    "Preloaded",
    "Ready",
    "Reply",
    "Run",
    "WasmPreload",
    "encode_frame",
]
