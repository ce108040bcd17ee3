"""Every security guarantee has at least one test that tries to break it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from tests._requirements import REQUIREMENTS

TESTS = Path(__file__).resolve().parent


def guarded() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        name = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)
        module = importlib.import_module(name)
        for test_name, test in inspect.getmembers(module, inspect.isfunction):
            for requirement in getattr(test, "__guards__", ()):
                found.setdefault(requirement, []).append(f"{name}::{test_name}")
    return found


def test_every_security_guarantee_has_a_test() -> None:
    missing = sorted(set(REQUIREMENTS) - set(guarded()))
    assert missing == [], f"guarantees with no test: {missing}"


def test_tests_name_only_known_guarantees() -> None:
    unknown = sorted(set(guarded()) - set(REQUIREMENTS))
    assert unknown == [], f"unknown guarantee ids: {unknown}"
