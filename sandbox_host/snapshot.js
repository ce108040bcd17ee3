// Heap snapshots: the user's globals, written with the V8 serializer and read back.
//
// What is kept: every global the user created (var, let, const, function and
// class declarations, properties put on globalThis) with its value. Values go
// through one V8 serialize call, so shared references between globals
// survive; functions and classes are kept as source text and re-created;
// instances of the user's classes get their prototype back after a restore.
// What cannot be kept (closures' captured state, symbols, Proxies, WeakMaps,
// Promises, wasm modules, values holding functions) is reported, never
// dropped silently.
const snapCore = Deno[Deno.internal].core;
const SNAPSHOT_FORMAT = 1;
const SNAPSHOT_MAGIC = [0x4d, 0x56, 0x38, 0x53]; // "MV8S"
const SNAPSHOT_URL = "file:///snapshot.js";
const IDENTIFIER = /[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*/gu;
const NOT_BINDINGS = new Set([
  "this", "null", "true", "false", "super", "arguments", "new", "typeof", "void", "delete",
  "in", "instanceof", "await", "yield", "import", "export", "return", "function", "class",
]);
const snapEncoder = new TextEncoder();
const snapDecoder = new TextDecoder();

let baselineNames = null;

/** Remember which globals exist before any user state (the runner's and Deno's own). */
export function recordBaseline() {
  baselineNames = new Set(Object.getOwnPropertyNames(globalThis));
}

function engineVersion() {
  return { format: SNAPSHOT_FORMAT, deno: Deno.version.deno, v8: Deno.version.v8 };
}

/** Names and values of the user's globals: global properties plus this cell's lexicals. */
function userGlobals(code) {
  const found = new Map();
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    if (baselineNames.has(name)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, name);
    found.set(name, descriptor && "value" in descriptor ? descriptor.value : globalThis[name]);
  }
  const lost = [];
  // let/const/class bindings are not properties of globalThis: find them among
  // the identifiers this cell mentions. A lexical binding shadows a property
  // of the same name, so its value is the one kept.
  for (const name of new Set(code.match(IDENTIFIER) ?? [])) {
    if (baselineNames.has(name) || NOT_BINDINGS.has(name)) continue;
    if (!found.has(name) && name in globalThis) continue; // inherited, e.g. `constructor`
    const [value, error] = snapCore.evalContext(name, SNAPSHOT_URL);
    if (!error) found.set(name, value);
    else if (/before initialization/.test(String(error.thrown?.message))) {
      lost.push({ name, reason: "declared but never initialized" });
    }
  }
  return { found, lost };
}

function functionSource(value) {
  const source = Function.prototype.toString.call(value);
  if (/\{\s*\[native code\]\s*\}$/.test(source)) return null;
  return source;
}

/** Objects in a fixed order: the same graph walked after a restore meets them in the same order. */
function walk(root, visit) {
  const seen = new Set();
  const stack = [root];
  while (stack.length) {
    const value = stack.pop();
    if (value === null || typeof value !== "object" || seen.has(value)) continue;
    seen.add(value);
    visit(value, seen.size - 1);
    const children = [];
    if (value instanceof Map) {
      for (const [k, v] of value) children.push(k, v);
    } else if (value instanceof Set) {
      for (const v of value) children.push(v);
    } else if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) {
      continue;
    } else {
      for (const key of Object.keys(value)) children.push(value[key]);
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
}

function encodeSnapshot(header, payload) {
  const head = snapEncoder.encode(JSON.stringify(header));
  const out = new Uint8Array(8 + head.byteLength + payload.byteLength);
  out.set(SNAPSHOT_MAGIC, 0);
  new DataView(out.buffer).setUint32(4, head.byteLength);
  out.set(head, 8);
  out.set(payload, 8 + head.byteLength);
  return out;
}

function decodeSnapshot(bytes) {
  if (bytes.byteLength < 8 || SNAPSHOT_MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new Error("corrupt snapshot: not an mcp-v8 heap snapshot");
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4);
  const header = JSON.parse(snapDecoder.decode(bytes.subarray(8, 8 + length)));
  return { header, payload: bytes.subarray(8 + length) };
}

/**
 * Serialize the user's globals. `closureCheck(names)` resolves to the names of
 * functions that capture state from an enclosing function (lost on restore).
 */
export async function takeSnapshot(code, closureCheck) {
  const { found, lost } = userGlobals(code);
  const functions = [];
  const values = new Map();
  const classes = new Map();
  for (const name of [...found.keys()].sort()) {
    const value = found.get(name);
    if (typeof value === "function") {
      const source = functionSource(value);
      if (source === null) {
        lost.push({ name, reason: "a native or bound function has no source to re-create it from" });
        continue;
      }
      const kind = /^class\b/.test(source) ? "class" : "function";
      functions.push({ name, kind, source });
      if (kind === "class") classes.set(value.prototype, name);
    } else if (typeof value === "symbol") {
      lost.push({ name, reason: "symbols cannot be serialized" });
    } else {
      values.set(name, value);
    }
  }
  if (functions.length) {
    const captured = new Set(await closureCheck(functions.map((f) => f.name)));
    for (let i = functions.length - 1; i >= 0; i--) {
      if (captured.has(functions[i].name)) {
        lost.push({ name: functions[i].name, reason: "a closure: the state it captures cannot be saved" });
        functions.splice(i, 1);
      }
    }
  }
  let payload;
  const bag = () => Object.fromEntries(values);
  try {
    payload = snapCore.serialize(bag());
  } catch {
    for (const [name, value] of values) {
      try {
        snapCore.serialize(value);
      } catch (error) {
        lost.push({ name, reason: `cannot be serialized: ${error.message}` });
        values.delete(name);
      }
    }
    payload = snapCore.serialize(bag());
  }
  const protos = [];
  if (classes.size) {
    walk(bag(), (object, index) => {
      const name = classes.get(Object.getPrototypeOf(object));
      if (name !== undefined) protos.push([index, name]);
    });
  }
  lost.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header = { ...engineVersion(), functions, values: [...values.keys()], protos };
  return { bytes: encodeSnapshot(header, payload), lost };
}

function defineGlobal(name, value) {
  Object.defineProperty(globalThis, name, { value, writable: true, enumerable: true, configurable: true });
}

/** Restore globals from snapshot bytes; returns what could not be re-created. */
export function restoreSnapshot(bytes) {
  const { header, payload } = decodeSnapshot(bytes);
  const here = engineVersion();
  if (header.format !== here.format || header.v8 !== here.v8) {
    throw new Error(
      `this snapshot was written by Deno ${header.deno} (V8 ${header.v8}, snapshot format ` +
        `${header.format}); this server runs Deno ${here.deno} (V8 ${here.v8}, format ` +
        `${here.format}) and cannot read it`,
    );
  }
  const lost = [];
  // Classes may extend each other: define what can be, then retry the rest.
  let pending = header.functions;
  while (pending.length) {
    const failed = [];
    let lastError = null;
    for (const fn of pending) {
      const [value, error] = snapCore.evalContext(`(${fn.source})`, SNAPSHOT_URL);
      if (error) {
        failed.push(fn);
        lastError = error.thrown;
      } else defineGlobal(fn.name, value);
    }
    if (failed.length === pending.length) {
      for (const fn of failed) lost.push({ name: fn.name, reason: `could not be re-created: ${lastError}` });
      break;
    }
    pending = failed;
  }
  const values = snapCore.deserialize(payload);
  for (const name of header.values) defineGlobal(name, values[name]);
  if (header.protos.length) {
    const relink = new Map(header.protos);
    walk(values, (object, index) => {
      const name = relink.get(index);
      const cls = name === undefined ? undefined : globalThis[name];
      if (typeof cls === "function") Object.setPrototypeOf(object, cls.prototype);
    });
  }
  return lost;
}
