"""Console capture in a real Deno child: formatting, prefixes, ordering, hostile output, caps."""

from __future__ import annotations

import re

import pytest

from supervisor.app import Services
from supervisor.store import ExecutionStatus, LineRange
from tests._requirements import guards
from tests.conftest import EngineFactory, output_of, run

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

TRUNCATION = re.compile(r"^\[output truncated: limit of (\d+) bytes reached\]\n\Z")


async def console_output(services: Services, code: str) -> str:
    """Output of code that must complete."""
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    return await output_of(services, record)


async def test_log_info_and_debug_write_plain_lines(services: Services) -> None:
    code = "console.log('log'); console.info('info'); console.debug('debug')"
    assert await console_output(services, code) == "log\ninfo\ndebug\n"


async def test_format_directives_are_applied_as_node_does(services: Services) -> None:
    code = "console.log('%s is %d years and %o', 'Ada', 36.9, {x: [1]}); console.log('%i%%', 7.5)"
    assert await console_output(services, code) == "Ada is 36 years and { x: [ 1 ] }\n7%\n"


async def test_strings_are_raw_and_other_values_inspected(services: Services) -> None:
    code = "console.log('a \"raw\" string', {k: 'v', n: [1, 2]}, null, undefined, 3n, Symbol('s'))"
    expected = "a \"raw\" string { k: 'v', n: [ 1, 2 ] } null undefined 3n Symbol(s)\n"
    assert await console_output(services, code) == expected


async def test_warn_and_error_prefix_every_line_of_multi_line_output(services: Services) -> None:
    code = "console.warn('w1\\nw2'); console.error('e1\\ne2\\ne3'); console.log('l1\\nl2')"
    expected = "[WARN] w1\n[WARN] w2\n[ERROR] e1\n[ERROR] e2\n[ERROR] e3\nl1\nl2\n"
    assert await console_output(services, code) == expected


async def test_warn_of_a_multi_line_inspection_prefixes_each_line(services: Services) -> None:
    code = "console.warn({alpha: 'a'.repeat(40), beta: 'b'.repeat(40), gamma: 'c'.repeat(40)})"
    lines = (await console_output(services, code)).splitlines()
    assert len(lines) > 1
    assert all(line.startswith("[WARN] ") for line in lines)


async def test_output_keeps_the_order_of_calls_across_streams(services: Services) -> None:
    code = """
        console.log(1); console.warn(2); console.error(3);
        Deno.stdout.writeSync(new TextEncoder().encode("4\\n"));
        console.info(5); Deno.stderr.writeSync(new TextEncoder().encode("6\\n")); console.debug(7);
    """
    expected = "1\n[WARN] 2\n[ERROR] 3\n4\n5\n[ERROR] 6\n7\n"
    assert await console_output(services, code) == expected


async def test_table_renders_rows_and_columns(services: Services) -> None:
    output = await console_output(services, "console.table([{a: 1, b: 'x'}, {a: 2, b: 'y'}])")
    lines = output.splitlines()
    assert len(lines) >= 5
    header = next(line for line in lines if "a" in line and "b" in line)
    assert "(idx)" in header
    assert any("1" in line and "x" in line for line in lines)
    assert any("2" in line and "y" in line for line in lines)


async def test_dir_assert_and_count_produce_their_lines(services: Services) -> None:
    code = """
        console.dir({a: {b: {c: 1}}});
        console.assert(true, 'never shown');
        console.assert(1 === 2, 'math is broken');
        console.count(); console.count(); console.count('named'); console.countReset();
        console.count();
    """
    expected = (
        "{ a: { b: { c: 1 } } }\n"
        "[ERROR] Assertion failed: math is broken\n"
        "default: 1\ndefault: 2\nnamed: 1\ndefault: 1\n"
    )
    assert await console_output(services, code) == expected


async def test_time_and_time_end_report_elapsed_milliseconds(services: Services) -> None:
    code = "console.time('t'); console.timeLog('t', 'mid'); console.timeEnd('t');"
    code += "console.timeEnd('t')"
    lines = (await console_output(services, code)).splitlines()
    assert re.fullmatch(r"t: \d+(\.\d+)?ms mid", lines[0]), lines
    assert re.fullmatch(r"t: \d+(\.\d+)?ms", lines[1]), lines
    assert lines[2].startswith("[WARN] ") and "'t'" in lines[2], lines
    assert len(lines) == 3


async def test_group_indents_until_group_end(services: Services) -> None:
    code = """
        console.log('top'); console.group('G');
        console.log('one\\ntwo'); console.warn('warned');
        console.group(); console.log('deeper'); console.groupEnd();
        console.groupEnd(); console.log('back');
    """
    expected = "top\nG\n  one\n  two\n[WARN]   warned\n    deeper\nback\n"
    assert await console_output(services, code) == expected


async def test_trace_writes_the_message_and_the_users_frame_to_the_error_stream(
    services: Services,
) -> None:
    lines = (await console_output(services, "\nconsole.trace('here')")).splitlines()
    assert lines[0] == "[ERROR] Trace: here"
    assert "code.js:2:" in lines[1]


async def test_trace_shows_only_the_users_frames(services: Services) -> None:
    output = await console_output(services, "function f() { console.trace() }\nf()")
    assert "runner-" not in output
    assert "ext:" not in output
    assert str(services.settings.storage.data_dir) not in output


async def test_raw_stdout_bytes_with_invalid_utf8_are_captured_and_stored(
    services: Services,
) -> None:
    code = "Deno.stdout.writeSync(new Uint8Array([0x68, 0x69, 0xff, 0x0a])); 'done'"
    record = await run(services, code)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "done"
    assert await output_of(services, record) == "hi\ufffd\n"
    stored = await services.engine.get(record.execution_id)
    assert stored.total_bytes == len("hi\ufffd\n".encode())


async def test_a_lone_surrogate_in_console_output_is_stored(services: Services) -> None:
    record = await run(services, "console.log('a\\uD800b'); console.error('\\uDC00')")
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert await output_of(services, record) == "a\ufffdb\n[ERROR] \ufffd\n"


async def test_a_lone_surrogate_in_the_result_and_error_is_stored(services: Services) -> None:
    record = await run(services, "'x\\uD800'")
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "x\ufffd"
    failed = await run(services, "throw new Error('bad \\uDFFF')")
    assert failed.status == ExecutionStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("Error: bad \ufffd")


@guards("limits:output")
async def test_a_twenty_megabyte_line_is_stored_truncated_and_the_execution_completes(
    services: Services,
) -> None:
    limit = services.settings.sandbox.output_limit_bytes
    code = "console.log('x'.repeat(20 * 2 ** 20)); 'still running'"
    # The 20 MB string itself must fit on the heap; the output cap is what is tested.
    record = await run(services, code, heap_memory_max_mb=128)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.result == "still running"
    assert record.total_bytes <= limit + 100
    assert record.total_lines == 2
    last = await services.engine.output(record.execution_id, LineRange(offset=2, limit=1))
    match = TRUNCATION.match(last.data)
    assert match is not None, last.data
    assert int(match.group(1)) == limit
    first = await services.engine.output(record.execution_id, LineRange(offset=1, limit=1))
    assert set(first.data.rstrip("\n")) == {"x"}


@guards("limits:output", "limits:timeout")
async def test_an_output_flood_is_timed_out_and_its_stored_output_capped(
    engine_factory: EngineFactory,
) -> None:
    limit = 64 * 1024
    async with engine_factory(output_limit_bytes=limit) as services:
        record = await run(services, "for (;;) console.log('xy')", execution_timeout_secs=1)
        assert record.status == ExecutionStatus.TIMED_OUT
        assert limit - 3 <= record.total_bytes <= limit + 100
        last = await services.engine.output(
            record.execution_id, LineRange(offset=record.total_lines, limit=1)
        )
        assert TRUNCATION.match(last.data), last.data
        after = await run(services, "1 + 1")
        assert after.result == "2"


async def test_a_flood_that_fills_the_cap_exactly_still_ends_with_a_truncation_line(
    engine_factory: EngineFactory,
) -> None:
    limit = 64 * 1024
    async with engine_factory(output_limit_bytes=limit) as services:
        # Each call writes "x\n": 2 bytes, which divides the limit exactly.
        record = await run(services, "for (;;) console.log('x')", execution_timeout_secs=1)
        assert record.status == ExecutionStatus.TIMED_OUT
        last = await services.engine.output(
            record.execution_id, LineRange(offset=record.total_lines, limit=1)
        )
        assert TRUNCATION.match(last.data), last.data
