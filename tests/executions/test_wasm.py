"""WebAssembly: the standard API in user code, and modules preloaded with --wasm-module."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervisor.app import Services
from supervisor.config import CapabilitySettings
from supervisor.errors import ConfigError
from supervisor.wasm import load_wasm_modules
from tests.conftest import run, start_engine

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

# (module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
ADD = bytes.fromhex(
    "0061736d0100000001070160027f7f017f030201000707010361646400000a09010700200020016a0b"
)
# (module (import "env" "f" (func (param i32))))
IMPORTS = bytes.fromhex("0061736d0100000001050160017f0002090103656e7601660000")
ADD_JS = "new Uint8Array([" + ",".join(str(b) for b in ADD) + "])"


@pytest.fixture(scope="module")
def wasm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wasm")
    (directory / "math.wasm").write_bytes(ADD)
    (directory / "imp.wasm").write_bytes(IMPORTS)
    (directory / "config.json").write_text(json.dumps({"physics": "math.wasm"}))
    return directory


@pytest.fixture(scope="module")
async def preloaded(wasm_dir: Path) -> AsyncIterator[Services]:
    settings = CapabilitySettings(
        wasm_modules=(f"math={wasm_dir / 'math.wasm'}", f"imp={wasm_dir / 'imp.wasm'}"),
        wasm_configs=(wasm_dir / "config.json",),
    )
    async with start_engine(wasm_dir / "data", capabilities=settings) as services:
        yield services


async def result(services: Services, code: str) -> str:
    record = await run(services, code)
    assert record.status.value == "completed", record.error
    assert record.result is not None
    return record.result


async def test_the_standard_api_works_sync_and_async(services: Services) -> None:
    code = f"""const bytes = {ADD_JS};
    const sync = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.add(2, 3);
    const compiled = await WebAssembly.compile(bytes);
    const {{ instance }} = await WebAssembly.instantiate(bytes);
    [WebAssembly.validate(bytes), WebAssembly.validate(new Uint8Array([1, 2])), sync,
     new WebAssembly.Instance(compiled).exports.add(1, 1), instance.exports.add(20, 22)]"""
    assert json.loads(await result(services, code)) == [True, False, 5, 2, 42]


async def test_a_module_without_imports_is_a_global_of_its_exports(preloaded: Services) -> None:
    assert await result(preloaded, "math.add(2, 3) + physics.add(10, 5)") == "20"


async def test_every_module_is_also_there_compiled(preloaded: Services) -> None:
    code = """const instance = new WebAssembly.Instance(__wasm_imp, {env: {f: () => {}}});
        [__wasm_math instanceof WebAssembly.Module, typeof imp,
         instance instanceof WebAssembly.Instance]"""
    assert json.loads(await result(preloaded, code)) == [True, "undefined", True]


async def test_code_that_does_not_name_a_module_runs_without_it(preloaded: Services) -> None:
    assert await result(preloaded, "typeof globalThis['ma' + 'th']") == "undefined"


async def test_wasm_memory_counts_toward_the_memory_limit(services: Services) -> None:
    code = """const m = new WebAssembly.Memory({initial: 1, maximum: 65536});
    for (;;) { const before = m.buffer.byteLength; m.grow(160);
               new Uint8Array(m.buffer, before).fill(1) }"""
    record = await run(services, code)
    assert record.status.value == "failed"
    assert record.error is not None and "memory limit" in record.error


@pytest.mark.parametrize(
    ("flags", "configs", "needle"),
    [
        (("math={dir}/math.wasm", "math={dir}/imp.wasm"), (), "defined twice"),
        (("9lives={dir}/math.wasm",), (), "not a usable JavaScript identifier"),
        (("class={dir}/math.wasm",), (), "not a usable JavaScript identifier"),
        (("gone={dir}/missing.wasm",), (), "missing.wasm"),
        (("bad={dir}/config.json",), (), "not a WebAssembly module"),
        (("math",), (), "name=path"),
        ((), ("{dir}/nope.json",), "nope.json"),
    ],
)
def test_bad_preloads_stop_start_up_naming_them(
    wasm_dir: Path, flags: tuple[str, ...], configs: tuple[str, ...], needle: str
) -> None:
    import deno

    with pytest.raises(ConfigError, match=needle):
        load_wasm_modules(
            tuple(f.format(dir=wasm_dir) for f in flags),
            tuple(Path(c.format(dir=wasm_dir)) for c in configs),
            str(deno.find_deno_bin()),
        )


def test_an_invalid_module_body_is_refused_by_the_engine_check(wasm_dir: Path) -> None:
    import deno

    broken = wasm_dir / "broken.wasm"
    broken.write_bytes(ADD[:-3])
    with pytest.raises(ConfigError, match=r"broken.*invalid"):
        load_wasm_modules((f"broken={broken}",), (), str(deno.find_deno_bin()))
