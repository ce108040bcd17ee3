// Heap snapshots: the user's globals, written with the V8 serializer and read back.
//
// What is kept: every global the user created or changed (var, let, const,
// function and class declarations, properties put on globalThis) with its
// value. Values go through one V8 serialize call, so shared references
// between globals survive; functions and classes are kept as source text and
// re-created, with the data properties put on them (static fields, counters);
// instances of the user's classes get their prototype back after a restore.
// What cannot be kept (closures' captured state, symbols, Proxies, WeakMaps,
// Promises, wasm modules, values holding functions, instances with #private
// fields) is reported, never dropped silently. Globals holding what an import
// gave them (a module's namespace or one of its exports) are kept as the
// import to redo: the module comes back from the supervisor's cache.
const snapCore = Deno[Deno.internal].core;
const SNAPSHOT_FORMAT = 1;
const SNAPSHOT_MAGIC = [0x4d, 0x56, 0x38, 0x53]; // "MV8S"
const SNAPSHOT_URL = "file:///snapshot.js";
// Patterns with Unicode property classes are built on first use: as literals
// they cost every child ~0.3 ms each to parse, stateful or not.
const patterns = {};
const identifierPattern = () =>
  (patterns.identifier ??= new RegExp(String.raw`[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*`, "gu"));
const privateMemberPattern = () => (patterns.privateMember ??= new RegExp(String.raw`#[\p{ID_Start}$_]`, "u"));
const NOT_BINDINGS = new Set([
  "this", "null", "true", "false", "super", "arguments", "new", "typeof", "void", "delete",
  "in", "instanceof", "await", "yield", "import", "export", "return", "function", "class",
]);
// Own properties every function or class has; anything else on one is state.
const FUNCTION_OWN = new Set(["length", "name", "prototype", "arguments", "caller"]);
const snapEncoder = new TextEncoder();
const snapDecoder = new TextDecoder();

let baseline = null;
// Functions and classes this run re-created from a snapshot's source text, in
// the global scope: none of them can be a closure, so the snapshot at the end
// asks the inspector (~20 ms to load) only about functions made since.
const restoredFunctions = new WeakSet();

/** Remember the globals that exist before any user state (the runner's and Deno's own). */
export function recordBaseline() {
  baseline = new Map();
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    const { value, get, set } = Object.getOwnPropertyDescriptor(globalThis, name);
    baseline.set(name, [value, get, set]);
  }
}

function engineVersion() {
  return { format: SNAPSHOT_FORMAT, deno: Deno.version.deno, v8: Deno.version.v8 };
}

function changedFromBaseline(name) {
  const before = baseline.get(name);
  const now = Object.getOwnPropertyDescriptor(globalThis, name);
  if (!before || !now) return Boolean(before) !== Boolean(now);
  return !Object.is(before[0], now.value) || before[1] !== now.get || before[2] !== now.set;
}

/** Names and values of the user's globals: global properties plus this cell's lexicals. */
function userGlobals(code) {
  const found = new Map();
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    if (baseline.has(name) && !changedFromBaseline(name)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, name);
    found.set(name, descriptor && "value" in descriptor ? descriptor.value : globalThis[name]);
  }
  const lost = [];
  // let/const/class bindings are not properties of globalThis: find them among
  // the identifiers this cell mentions. A lexical binding shadows a property
  // of the same name (a runtime global included), so its value is the one kept.
  for (const name of new Set(code.match(identifierPattern()) ?? [])) {
    if (NOT_BINDINGS.has(name)) continue;
    const own = Object.prototype.hasOwnProperty.call(globalThis, name);
    if (!own && name in globalThis) continue; // inherited, e.g. `constructor`
    const [value, error] = snapCore.evalContext(name, SNAPSHOT_URL);
    if (!error) {
      const shadowed = !own || !Object.is(globalThis[name], value);
      if (shadowed || found.has(name)) found.set(name, value);
    } else if (/before initialization/.test(String(error.thrown?.message))) {
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

/** Data properties a function or class carries beyond its own (static fields, counters). */
function functionState(fn) {
  const state = {};
  for (const key of Object.getOwnPropertyNames(fn)) {
    if (FUNCTION_OWN.has(key)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(fn, key);
    if ("value" in descriptor && typeof descriptor.value !== "function") {
      state[key] = descriptor.value;
    }
  }
  return state;
}

// Maps and Sets are read and refilled through the built-in methods: an
// instance of the user's subclass may override them, and restoring a heap
// must not run the user's code.
const mapEntries = Map.prototype.entries;
const mapSet = Map.prototype.set;
const mapClear = Map.prototype.clear;
const setValues = Set.prototype.values;
const setAdd = Set.prototype.add;
const setClear = Set.prototype.clear;

function childrenOf(value) {
  if (value instanceof Map) return [...mapEntries.call(value)].flat();
  if (value instanceof Set) return [...setValues.call(value)];
  if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return [];
  return Object.keys(value).map((key) => value[key]);
}

/**
 * Objects in a fixed depth-first order, so the same graph walked after a
 * restore meets them in the same order. `visit(object, index, owner)` gets
 * the top-level key of `root` the object was first reached from.
 */
function walk(root, visit) {
  const seen = new Set();
  const stack = [[root, null]];
  while (stack.length) {
    const [value, owner] = stack.pop();
    if (value === null || typeof value !== "object" || seen.has(value)) continue;
    seen.add(value);
    visit(value, seen.size - 1, owner);
    const keys = value === root ? Object.keys(root) : null;
    const children = childrenOf(value);
    for (let i = children.length - 1; i >= 0; i--) {
      stack.push([children[i], keys ? keys[i] : owner]);
    }
  }
}

/**
 * V8 deserializes every array with holey elements, and the serializer writes
 * holey arrays in another layout: repack arrays without holes so that an
 * unchanged state serializes to the same bytes (and the same hash) again.
 * Every reference to a repacked array, wherever it is (an element, a
 * property, a Map or Set entry, an error's cause), is replaced by its copy.
 * This visits every object once, so it is written for speed.
 */
function repackArrays(root) {
  const isObject = (v) => v !== null && typeof v === "object";
  const isLeaf = (value) => {
    if (Object.getPrototypeOf(value) !== Object.prototype) return false;
    for (const key in value) {
      if (isObject(value[key])) return false;
    }
    return true;
  };
  const packed = new Map();
  const namedKeys = new Map(); // repacked array -> its named properties, if any
  const seen = new Set([root]);
  const stack = [root];
  const visit = (child) => {
    if (Array.isArray(child)) {
      let copy = packed.get(child);
      if (copy === undefined) {
        copy = packedCopy(child, namedKeys);
        packed.set(child, copy);
      }
      child = copy;
    } else if (isLeaf(child)) {
      // A plain object holding no object: nothing to repack below it, so it
      // needs no place in `seen` (most of a big state is leaves, and the Set
      // would be most of the cost).
      return child;
    }
    if (!seen.has(child)) {
      seen.add(child);
      stack.push(child);
    }
    return child;
  };
  // Visits what `value[key]` holds and puts its replacement, if any, in its place.
  const revisit = (value, key) => {
    const child = value[key];
    if (isObject(child)) {
      const next = visit(child);
      if (next !== child) value[key] = next;
    }
  };
  while (stack.length) {
    const value = stack.pop();
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const child = value[i];
        if (isObject(child)) {
          const next = visit(child);
          if (next !== child) value[i] = next;
        }
      }
      for (const key of namedKeys.get(value) ?? []) revisit(value, key);
    } else if (value instanceof Map) {
      const entries = [...mapEntries.call(value)];
      if (entries.some(([k, v]) => isObject(k) || isObject(v))) {
        mapClear.call(value);
        for (const [k, v] of entries) {
          mapSet.call(value, isObject(k) ? visit(k) : k, isObject(v) ? visit(v) : v);
        }
      }
    } else if (value instanceof Set) {
      const items = [...setValues.call(value)];
      if (items.some(isObject)) {
        setClear.call(value);
        for (const item of items) setAdd.call(value, isObject(item) ? visit(item) : item);
      }
    } else if (!(ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp)) {
      for (const key in value) {
        if (Object.prototype.hasOwnProperty.call(value, key)) revisit(value, key);
      }
      // The serializer keeps an error's cause, a property that is not enumerable.
      if (value instanceof Error && Object.prototype.hasOwnProperty.call(value, "cause")) {
        const cause = value.cause;
        if (isObject(cause)) {
          const next = visit(cause);
          if (next !== cause) {
            Object.defineProperty(value, "cause", { value: next, writable: true, configurable: true });
          }
        }
      }
    }
  }
  return root;
}

const arrayFlat = Array.prototype.flat;

/**
 * A packed copy of a deserialized array, or the array itself if it has holes
 * (serialized as a sparse array either way). `flat(0)` copies the elements
 * into a packed array natively (the repack of 100k objects took ~14.5 ms with
 * a loop of `push`, ~9 ms with this). The named properties the serializer
 * also keeps (a RegExp match's `index` and `groups`, say) move to the copy:
 * the original is emptied first so they can be listed without listing every
 * element, which is safe because every reference to it is replaced by the
 * copy. They are noted in `namedKeys` to be visited in turn.
 */
function packedCopy(array, namedKeys) {
  // Stops at the first hole: a huge sparse array is not walked index by index.
  for (let i = 0; i < array.length; i++) {
    if (!(i in array)) return array;
  }
  const prototype = Object.getPrototypeOf(array);
  let copy;
  if (prototype === Array.prototype && !Object.prototype.hasOwnProperty.call(array, "constructor")) {
    copy = arrayFlat.call(array, 0);
  } else {
    // flat() would build the copy through the array's constructor (a class
    // of the user's, say): copied by hand instead, keeping the prototype.
    copy = [];
    for (let i = 0; i < array.length; i++) copy[i] = array[i];
    Object.setPrototypeOf(copy, prototype);
  }
  array.length = 0;
  const keys = Object.keys(array);
  for (const key of keys) {
    Object.defineProperty(copy, key, { value: array[key], writable: true, enumerable: true, configurable: true });
  }
  if (keys.length) namedKeys.set(copy, keys);
  return copy;
}

/** The snapshot as two parts (magic, length and header; payload), sent without copying. */
function encodeSnapshot(header, payload) {
  const head = snapEncoder.encode(JSON.stringify(header));
  const prefix = new Uint8Array(8 + head.byteLength);
  prefix.set(SNAPSHOT_MAGIC, 0);
  new DataView(prefix.buffer).setUint32(4, head.byteLength);
  prefix.set(head, 8);
  return [prefix, payload];
}

function decodeSnapshot(bytes) {
  if (bytes.byteLength < 8 || SNAPSHOT_MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new Error("corrupt snapshot: not an mcp-v8 heap snapshot");
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4);
  const header = JSON.parse(snapDecoder.decode(bytes.subarray(8, 8 + length)));
  return { header, payload: bytes.subarray(8 + length) };
}

function byName(a, b) {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Serialize the user's globals. `closureCheck(names)` resolves to the names of
 * functions that capture state from an enclosing scope (lost on restore);
 * `importCheck(globals)` to the globals that hold what an import gave them,
 * as {name, specifier, export}: kept as imports to redo, not as values.
 */
export async function takeSnapshot(code, closureCheck, importCheck) {
  const { found, lost } = userGlobals(code);
  const imports = (await importCheck(found)).sort(byName);
  for (const { name } of imports) found.delete(name);
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
      functions.push({ name, kind, source, value });
      if (kind === "class") classes.set(value.prototype, { name, source });
    } else if (typeof value === "symbol") {
      lost.push({ name, reason: "symbols cannot be serialized" });
    } else {
      values.set(name, value);
    }
  }
  const made = functions.filter((f) => !restoredFunctions.has(f.value));
  if (made.length) {
    const captured = new Set(await closureCheck(made.map((f) => f.name)));
    for (let i = functions.length - 1; i >= 0; i--) {
      if (captured.has(functions[i].name)) {
        lost.push({ name: functions[i].name, reason: "a closure: the state it captures cannot be saved" });
        functions.splice(i, 1);
      }
    }
  }
  // Instances of classes with #private members cannot be rebuilt faithfully.
  if (classes.size) {
    const broken = new Map();
    walk(Object.fromEntries(values), (object, _index, owner) => {
      const cls = classes.get(Object.getPrototypeOf(object));
      if (cls && owner !== null && privateMemberPattern().test(cls.source) && !broken.has(owner)) {
        broken.set(owner, cls.name);
      }
    });
    for (const [owner, cls] of broken) {
      lost.push({ name: owner, reason: `holds an instance of ${cls}, whose #private fields cannot be saved` });
      values.delete(owner);
    }
  }
  const statics = {};
  for (const fn of functions) {
    const state = functionState(fn.value);
    if (Object.keys(state).length) statics[fn.name] = state;
  }
  const bag = () => [Object.fromEntries(values), statics];
  let payload;
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
    for (const name of Object.keys(statics)) {
      try {
        snapCore.serialize(statics[name]);
      } catch (error) {
        lost.push({ name, reason: `properties set on it cannot be serialized: ${error.message}` });
        delete statics[name];
      }
    }
    payload = snapCore.serialize(bag());
  }
  const protos = [];
  if (classes.size) {
    walk(bag(), (object, index) => {
      const cls = classes.get(Object.getPrototypeOf(object));
      if (cls !== undefined) protos.push([index, cls.name]);
    });
  }
  lost.sort(byName);
  const header = {
    ...engineVersion(),
    functions: functions.map(({ name, kind, source }) => ({ name, kind, source })),
    values: [...values.keys()],
    protos,
    imports,
  };
  return { bytes: encodeSnapshot(header, payload), lost };
}

function defineGlobal(name, value) {
  Object.defineProperty(globalThis, name, { value, writable: true, enumerable: true, configurable: true });
}

/**
 * Restore globals from snapshot bytes; returns what could not be re-created,
 * and the imports to redo (the runner loads those before the cell runs).
 */
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
      } else {
        defineGlobal(fn.name, value);
        restoredFunctions.add(value);
      }
    }
    if (failed.length === pending.length) {
      for (const fn of failed) lost.push({ name: fn.name, reason: `could not be re-created: ${lastError}` });
      break;
    }
    pending = failed;
  }
  const restored = snapCore.deserialize(payload);
  const [values, statics] = restored;
  if (header.protos.length) {
    const relink = new Map(header.protos);
    walk(restored, (object, index) => {
      const name = relink.get(index);
      const cls = name === undefined ? undefined : globalThis[name];
      if (typeof cls === "function") Object.setPrototypeOf(object, cls.prototype);
    });
  }
  repackArrays(restored);
  for (const name of header.values) defineGlobal(name, values[name]);
  for (const [name, state] of Object.entries(statics)) {
    const fn = globalThis[name];
    if (typeof fn !== "function") continue;
    for (const [key, value] of Object.entries(state)) {
      Object.defineProperty(fn, key, { value, writable: true, enumerable: true, configurable: true });
    }
  }
  return { lost, imports: header.imports ?? [] };
}
