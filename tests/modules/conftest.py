"""Fixtures for the module resolver: real Deno, a real TypeScript stripper, loopback servers.

``deno bundle`` fetches esbuild from the npm registry into its ``DENO_DIR``
on first use, so every test that bundles needs the registry once per session:
those tests carry the ``network`` marker. The ``DENO_DIR`` is shared by the
session (each test's cache directory links to it), as every resolution of a
server shares one; blobs and indexes stay per test.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import deno
import pytest

from supervisor.config import ModuleSettings, default_cache_dir
from supervisor.modules import ModuleResolver, ResolvedModule
from supervisor.typescript import TypeStripper

DENO = str(deno.find_deno_bin())
WAIT_BOUND_S = 60.0

ResolverFactory = Callable[..., ModuleResolver]


@pytest.fixture(scope="session")
def shared_deno_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundler's DENO_DIR for the whole session: esbuild and npm tarballs, once."""
    return tmp_path_factory.mktemp("deno-dir")


@pytest.fixture
def cache_dir(tmp_path: Path, shared_deno_dir: Path) -> Path:
    """A fresh module cache whose ``deno/`` is the session's shared one."""
    root = tmp_path / "modules"
    root.mkdir()
    (root / "deno").symlink_to(shared_deno_dir, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
async def stripper() -> AsyncIterator[TypeStripper]:
    """One warm TypeScript helper per test module (so none outlives its module's checks),
    on the cache the server itself uses (no new download)."""
    ts = TypeStripper(DENO, default_cache_dir() / "typescript")
    with anyio.fail_after(WAIT_BOUND_S):
        await ts.start()
    yield ts
    await ts.aclose()


@pytest.fixture
async def make_resolver(cache_dir: Path, stripper: TypeStripper) -> AsyncIterator[ResolverFactory]:
    """``make_resolver(**settings)``: a resolver on the test's cache; closed after the test."""
    made: list[ModuleResolver] = []

    def factory(**overrides: Any) -> ModuleResolver:
        settings = ModuleSettings(cache_dir=cache_dir, **{"timeout_s": WAIT_BOUND_S, **overrides})
        resolver = ModuleResolver(settings, DENO, stripper)
        made.append(resolver)
        return resolver

    yield factory
    for resolver in made:
        await resolver.aclose()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def evaluate(module: ResolvedModule, expression: str) -> Any:
    """``expression`` (over ``m``, the module's exports) in a permission-less Deno, as JSON.

    A cjs bundle runs as the body of ``function (module, exports, require)``,
    an esm bundle is imported from a ``data:`` URL: the two ways the sandbox
    evaluates them.
    """
    source = module.source.decode()
    if module.format == "cjs":
        load = (
            "const module = { exports: {} };\n"
            f"new Function('module', 'exports', 'require', {json.dumps(source)})"
            "(module, module.exports, (name) => { throw new Error(`no require(${name})`); });\n"
            "const m = module.exports;\n"
        )
    else:
        url = "data:text/javascript;charset=utf-8," + quote(source, safe="")
        load = f"const m = await import({json.dumps(url)});\n"
    script = load + f"console.log(JSON.stringify(await ({expression})));\n"
    argv = [DENO, "run", "--no-prompt", "--no-config", "--no-lock", "--no-remote", "--no-npm", "-"]
    with tempfile.TemporaryDirectory() as deno_dir, anyio.fail_after(WAIT_BOUND_S):
        env = {"NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "DENO_DIR": deno_dir}
        done = await anyio.run_process(argv, input=script.encode(), env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)
