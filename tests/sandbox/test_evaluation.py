"""REPL semantics of one cell in a real Deno child: results, declarations, timers, errors."""

from __future__ import annotations

import re

import pytest

from supervisor.app import Services
from supervisor.store import ExecutionStatus
from tests.conftest import output_of, run

pytestmark = [pytest.mark.deno, pytest.mark.anyio]


async def test_the_completion_value_of_the_last_expression_is_the_result(
    services: Services,
) -> None:
    record = await run(services, "1 + 1")
    assert record.status == ExecutionStatus.COMPLETED
    assert record.result == "2"
    assert record.error is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("undefined", None, id="undefined-is-null"),
        pytest.param("let unused = 1", None, id="declaration-is-null"),
        pytest.param("'a \"quoted\" string'", 'a "quoted" string', id="string-raw"),
        pytest.param("1.5", "1.5", id="number"),
        pytest.param("-0", "0", id="negative-zero-as-String"),
        pytest.param("NaN", "NaN", id="nan"),
        pytest.param("false", "false", id="boolean"),
        pytest.param("null", "null", id="null"),
        pytest.param("({a: 1, b: [true, null, 'x']})", '{"a":1,"b":[true,null,"x"]}', id="object"),
        pytest.param("[1, 'a', {b: 2}]", '[1,"a",{"b":2}]', id="array"),
        pytest.param("Object.create(null)", "{}", id="null-prototype-object"),
        pytest.param("new Map([['a', 1]])", "Map(1) { 'a' => 1 }", id="map"),
        pytest.param("new Set([1])", "Set(1) { 1 }", id="set"),
        pytest.param("(function named() {})", "[Function: named]", id="function"),
        pytest.param(
            "class Point { constructor() { this.x = 1 } }; new Point()",
            "Point { x: 1 }",
            id="class-instance",
        ),
        pytest.param("const o = {}; o.self = o; o", "<ref *1> { self: [Circular *1] }", id="cycle"),
        pytest.param("10n ** 20n", "100000000000000000000n", id="bigint"),
        pytest.param("({big: 1n})", "{ big: 1n }", id="bigint-inside-object"),
        pytest.param("Symbol('s')", "Symbol(s)", id="symbol"),
    ],
)
async def test_results_are_rendered_by_the_documented_rules(
    services: Services, code: str, expected: str | None
) -> None:
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == expected


async def test_top_level_await_gives_the_awaited_value(services: Services) -> None:
    code = "const v = await new Promise((resolve) => setTimeout(() => resolve(21), 5));\nv * 2"
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "42"


async def test_let_const_var_class_and_function_declarations_work_in_one_cell(
    services: Services,
) -> None:
    code = """
        var v = 1;
        let l = 2;
        const c = 3;
        class K { get value() { return v + l + c; } }
        function f() { return new K().value; }
        f()
    """
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "6"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("console.log(await 2); 'logged'", "logged", id="call-argument"),
        pytest.param("(await 1)", "1", id="parenthesized"),
        pytest.param("[await 1]", "[1]", id="array-element"),
        pytest.param("Math.abs(await -1)", "1", id="unary-operand"),
        pytest.param("const {sep} = (await import('node:path')); sep", "/", id="import-in-parens"),
        pytest.param("let n = 0; for await (const x of [1, 2]) n += x; n", "3", id="for-await"),
    ],
)
async def test_top_level_await_works_in_any_expression_position(
    services: Services, code: str, expected: str
) -> None:
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == expected


async def test_declarations_work_in_a_cell_with_top_level_await(services: Services) -> None:
    code = "let a = await 1; const b = 2; class C {}; function f() { return a + b; }; f()"
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "3"


async def test_the_execution_waits_for_pending_timers(services: Services) -> None:
    code = """
        const seen = [];
        queueMicrotask(() => seen.push("microtask"));
        const cancelled = setTimeout(() => seen.push("cancelled timeout"), 1);
        clearTimeout(cancelled);
        setTimeout(() => console.log("timeout", seen.join(",")), 30);
        let ticks = 0;
        const id = setInterval(() => {
            if (++ticks === 3) { clearInterval(id); console.log("interval done"); }
        }, 5);
        "sync result"
    """
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "sync result"
    assert await output_of(services, record) == "interval done\ntimeout microtask\n"


async def test_timer_handles_behave_like_denos_own(services: Services) -> None:
    code = """
        const log = [];
        const t = setTimeout((a, b) => log.push(`args ${a}${b}`), 1, "x", "y");
        const byNumber = setTimeout(() => log.push("never"), 1);
        clearTimeout(Number(byNumber));
        const iv = setInterval(() => { log.push("tick"); clearInterval(+iv); }, 1);
        setTimeout(() => log.push("unref'd, never waited for"), 60_000).unref();
        let threw = "";
        try { setTimeout("1 + 1", 1) } catch (e) { threw = e.constructor.name }
        await new Promise((resolve) => setTimeout(resolve, 20));
        [typeof t, typeof +t, t.hasRef(), threw, log.join("|"), setTimeout.name]
    """
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == '["object","number",true,"TypeError","args xy|tick","setTimeout"]'


@pytest.mark.parametrize(
    ("code", "printed"),
    [
        # Settled at once, but output keeps coming from later microtasks and
        # immediates: the run ends only when nothing is left.
        ("Promise.resolve().then(() => 0).then(() => console.log('late')); 1", "late\n"),
        ("process.nextTick(() => Promise.resolve().then(() => console.log('tick'))); 1", "tick\n"),
        ("setImmediate(() => setImmediate(() => console.log('twice'))); 1", "twice\n"),
        (
            "WebAssembly.compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))"
            ".then(() => console.log('compiled')); 1",
            "compiled\n",
        ),
    ],
)
async def test_a_settled_cell_still_runs_what_it_scheduled(
    services: Services, code: str, printed: str
) -> None:
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "1"
    assert await output_of(services, record) == printed


async def test_an_import_that_fails_unawaited_fails_the_execution(services: Services) -> None:
    # As in Node and Deno: a rejected import() nobody handles is an unhandled rejection.
    record = await run(services, "import('npm:left-pad'); 1")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert "not enabled" in record.error, record.error


async def test_the_sandboxs_globals_are_made_on_first_use_and_can_be_replaced(
    services: Services,
) -> None:
    code = """
        const made = Object.getOwnPropertyDescriptor(globalThis, "console");
        const calls = [];
        console = { log: (text) => calls.push(text) };
        console.log("to my own console");
        setTimeout = () => "replaced";
        const kept = Object.getOwnPropertyDescriptor(globalThis, "setTimeout");
        [typeof made.get, calls.join(), setTimeout(), typeof clearTimeout, kept.writable]
    """
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == '["function","to my own console","replaced","function",true]'
    assert await output_of(services, record) == ""


@pytest.mark.parametrize(
    ("code", "status", "result"),
    [
        (
            "setInterval = clearInterval = null;\nawait new Promise((r) => queueMicrotask(r));\n5",
            "completed",
            "5",
        ),
        ("setInterval = clearInterval = null;\nnew Promise(() => {})", "timed_out", None),
    ],
)
async def test_replaced_timer_globals_do_not_break_the_sandbox(
    services: Services, code: str, status: str, result: str | None
) -> None:
    record = await run(services, code, execution_timeout_secs=1)
    assert record.status == status, record.error
    assert record.result == result


async def test_a_thrown_error_fails_with_its_message_and_a_stack_at_the_users_line(
    services: Services,
) -> None:
    record = await run(services, "const a = 1;\nconst b = 2;\nthrow new Error('boom');\n")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("Error: boom")
    assert "code.js:3:" in record.error


async def test_an_error_thrown_inside_a_user_function_shows_both_user_frames(
    services: Services,
) -> None:
    code = "function inner() {\n  throw new TypeError('deep');\n}\ninner();\n"
    record = await run(services, code)
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("TypeError: deep")
    assert "code.js:2:" in record.error
    assert "code.js:4:" in record.error


@pytest.mark.parametrize(
    "code",
    [
        "Promise.reject(new Error('floating'));\n1",
        "setTimeout(() => {\n  throw new Error('in a timer');\n}, 1);",
        "fs.readFile(123).catch(() => {\n  throw new Error('after a call');\n});",
    ],
)
async def test_stacks_show_only_the_users_frames(services: Services, code: str) -> None:
    record = await run(services, code)
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    frames = [line.strip() for line in record.error.splitlines() if line.strip().startswith("at ")]
    assert frames, record.error
    # Not the sandbox's own code, and never the server's install path.
    assert all("file:///code.js:" in frame for frame in frames), record.error
    assert "sandbox_host" not in record.error


async def test_an_error_after_top_level_await_points_at_the_users_line(
    services: Services,
) -> None:
    record = await run(services, "await null;\n\nthrow new RangeError('later');")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("RangeError: later")
    assert "code.js:3:" in record.error


async def test_a_syntax_error_gives_its_line_and_column(services: Services) -> None:
    record = await run(services, "const ok = 1;\nconst bad = (;\n")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("SyntaxError:")
    assert re.search(r"line 2, column \d+", record.error), record.error
    assert "code.js:2:" in record.error


async def test_a_syntax_error_in_a_cell_with_top_level_await_is_located(
    services: Services,
) -> None:
    record = await run(services, "await 1;\n\nlet = = 2;")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert "SyntaxError" in record.error
    assert "code.js:3:" in record.error


async def test_a_rejected_top_level_promise_fails_the_execution(services: Services) -> None:
    record = await run(services, "\nPromise.reject(new Error('rejected'))")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("Error: rejected")
    assert "code.js:2:" in record.error


async def test_an_awaited_rejection_fails_the_execution(services: Services) -> None:
    record = await run(services, "await Promise.reject(new Error('awaited'))")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert "Error: awaited" in record.error


async def test_an_unhandled_rejection_in_a_timer_fails_the_execution(services: Services) -> None:
    code = "setTimeout(() => {\n  Promise.reject(new Error('in timer'));\n}, 5);\n'sync'"
    record = await run(services, code)
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("Error: in timer")
    assert "code.js:2:" in record.error


@pytest.mark.parametrize(
    ("code", "status", "result", "output"),
    [
        pytest.param(
            "Promise.resolve().then(() => 0).then(() => console.log('chained'));\n'sync'",
            ExecutionStatus.COMPLETED,
            "sync",
            "chained\n",
            id="output-of-a-promise-chain",
        ),
        pytest.param(
            "Promise.resolve().then(() => Promise.reject(new Error('chained')));\n1",
            ExecutionStatus.FAILED,
            None,
            "",
            id="rejection-in-a-promise-chain",
        ),
        pytest.param(
            "queueMicrotask(() => { throw new Error('microtask') });\n1",
            ExecutionStatus.FAILED,
            None,
            "",
            id="error-in-a-microtask",
        ),
        pytest.param(
            "const p = Promise.reject(new Error('handled'));\n"
            "p.catch(() => console.log('caught'));\n2",
            ExecutionStatus.COMPLETED,
            "2",
            "caught\n",
            id="rejection-handled-in-the-cell",
        ),
    ],
)
async def test_a_synchronous_cell_ends_only_once_its_microtasks_have_run(
    services: Services, code: str, status: ExecutionStatus, result: str | None, output: str
) -> None:
    """A cell with no timer or I/O left is reported without a turn of the event
    loop: what its microtasks print, throw or leave rejected still counts."""
    record = await run(services, code)
    assert record.status == status, record.error
    assert record.result == result
    assert await output_of(services, record) == output
    if status == ExecutionStatus.FAILED:
        assert record.error is not None and "code.js:1:" in record.error


async def test_an_error_thrown_in_a_timer_fails_the_execution(services: Services) -> None:
    record = await run(services, "setTimeout(() => { throw new Error('tick') }, 5); 1")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("Error: tick")


async def test_throwing_a_non_error_fails_with_a_clear_message(services: Services) -> None:
    record = await run(services, "throw 5")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert "5" in record.error
    assert record.error != "5"


async def test_throwing_a_plain_object_shows_its_contents(services: Services) -> None:
    record = await run(services, "throw {code: 'E_CUSTOM'}")
    assert record.status == ExecutionStatus.FAILED
    assert record.error is not None
    assert "E_CUSTOM" in record.error


async def test_output_before_an_error_is_kept(services: Services) -> None:
    record = await run(services, "console.log('before'); throw new Error('after')")
    assert record.status == ExecutionStatus.FAILED
    assert await output_of(services, record) == "before\n"
