"""The JavaScript view of the frame schema never drifts from the Python Structs."""

from __future__ import annotations

import pytest

from protocol import jsgen
from protocol.frames import PROTOCOL_VERSION


def test_the_committed_wire_js_is_what_jsgen_renders() -> None:
    committed = jsgen.TARGET.read_text()
    assert committed == jsgen.render(), "sandbox_host/wire.js drifted: run python -m protocol.jsgen"


def test_jsgen_check_passes_without_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    before = jsgen.TARGET.stat().st_mtime_ns
    monkeypatch.setattr("sys.argv", ["jsgen", "--check"])
    jsgen.main()
    assert jsgen.TARGET.stat().st_mtime_ns == before


def test_the_rendered_module_carries_the_protocol_version() -> None:
    assert f"export const PROTOCOL_VERSION = {PROTOCOL_VERSION};\n" in jsgen.render()
