"""Frame schema: one tagged union of frozen Structs per direction.

Schema evolution follows msgspec's rules: new fields get defaults, no field is
renamed or re-typed, and ``PROTOCOL_VERSION`` changes when either side could
misread the other. ``sandbox_host/wire.js`` is generated from these types
(``python -m protocol.jsgen``) and a test fails when it drifts.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PROTOCOL_VERSION = 3

OutputStream = Literal["log", "warn", "error"]


class ErrorInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An error thrown by user code, as the child saw it."""

    name: str
    message: str
    stack: str | None = None


# --- child -> host ---------------------------------------------------------


class Ready(msgspec.Struct, frozen=True, tag="ready", forbid_unknown_fields=True):
    """A child's answer to ``Hello``: it is loaded, speaks this protocol, runs this engine."""

    protocol: int
    deno: str
    v8: str


class Output(msgspec.Struct, frozen=True, tag="output", forbid_unknown_fields=True):
    """Console output of one call (one or more lines, each ending in a newline)."""

    stream: OutputStream
    text: str


class Lost(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A global that could not be kept in a snapshot, and why."""

    name: str
    reason: str


class Done(msgspec.Struct, frozen=True, tag="done", forbid_unknown_fields=True):
    """The code settled: a completion value rendered as text, or an error.

    In a stateful run that completed, the blob holds the new snapshot
    (``snapshot`` is true) and ``lost`` lists the globals it could not keep.
    """

    ok: bool
    result: str | None = None
    error: ErrorInfo | None = None
    snapshot: bool = False
    lost: list[Lost] = []


class Call(msgspec.Struct, frozen=True, tag="call", forbid_unknown_fields=True):
    """The user's code asks for a capability (``fetch``, ``fs``); the blob carries a body.

    ``args`` are the call's arguments as the JavaScript shim sends them; the
    supervisor validates them like any other untrusted input.
    """

    id: int
    capability: str
    args: dict[str, Any] = {}


class Preloaded(msgspec.Struct, frozen=True, tag="preloaded", forbid_unknown_fields=True):
    """The modules of a ``Preload`` were evaluated (or ``error`` says why not)."""

    ok: bool
    error: ErrorInfo | None = None


ChildFrame = Ready | Output | Done | Call | Preloaded


# --- host -> child ---------------------------------------------------------


class WasmPreload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A preloaded module in the Run blob (after the snapshot, in list order)."""

    name: str
    size: int
    instantiate: bool


class ImportName(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{imported as local}`` in an import statement."""

    imported: str
    local: str


class ImportBinding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One static ``import`` of the cell, taken out of its code: load, then bind these names."""

    specifier: str
    default: str | None = None
    namespace: str | None = None
    named: list[ImportName] = []


class Run(msgspec.Struct, frozen=True, tag="run", forbid_unknown_fields=True):
    """The one execution a child performs.

    ``stateful`` asks for a snapshot at the end; ``restore`` says the blob starts
    with the snapshot to resume from; ``wasm`` lists the preloaded modules whose
    bytes end the blob; ``imports`` are the cell's static imports, loaded through
    ``import`` capability calls before the cell runs.
    """

    protocol: int
    code: str
    output_limit_bytes: int
    stateful: bool = False
    restore: bool = False
    wasm: list[WasmPreload] = []
    imports: list[ImportBinding] = []


class PreloadModule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One bundle in a ``Preload`` blob (in list order): its specifier and format."""

    specifier: str
    format: str
    size: int


class Preload(msgspec.Struct, frozen=True, tag="preload", forbid_unknown_fields=True):
    """Evaluate these module bundles now, before the ``Run`` (which may never come).

    Sent to a child set aside for executions that import exactly these
    modules, so their evaluation is off the execution's path. Console output
    from it is captured (under ``output_limit_bytes``) and sent as usual.
    With ``repl``, the child also loads and connects the inspector that
    evaluates cells with top-level await (~20 ms), for an execution that has one.
    """

    modules: list[PreloadModule]
    output_limit_bytes: int
    repl: bool = False


class CallError(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Why a capability call failed: a Node-like ``code`` (``ENOENT``, ``EPOLICY``...)."""

    code: str
    message: str
    path: str | None = None


class Reply(msgspec.Struct, frozen=True, tag="reply", forbid_unknown_fields=True):
    """The answer to one ``Call``: a value (and a blob) or an error."""

    id: int
    ok: bool
    value: dict[str, Any] | None = None
    error: CallError | None = None


class Hello(msgspec.Struct, frozen=True, tag="hello", forbid_unknown_fields=True):
    """Asks a child to answer ``Ready`` (the server's start-up check of its sandbox).

    Other children are not asked: a child reads its work as soon as it has
    loaded, and a handshake with each would cost every execution a round trip.
    """


HostFrame = Run | Reply | Preload | Hello
