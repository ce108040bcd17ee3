"""The JavaScript view of the frame schema never drifts from the Python Structs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import jsgen
from protocol.frames import PROTOCOL_VERSION


def test_the_committed_files_are_what_jsgen_renders() -> None:
    for path, text in jsgen.rendered().items():
        assert path.read_text() == text, f"{path.name} drifted: run python -m protocol.jsgen"


def test_jsgen_check_passes_without_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {path: path.stat().st_mtime_ns for path in jsgen.rendered()}
    monkeypatch.setattr("sys.argv", ["jsgen", "--check"])
    jsgen.main()
    assert {path: path.stat().st_mtime_ns for path in jsgen.rendered()} == before


def test_jsgen_check_names_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "wire.js"
    stale.write_text("// old\n")
    monkeypatch.setattr(jsgen, "rendered", lambda: {stale: jsgen.render()})
    monkeypatch.setattr("sys.argv", ["jsgen", "--check"])
    with pytest.raises(SystemExit, match=r"wire\.js out of date"):
        jsgen.main()


def test_the_rendered_module_carries_the_protocol_version() -> None:
    assert f"export const PROTOCOL_VERSION = {PROTOCOL_VERSION};\n" in jsgen.render()


def test_the_schema_describes_both_directions_without_being_in_the_runner() -> None:
    schema = json.loads(jsgen.render_schema())
    assert schema["protocol"] == PROTOCOL_VERSION
    assert set(schema["child"]["discriminator"]["mapping"]) == {
        "ready",
        "output",
        "done",
        "call",
        "preloaded",
    }
    assert "run" in schema["host"]["discriminator"]["mapping"]
    assert "SCHEMA" not in jsgen.render()
