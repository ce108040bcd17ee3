"""Stateful mode in real Deno children: what a heap snapshot keeps, how it is named and guarded,
what a failed run leaves behind, session logs, heap tags and bad input."""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.app import Services
from supervisor.config import SandboxSettings
from supervisor.errors import HeapNotFound, InvalidRequest
from supervisor.executions import build_run_request
from supervisor.store import ExecutionRecord, ExecutionStatus
from tests.conftest import output_of, run, start_engine, submit

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

SNAPSHOT_MAGIC = b"MV8S"


@pytest.fixture(scope="module")
async def stateful(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    """One stateful engine (heaps and session logs in a fresh directory) shared by the module."""
    async with start_engine(tmp_path_factory.mktemp("stateful"), stateful=True) as services:
        yield services


def unique(prefix: str) -> str:
    """A name no other test of the shared engine uses (heaps with equal state share a hash)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def heap_path(services: Services, heap: str) -> Path:
    """Where the local store keeps a snapshot: ``<heap dir>/<first two hex>/<hash>``."""
    return services.settings.storage.heap_dir / heap[:2] / heap


async def completed(services: Services, code: str, **limits: Any) -> ExecutionRecord:
    """Run ``code``; it must complete and leave a heap."""
    record = await run(services, code, **limits)
    assert record.status == ExecutionStatus.COMPLETED, record.error
    assert record.heap is not None
    return record


async def resumed(services: Services, heap: str, code: str, **limits: Any) -> ExecutionRecord:
    """Run ``code`` resumed from ``heap``; it must complete."""
    record = await completed(services, code, heap=heap, **limits)
    assert record.input_heap == heap
    return record


def not_persisted(record: ExecutionRecord) -> dict[str, str]:
    """The globals a run's snapshot could not keep, by name, with the reason."""
    return {lost.name: lost.reason for lost in record.not_persisted}


def split_snapshot(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and payload of snapshot bytes: ``MV8S`` + u32 BE length + JSON + payload."""
    assert data[:4] == SNAPSHOT_MAGIC
    (length,) = struct.unpack(">I", data[4:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + length])
    return header, data[8 + length :]


def join_snapshot(header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps(header).encode()
    return SNAPSHOT_MAGIC + struct.pack(">I", len(head)) + head + payload


async def wait_for_output(services: Services, record: ExecutionRecord) -> str:
    """The first stored output of a running execution."""
    with anyio.fail_after(10):
        while not (text := await output_of(services, record)):
            await anyio.sleep(0.01)
    return text


# --- what persists ----------------------------------------------------------


async def test_every_kind_of_global_declaration_persists_with_its_value(
    stateful: Services,
) -> None:
    first = await completed(
        stateful,
        "var v = 'var'; let l = 'let'; const c = 'const';"
        "function twice(x) { return 2 * x }"
        "class Greeter { hello(n) { return 'hello ' + n } }"
        "globalThis.prop = 'property';",
    )
    assert first.not_persisted == ()
    after = await resumed(
        stateful,
        first.heap or "",
        "JSON.stringify([v, l, c, twice(21), new Greeter().hello('you'), prop,"
        " typeof twice, typeof Greeter])",
    )
    assert json.loads(after.result or "") == [
        "var",
        "let",
        "const",
        42,
        "hello you",
        "property",
        "function",
        "function",
    ]


async def test_lexical_bindings_with_non_ascii_names_are_kept(stateful: Services) -> None:
    first = await completed(stateful, "let größe = 3; const π = 3.14; const $_ü𝑥 = 'ok'")
    after = await resumed(stateful, first.heap or "", "JSON.stringify([größe, π, $_ü𝑥])")
    assert json.loads(after.result or "") == [3, 3.14, "ok"]


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("// enum is a reserved word\n", id="a-reserved-word-in-a-comment"),
        pytest.param("const unused = () => { let count = 1; return count };", id="a-local-twin"),
    ],
)
async def test_lexical_bindings_are_found_whatever_else_the_cell_holds(
    stateful: Services, extra: str
) -> None:
    first = await completed(stateful, extra + "let count = 3; const label = 'x'; class Box {}")
    after = await resumed(stateful, first.heap or "", "JSON.stringify([count, label, typeof Box])")
    assert json.loads(after.result or "") == [3, "x", "function"]


async def test_a_lexical_binding_shadowing_a_restored_global_keeps_the_new_value(
    stateful: Services,
) -> None:
    first = await completed(
        stateful, "let shadowed = 'old'; const fixed = 'old'; var plain = 'old'"
    )
    second = await resumed(
        stateful,
        first.heap or "",
        "let shadowed = 'new'; const fixed = 'new'; let plain = 'new'; [shadowed, fixed, plain]",
    )
    assert second.result == '["new","new","new"]'
    assert second.heap != first.heap
    third = await resumed(stateful, second.heap or "", "JSON.stringify([shadowed, fixed, plain])")
    assert json.loads(third.result or "") == ["new", "new", "new"]


async def test_values_the_v8_serializer_supports_round_trip_through_a_heap(
    stateful: Services,
) -> None:
    first = await completed(
        stateful,
        """
        const obj = {n: 1, nested: {s: 'x', list: [true, null]}};
        const holes = [1, , 3];
        const negZero = -0;
        const notANumber = NaN;
        const big = 2n ** 70n;
        const map = new Map([['k', {v: 1}], [2, 'two']]);
        const set = new Set(['a', 1]);
        const date = new Date(86400000);
        const regex = /ab+c/gi;
        const floats = new Float64Array([1.5, -2.25]);
        const bytes = new Uint8Array([0, 255, 7]);
        const view = new DataView(new ArrayBuffer(4));
        view.setInt16(0, -2);
        const failure = new RangeError('out of range');
        const cycle = {name: 'cycle'};
        cycle.self = cycle;
        """,
    )
    assert first.not_persisted == ()
    after = await resumed(
        stateful,
        first.heap or "",
        """
        JSON.stringify({
          obj: obj,
          holes: [holes.length, 0 in holes, 1 in holes, 2 in holes, holes[2]],
          negZero: Object.is(negZero, -0),
          notANumber: Number.isNaN(notANumber),
          big: typeof big === 'bigint' && big === 1180591620717411303424n,
          map: [map instanceof Map, map.size, map.get('k').v, map.get(2)],
          set: [set instanceof Set, [...set]],
          date: [date instanceof Date, date.toISOString()],
          regex: [regex instanceof RegExp, regex.source, regex.flags],
          floats: [floats instanceof Float64Array, [...floats]],
          bytes: [bytes instanceof Uint8Array, [...bytes]],
          view: [view instanceof DataView, view.byteLength, view.getInt16(0)],
          failure: [failure instanceof RangeError, failure.message],
          cycle: [cycle.self === cycle, cycle.self.self.name],
        })
        """,
    )
    assert json.loads(after.result or "") == {
        "obj": {"n": 1, "nested": {"s": "x", "list": [True, None]}},
        "holes": [3, True, False, True, 3],
        "negZero": True,
        "notANumber": True,
        "big": True,
        "map": [True, 2, 1, "two"],
        "set": [True, ["a", 1]],
        "date": [True, "1970-01-02T00:00:00.000Z"],
        "regex": [True, "ab+c", "gi"],
        "floats": [True, [1.5, -2.25]],
        "bytes": [True, [0, 255, 7]],
        "view": [True, 4, -2],
        "failure": [True, "out of range"],
        "cycle": [True, "cycle"],
    }


async def test_references_shared_between_globals_stay_shared(stateful: Services) -> None:
    first = await completed(stateful, "const a = {}; const b = {a}; const c = {a}")
    after = await resumed(
        stateful,
        first.heap or "",
        "a.mark = 1; [b.a === c.a, b.a === a, c.a.mark]",
    )
    assert after.result == "[true,true,1]"


async def test_properties_put_on_an_array_come_back_with_it(stateful: Services) -> None:
    # A RegExp match is an array with `index`, `input` and `groups`; arrays are
    # rebuilt after a restore (for the hash), and their properties must follow.
    first = await completed(
        stateful,
        "const match = /b(?<digit>\\d)/.exec('ab7c');"
        "const nested = {rows: [1, 2]}; nested.rows.label = [3, 4];",
    )
    after = await resumed(
        stateful,
        first.heap or "",
        "JSON.stringify([match.index, match.input, match.groups.digit, [...match],"
        " nested.rows.label, nested.rows.length])",
    )
    assert json.loads(after.result or "") == [1, "ab7c", "7", ["b7", "7"], [3, 4], 2]
    # V8 holds a match with holey elements, without holes: stored compactly
    # from its first resume on, after which an unchanged state keeps its heap.
    once = await resumed(stateful, first.heap or "", "1")
    twice = await resumed(stateful, once.heap or "", "match.groups.digit")
    assert twice.result == "7"
    assert twice.heap == once.heap


async def test_an_instance_of_an_array_class_keeps_its_class_and_elements(
    stateful: Services,
) -> None:
    first = await completed(
        stateful,
        "class Stack extends Array { top() { return this[this.length - 1] } }"
        "; const stack = new Stack(); stack.push(1, 2);"
        "const odd = [3, 4]; odd.constructor = 'not a class';",
    )
    after = await resumed(
        stateful,
        first.heap or "",
        "JSON.stringify([stack instanceof Stack, stack.top(), [...stack],"
        " [...odd], odd.constructor])",
    )
    assert json.loads(after.result or "") == [True, 2, [1, 2], [3, 4], "not a class"]


async def test_restoring_a_subclass_of_map_or_set_runs_none_of_its_methods(
    stateful: Services,
) -> None:
    first = await completed(
        stateful,
        "class Loud extends Map { set(k, v) { console.log('set', k); return super.set(k, v) }"
        " clear() { console.log('clear') } *[Symbol.iterator]() { console.log('iterate') } }"
        "class Tags extends Set { add(v) { console.log('add'); return super.add(v) } }"
        "const loud = new Loud(); Map.prototype.set.call(loud, 'k', [1, 2]);"
        "const tags = new Tags(); Set.prototype.add.call(tags, [3]);",
    )
    after = await resumed(
        stateful,
        first.heap or "",
        "JSON.stringify([loud instanceof Loud, Map.prototype.get.call(loud, 'k'),"
        " tags instanceof Tags, [...Set.prototype.values.call(tags)]])",
    )
    assert json.loads(after.result or "") == [True, [1, 2], True, [[3]]]
    assert await output_of(stateful, after) == ""


async def test_an_array_shared_with_an_error_cause_stays_shared(stateful: Services) -> None:
    first = await completed(
        stateful, "const steps = ['parse', 'run']; const failure = new Error('x', {cause: steps})"
    )
    after = await resumed(
        stateful,
        first.heap or "",
        "steps.push('retry'); JSON.stringify([failure.cause === steps, failure.cause])",
    )
    assert json.loads(after.result or "") == [True, ["parse", "run", "retry"]]
    untouched = await resumed(stateful, first.heap or "", "1")
    assert untouched.heap == first.heap


async def test_class_instances_get_their_prototype_back_wherever_they_are(
    stateful: Services,
) -> None:
    first = await completed(
        stateful,
        """
        class Shape {
          constructor(n) { this.n = n }
          area() { return this.n * 2 }
        }
        const square = new Shape(3);
        const byName = new Map([['s', new Shape(4)]]);
        const shapes = [new Shape(5), {inner: new Shape(6)}];
        const bag = new Set([new Shape(7)]);
        """,
    )
    assert first.not_persisted == ()
    # Circle sorts before Shape: a restore must define the base class first.
    second = await resumed(
        stateful,
        first.heap or "",
        """
        class Circle extends Shape { area() { return super.area() * 10 } }
        const circle = new Circle(1);
        JSON.stringify([
          square.area(), square instanceof Shape, square.constructor === Shape,
          byName.get('s').area(), shapes[0].area(), shapes[1].inner.area(),
          [...bag][0].area(),
        ])
        """,
    )
    assert json.loads(second.result or "") == [6, True, True, 8, 10, 12, 14]
    third = await resumed(
        stateful,
        second.heap or "",
        "JSON.stringify([circle.area(), circle instanceof Circle, circle instanceof Shape,"
        " Object.getPrototypeOf(Circle) === Shape, square.area()])",
    )
    assert json.loads(third.result or "") == [20, True, True, True, 6]


# --- what cannot persist ----------------------------------------------------


@pytest.mark.parametrize(
    ("declaration", "name", "reason_mentions"),
    [
        pytest.param(
            "const counter = (() => { let n = 0; return () => ++n })(); counter();",
            "counter",
            "closure",
            id="closure-counter",
        ),
        pytest.param("const sym = Symbol('s');", "sym", "symbol", id="symbol"),
        pytest.param("const weak = new WeakMap();", "weak", "WeakMap", id="weakmap"),
        pytest.param("const pending = Promise.resolve(1);", "pending", "Promise", id="promise"),
        pytest.param("const proxied = new Proxy({}, {});", "proxied", "serialized", id="proxy"),
        pytest.param(
            "const holder = {run() { return 1 }};",
            "holder",
            "serialized",
            id="object-with-function",
        ),
    ],
)
async def test_a_global_that_cannot_persist_is_reported_and_the_rest_is_kept(
    stateful: Services, declaration: str, name: str, reason_mentions: str
) -> None:
    first = await completed(
        stateful, f"const keptValue = {{n: 1}}; function keptFn() {{ return 2 }} {declaration}"
    )
    lost = not_persisted(first)
    assert list(lost) == [name], first.not_persisted
    assert reason_mentions.lower() in lost[name].lower()
    after = await resumed(
        stateful, first.heap or "", f"JSON.stringify([keptValue.n, keptFn(), typeof {name}])"
    )
    assert json.loads(after.result or "") == [1, 2, "undefined"]


async def test_everything_that_cannot_persist_is_listed_together_never_dropped_silently(
    stateful: Services,
) -> None:
    record = await completed(
        stateful,
        """
        const counter = (() => { let n = 0; return () => ++n })();
        const sym = Symbol('s');
        const weak = new WeakMap();
        const pending = Promise.resolve(1);
        const proxied = new Proxy({}, {});
        const holder = {run() { return 1 }};
        const kept = 'yes';
        """,
    )
    lost = not_persisted(record)
    assert sorted(lost) == ["counter", "holder", "pending", "proxied", "sym", "weak"]
    assert all(reason.strip() for reason in lost.values())
    after = await resumed(stateful, record.heap or "", "kept")
    assert after.result == "yes"
    assert after.not_persisted == ()


# --- naming and determinism -------------------------------------------------

STATE = """
const config = {name: 'x', when: new Date(0), nested: {deep: true}};
let registry = new Map([['a', new Set([1, 2])]]);
var total = 10n;
function add(x, y) { return x + y }
class Point { constructor(x) { this.x = x } }
const origin = new Point(0);
"""


async def test_the_same_code_run_twice_from_scratch_gives_the_same_heap(
    stateful: Services,
) -> None:
    code = STATE + "const list = [1, 2, 3]; const words = ['a', 'b'];"
    first = await completed(stateful, code)
    again = await completed(stateful, code)
    assert again.heap == first.heap


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("", id="objects-maps-sets-bigint-functions-instances"),
        pytest.param("const list = [1, 2, 3];", id="a-packed-array"),
        pytest.param(
            "const rows = [{id: 1, tags: ['a', 'b'], meta: {seen: [true]}}, {id: 2, tags: []}];"
            "const matrix = [[1, 2], [3, 4]]; const byKey = new Map([['k', [{n: [1]}]]]);"
            "const leaves = Array.from({length: 50}, (_, i) => ({i, name: 'n' + i}));"
            "const shared = [1]; const twice = {a: shared, b: {c: shared}};",
            id="arrays-nested-in-objects-maps-and-arrays",
        ),
        pytest.param(
            "const tagged = [1, 2]; tagged.note = 'x'; tagged.more = [3, {n: [4]}];",
            id="an-array-with-properties",
        ),
        pytest.param(
            "const rows = Array.from({length: 20}, (_, i) => ({id: i, v: i * 1.5}));"
            "const halves = [0.5, 2 * 1.5, -0, NaN];",
            id="whole-numbers-computed-as-doubles",
        ),
    ],
)
async def test_resuming_and_changing_nothing_gives_the_same_heap(
    stateful: Services, extra: str
) -> None:
    first = await completed(stateful, STATE + extra)
    untouched = await resumed(stateful, first.heap or "", "1 + 1")
    assert untouched.result == "2"
    assert untouched.heap == first.heap
    reread = await resumed(stateful, first.heap or "", "registry.get('a').size + Number(total)")
    assert reread.result == "12"
    assert reread.heap == first.heap


async def test_a_run_that_changes_nothing_stores_nothing(
    stateful: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await completed(stateful, f"const marker = {unique('m')!r}")
    heaps = stateful.engine.heaps
    assert heaps is not None
    stored: list[bytes] = []
    put = heaps.put

    async def counting_put(data: bytes) -> str:
        stored.append(data)
        return await put(data)

    monkeypatch.setattr(heaps, "put", counting_put)
    untouched = await resumed(stateful, first.heap or "", "marker.length")
    assert untouched.heap == first.heap
    assert stored == []
    changed = await resumed(stateful, first.heap or "", "var more = 1")
    assert changed.heap != first.heap
    assert len(stored) == 1


async def test_the_heap_is_the_sha256_of_the_stored_bytes(stateful: Services) -> None:
    record = await completed(stateful, f"const marker = '{unique('sha')}'")
    heap = record.heap or ""
    assert len(heap) == 64
    assert hashlib.sha256(heap_path(stateful, heap).read_bytes()).hexdigest() == heap
    assert stateful.engine.heaps is not None
    assert hashlib.sha256(await stateful.engine.heaps.get(heap)).hexdigest() == heap


# --- bad heaps ----------------------------------------------------------------


async def test_an_unknown_heap_is_refused_at_submit(stateful: Services) -> None:
    with pytest.raises(HeapNotFound, match="heap not found"):
        await submit(stateful, "1", heap="0" * 64)


@pytest.mark.parametrize(
    "heap",
    [
        pytest.param("abc", id="short"),
        pytest.param("A" * 64, id="uppercase"),
        pytest.param("g" * 64, id="not-hex"),
        pytest.param("0" * 65, id="too-long"),
        pytest.param(12, id="not-a-string"),
    ],
)
async def test_a_malformed_heap_is_an_invalid_request(stateful: Services, heap: object) -> None:
    with pytest.raises(InvalidRequest, match="64 lowercase hex"):
        await submit(stateful, "1", heap=heap)


async def test_bytes_that_do_not_match_their_hash_are_never_executed(stateful: Services) -> None:
    good = await completed(stateful, f"const good = '{unique('good')}'")
    victim = await completed(stateful, f"const victim = '{unique('victim')}'")
    path = heap_path(stateful, victim.heap or "")
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        record = await run(stateful, "console.log('executed'); victim", heap=victim.heap)
        assert record.status == ExecutionStatus.FAILED
        assert "corrupt snapshot" in (record.error or "")
        assert record.heap is None
        assert record.result is None
        assert await output_of(stateful, record) == ""
    finally:
        path.write_bytes(original)
    after = await resumed(stateful, good.heap or "", "typeof good")
    assert after.result == "string"


async def test_a_snapshot_from_another_engine_version_fails_saying_so(stateful: Services) -> None:
    assert stateful.engine.heaps is not None
    real = await completed(stateful, f"const versioned = '{unique('version')}'")
    header, payload = split_snapshot(await stateful.engine.heaps.get(real.heap or ""))
    assert header["v8"] != "0.0.1-elsewhere"
    foreign = await stateful.engine.heaps.put(
        join_snapshot({**header, "v8": "0.0.1-elsewhere"}, payload)
    )
    record = await run(stateful, "console.log('executed'); versioned", heap=foreign)
    assert record.status == ExecutionStatus.FAILED
    error = record.error or ""
    assert "0.0.1-elsewhere" in error
    assert "cannot read it" in error
    assert header["v8"] in error
    assert record.heap is None
    assert await output_of(stateful, record) == ""


# --- failed runs leave nothing behind -------------------------------------------


@pytest.mark.parametrize("ending", ["fails", "times-out", "is-cancelled"])
async def test_a_run_that_does_not_complete_produces_no_heap_and_keeps_its_input(
    stateful: Services, ending: str
) -> None:
    assert stateful.engine.heaps is not None
    source = await completed(stateful, f"const intact = {{n: 1, id: '{unique('intact')}'}}")
    heap = source.heap or ""
    before = await stateful.engine.heaps.get(heap)
    mutate = "intact.n = 2; var extra = 1; console.log('started');"
    if ending == "fails":
        record = await run(stateful, mutate + "throw new Error('boom')", heap=heap)
        assert record.status == ExecutionStatus.FAILED
    elif ending == "times-out":
        record = await run(
            stateful, mutate + "while (true) {}", heap=heap, execution_timeout_secs=1
        )
        assert record.status == ExecutionStatus.TIMED_OUT
    else:
        started = await submit(stateful, mutate + "while (true) {}", heap=heap)
        assert await wait_for_output(stateful, started) == "started\n"
        with anyio.fail_after(10):
            record = await stateful.engine.cancel(started.execution_id)
        assert record.status == ExecutionStatus.CANCELLED
    assert record.heap is None
    assert record.input_heap == heap
    assert await stateful.engine.heaps.get(heap) == before
    after = await resumed(stateful, heap, "JSON.stringify([intact.n, typeof extra])")
    assert after.result == '[1,"undefined"]'


# --- sessions and tags ---------------------------------------------------------


async def test_a_session_logs_each_completed_run_chained_by_heap(stateful: Services) -> None:
    session = unique("session")
    codes = ["let count = 1", "count += 1", "count += 10"]
    records: list[ExecutionRecord] = []
    heap: str | None = None
    for code in codes:
        record = await completed(stateful, code, heap=heap, session=session)
        records.append(record)
        heap = record.heap
    failed = await run(stateful, "throw new Error('not logged')", heap=heap, session=session)
    assert failed.status == ExecutionStatus.FAILED
    assert stateful.sessions is not None
    entries = stateful.sessions.entries(session)
    assert [e.index for e in entries] == [1, 2, 3]
    assert [e.code for e in entries] == codes
    assert [e.output_heap for e in entries] == [r.heap for r in records]
    assert [e.input_heap for e in entries] == [None, records[0].heap, records[1].heap]
    stamps = [datetime.fromisoformat(e.timestamp) for e in entries]
    assert stamps == sorted(stamps)
    assert all(stamp.tzinfo is not None for stamp in stamps)
    assert session in stateful.sessions.sessions()
    final = await resumed(stateful, heap or "", "count")
    assert final.result == "12"


async def test_sessions_lists_every_session_name(stateful: Services) -> None:
    names = sorted(unique(f"listed{i}") for i in range(2))
    for name in names:
        await completed(stateful, "1", session=name)
    assert stateful.sessions is not None
    listed = stateful.sessions.sessions()
    assert set(names) <= set(listed)
    assert listed == sorted(listed)
    assert unique("never-used") not in listed


async def test_tags_are_set_on_the_output_heap_queried_replaced_and_deleted(
    stateful: Services,
) -> None:
    assert stateful.sessions is not None
    project = unique("project")
    record = await completed(
        stateful,
        f"const tagged = '{project}'",
        tags={"project": project, "stage": "draft"},
    )
    other = await completed(
        stateful, f"const tagged = '{project}-other'", tags={"project": project, "stage": "final"}
    )
    heap, other_heap = record.heap or "", other.heap or ""
    sessions = stateful.sessions
    assert sessions.tags(heap) == {"project": project, "stage": "draft"}
    assert sessions.heaps_with({"project": project}) == sorted([heap, other_heap])
    assert sessions.heaps_with({"project": project, "stage": "draft"}) == [heap]
    assert sessions.heaps_with({"project": project, "stage": "nope"}) == []
    sessions.set_tags(heap, {"stage": "final", "owner": "me"})
    assert sessions.tags(heap) == {"owner": "me", "stage": "final"}
    assert sessions.heaps_with({"project": project}) == [other_heap]
    sessions.delete_tags(heap, ["owner", "absent"])
    assert sessions.tags(heap) == {"stage": "final"}
    assert sessions.tags(other_heap) == {"project": project, "stage": "final"}


# --- bad input ------------------------------------------------------------------

SETTINGS = SandboxSettings(deno_path="deno")


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param(["a", "b"], id="list"),
        pytest.param("a=b", id="string"),
        pytest.param({"a": 1}, id="number-value"),
        pytest.param({"a": None}, id="null-value"),
        pytest.param({"a": {"b": "c"}}, id="nested-value"),
        pytest.param({1: "a"}, id="number-key"),
        pytest.param({"": "a"}, id="empty-key"),
    ],
)
def test_tags_that_are_not_a_string_to_string_map_are_refused(tags: object) -> None:
    with pytest.raises(InvalidRequest, match="tags"):
        build_run_request(SETTINGS, "1", stateful=True, tags=tags)


@pytest.mark.parametrize(
    "session",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("s" * 10_000, id="10000-characters"),
        pytest.param(7, id="not-a-string"),
    ],
)
def test_an_empty_or_absurdly_long_session_name_is_refused(session: object) -> None:
    with pytest.raises(InvalidRequest, match="session"):
        build_run_request(SETTINGS, "1", stateful=True, session=session)


@pytest.mark.parametrize(
    "field",
    [
        pytest.param({"heap": "0" * 64}, id="heap"),
        pytest.param({"session": "s"}, id="session"),
        pytest.param({"tags": {"a": "b"}}, id="tags"),
    ],
)
def test_stateful_fields_are_refused_by_a_stateless_server(field: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="--stateless"):
        build_run_request(SETTINGS, "1", stateful=False, **field)


# --- size ---------------------------------------------------------------------


async def test_a_state_of_about_6_mb_survives_a_round_trip(stateful: Services) -> None:
    limits: dict[str, Any] = {"heap_memory_max_mb": 256, "execution_timeout_secs": 60}
    first = await completed(
        stateful,
        "const items = Array.from({length: 100000},"
        " (_, i) => ({id: i, name: 'item' + i, tags: ['a', 'b'], score: i * 1.5}))",
        **limits,
    )
    assert stateful.engine.heaps is not None
    size = len(await stateful.engine.heaps.get(first.heap or ""))
    assert 4_000_000 < size < 12_000_000
    after = await resumed(
        stateful, first.heap or "", "[items.length, JSON.stringify(items.at(-1))]", **limits
    )
    assert json.loads(after.result or "") == [
        100000,
        '{"id":99999,"name":"item99999","tags":["a","b"],"score":149998.5}',
    ]


# --- known gaps (bugs: state lost without being reported) --------------------------


async def test_a_global_named_like_a_runtime_global_is_kept_or_reported(
    stateful: Services,
) -> None:
    first = await completed(stateful, "let name = 'Ada'")
    after = await resumed(stateful, first.heap or "", "name")
    assert after.result == "Ada" or "name" in not_persisted(first)


async def test_an_instance_with_private_fields_works_after_a_restore_or_is_reported(
    stateful: Services,
) -> None:
    first = await completed(
        stateful,
        "class Account { #balance = 5; get balance() { return this.#balance } }"
        "; const account = new Account()",
    )
    after = await run(stateful, "account.balance", heap=first.heap)
    assert after.result == "5" or "account" in not_persisted(first)


@pytest.mark.parametrize(
    ("code", "check", "name"),
    [
        pytest.param(
            "class Registry { static items = [] }; Registry.items.push('x')",
            "Registry.items.length",
            "Registry",
            id="class-static-field",
        ),
        pytest.param(
            "function hits() {}; hits.count = 1", "String(hits.count)", "hits", id="function-prop"
        ),
    ],
)
async def test_state_held_by_a_function_or_class_is_kept_or_reported(
    stateful: Services, code: str, check: str, name: str
) -> None:
    first = await completed(stateful, code)
    after = await resumed(stateful, first.heap or "", check)
    assert after.result == "1" or name in not_persisted(first)


async def test_a_closure_put_in_place_of_a_restored_function_is_still_reported(
    stateful: Services,
) -> None:
    # Restored functions are known not to be closures and are not asked about
    # again; anything assigned since still is.
    first = await completed(stateful, "function next() { return 1 }\nfunction kept() { return 2 }")
    assert first.not_persisted == ()
    second = await resumed(
        stateful,
        first.heap or "",
        "next = (() => { let n = 0; return () => ++n })(); next(); next()",
    )
    assert second.result == "2"
    lost = not_persisted(second)
    assert list(lost) == ["next"], second.not_persisted
    assert "closure" in lost["next"]
    third = await resumed(stateful, second.heap or "", "JSON.stringify([typeof next, kept()])")
    assert json.loads(third.result or "") == ["undefined", 2]
