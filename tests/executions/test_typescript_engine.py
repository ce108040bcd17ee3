"""TypeScript through the engine: types stripped, positions kept, REPL semantics intact."""

from __future__ import annotations

import pytest

from supervisor.app import Services
from supervisor.errors import InvalidRequest
from tests.conftest import run, submit

pytestmark = [pytest.mark.deno, pytest.mark.anyio]


async def test_typescript_runs_with_its_completion_value(services: Services) -> None:
    record = await run(services, "interface P { n: number }\nconst p: P = { n: 41 };\np.n + 1")
    assert record.result == "42"


async def test_top_level_await_works_in_typescript(services: Services) -> None:
    record = await run(services, "const v = await Promise.resolve<number>(5);\nv * 2")
    assert record.result == "10"


async def test_stacks_of_typescript_point_at_the_users_lines(services: Services) -> None:
    code = "type T = number;\n\nfunction f(n: T): never {\n  throw new Error('at ' + n);\n}\nf(1)"
    record = await run(services, code)
    assert record.error is not None
    assert "code.js:4:9" in record.error
    assert "code.js:6:1" in record.error


async def test_enums_are_transformed(services: Services) -> None:
    record = await run(services, "enum Color { Red, Green }\nColor[Color.Green]")
    assert record.result == "Green"


async def test_constructs_needing_transformation_are_refused_naming_them(
    services: Services,
) -> None:
    with pytest.raises(InvalidRequest, match=r"parameter property.*line 1"):
        await submit(services, "class A { constructor(private z: number) {} }")


async def test_plain_javascript_is_unchanged(services: Services) -> None:
    record = await run(services, "var a = 1 < 2 && 3 > 2; a")
    assert record.result == "true"
