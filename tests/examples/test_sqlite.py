"""examples/sqlite: the official SQLite wasm build, run in the sandbox as the README shows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from supervisor.config import CapabilitySettings, ModuleSettings
from tests.conftest import run, start_engine

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sqlite"


def load_fetcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_wasm", EXAMPLE / "fetch_wasm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_pins_the_same_version_it_downloads() -> None:
    fetcher = load_fetcher()
    code = (EXAMPLE / "sqlite.js").read_text()
    assert f'"npm:@sqlite.org/sqlite-wasm@{fetcher.VERSION}"' in code


async def test_the_sqlite_example_creates_inserts_and_queries(tmp_path: Path) -> None:
    wasm = load_fetcher().fetch_wasm(tmp_path / "sqlite3.wasm")
    async with start_engine(
        tmp_path / "data",
        capabilities=CapabilitySettings(wasm_modules=(f"sqlite3={wasm}",)),
        modules=ModuleSettings(enabled=True, cache_dir=tmp_path / "modules"),
        heap_memory_max_mb=32,
    ) as services:
        record = await run(
            services, (EXAMPLE / "sqlite.js").read_text(), execution_timeout_secs=120
        )
    assert record.status.value == "completed", record.error
    assert record.result is not None
    result = json.loads(record.result)
    assert result["sqlite"].startswith("3.")
    assert result["rows"] == [
        {"id": 2, "name": "Grace Hopper", "born": 1906},
        {"id": 3, "name": "Edsger Dijkstra", "born": 1930},
    ]
