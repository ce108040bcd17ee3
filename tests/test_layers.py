"""Architecture rules: layers import downwards only, packages declare their surface."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Higher layers may import lower ones, never the reverse; siblings in one layer
# do not import each other.
LAYERS: list[set[str]] = [
    {"supervisor.cli"},  # the entry point: settings, logging, which edge to serve
    {"supervisor.web"},
    {"supervisor.app"},
    {"supervisor.executions"},
    {
        "supervisor.sandbox",
        "supervisor.store",
        "supervisor.heaps",
        "supervisor.sessions",
        "supervisor.brokers",
        "supervisor.policy",
        "supervisor.typescript",
        "supervisor.wasm",
        "supervisor.modules",
    },
    {
        "protocol",
        "supervisor.config",
        "supervisor.errors",
        "supervisor.db",
        "supervisor.decisions",
    },
]


def unit_of(module: str) -> str | None:
    for layer in LAYERS:
        for unit in layer:
            if module == unit or module.startswith(unit + "."):
                return unit
    return None


def layer_of(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("supervisor", "protocol"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(p for p in parts if p != "__init__")
            found.append((name, path))
    return found


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_modules_import_only_their_own_or_lower_layers(module: str, path: Path) -> None:
    own = unit_of(module)
    if own is None:  # supervisor/__init__, __main__
        return
    for imported in imports_of(path):
        target = unit_of(imported)
        if target is None or target == own:
            continue
        assert layer_of(target) > layer_of(own), f"{module} imports {imported}"


def test_the_protocol_package_depends_on_msgspec_alone() -> None:
    for _module, path in modules():
        if path.is_relative_to(ROOT / "protocol"):
            third_party = {name.split(".")[0] for name in imports_of(path)} - {
                "protocol",
                "msgspec",
                "__future__",
                "json",
                "struct",
                "sys",
                "typing",
                "pathlib",
            }
            assert third_party == set(), f"{path.name} imports {third_party}"


@pytest.mark.parametrize(
    "package",
    [
        "protocol",
        "sandbox_host",
        "supervisor.sandbox",
        "supervisor.store",
        "supervisor.executions",
        "supervisor.heaps",
        "supervisor.sessions",
        "supervisor.brokers",
        "supervisor.policy",
        "supervisor.modules",
        "supervisor.web",
    ],
)
def test_packages_export_exactly_what_their_all_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert sorted(exported) == sorted(set(exported))
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names missing {name}"
        assert not name.startswith("_")


def test_every_subpackage_declares_all() -> None:
    import supervisor

    for info in pkgutil.walk_packages(supervisor.__path__, "supervisor."):
        if info.ispkg:
            assert hasattr(importlib.import_module(info.name), "__all__"), info.name
