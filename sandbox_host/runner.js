// The program every sandbox child runs: receive one Run frame, evaluate the
// code with REPL semantics, report output and the result, exit. (A child set
// aside for imports or top-level await first receives a Preload frame: module
// bundles to evaluate and the inspector to connect before its Run.)
//
// User code never arrives as a file: only over the frame channel, evaluated
// with evalContext (a classic script in the global scope, so its completion
// value is the result) or, for top-level await, V8's REPL mode through the
// inspector, which costs ~20 ms and is loaded only for such cells.
import { reader, send, watchChannel } from "./channel.js";
import { lazyGlobal, lazyModule } from "./lazy.js";
import { describeError, renderResult, USER_URL } from "./render.js";
import { PROTOCOL_VERSION } from "./wire.js";

// Compiled when a run first needs them (lazy.js): a `1 + 1` needs none.
const capabilities = lazyModule("capabilities.js");
const consoles = lazyModule("console.js");
const modules = lazyModule("modules.js");
const repl = lazyModule("repl.js");
const snapshots = lazyModule("snapshot.js");
const timers = lazyModule("timers.js");

const core = Deno[Deno.internal].core;
// In a classic script `await` may parse as an identifier (`f(await -1)` would
// run as a subtraction), so any cell that mentions it is evaluated in REPL
// mode, where it always means await, as in Node's and Deno's REPLs.
function mentionsAwait(code) {
  // /\bawait\b/ without a regular expression: the first one a process runs
  // costs ~0.08 ms.
  const word = (at) => {
    const c = code.charCodeAt(at); // [A-Za-z0-9_], NaN past either end
    return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
  };
  for (let at = code.indexOf("await"); at !== -1; at = code.indexOf("await", at + 1)) {
    if ((at === 0 || !word(at - 1)) && !word(at + 5)) return true;
  }
  return false;
}
const NEEDS_ASYNC = /await is only valid in async functions|Cannot use import statement/;

// State an execution could leave behind for a later one lives in DENO_DIR;
// the supervisor gives the child none, and these globals would only throw.
for (const name of ["localStorage", "sessionStorage", "caches"]) delete globalThis[name];

let finished = false;
let settled = false;
let snapshotting = false;
let result = null;
const lostOnRestore = [];

function finish(done, blob) {
  if (finished) return;
  finished = true;
  try {
    send(done, blob);
  } finally {
    Deno.exit(0);
  }
}

function fail(thrown) {
  finish({ type: "done", ok: false, error: describeError(thrown, USER_URL) });
}

function onSettled(value) {
  settled = true;
  result = renderResult(value);
}

addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  fail(event.reason);
});
addEventListener("error", (event) => {
  event.preventDefault();
  fail(event.error);
});
/**
 * Nothing is left to run (timers, promises and I/O have all settled): report
 * the result, or take the snapshot first. Returns whether the process must
 * stay alive.
 */
function onIdle() {
  if (finished) return false;
  if (settled && !frame.stateful) {
    finish({ type: "done", ok: true, result });
    return false;
  }
  if (settled) {
    if (snapshotting) return true;
    snapshotting = true;
    snapshots().takeSnapshot(
      frame.code,
      (names) => repl().capturingFunctions(names),
      (names) => modules().importedGlobals(names),
    ).then(({ bytes, lost }) => {
      lost.push(...lostOnRestore);
      finish({ type: "done", ok: true, result, snapshot: true, lost }, bytes);
    }, fail);
    return true;
  }
  // A completion value that can never settle: wait to be timed out, as the
  // supervisor's deadline, not this process, decides when an execution ends.
  // (A core timer: the user's code may have replaced the global functions.)
  core.createTimer(() => {}, 2 ** 30, undefined, true, true);
  return true;
}

// Fired when the event loop has run dry.
addEventListener("beforeunload", (event) => {
  if (onIdle()) event.preventDefault();
});

/**
 * A cell that is not over once its microtasks have run is checked again after
 * the event loop's first turn, in an "immediate" (run once the microtasks
 * have drained), instead of waiting for the loop to run dry, which costs Deno
 * ~0.3 ms more. Code that goes on starts the reading of the channel, whose
 * EOF ends this process if the supervisor dies.
 */
function afterFirstTurn() {
  if (settled && !core.eventLoopHasMoreWork()) onIdle();
  if (!finished) watchChannel();
}

/** Run `fn` in the event loop's next immediate phase (as Node's setImmediate). */
function queueImmediate(fn) {
  core.immediateRefCount(true);
  core.queueImmediate({
    _idleNext: null,
    _idlePrev: null,
    _destroyed: false,
    [core.kRefed]: true,
    _onImmediate: fn,
  });
}

async function nextFrame() {
  try {
    return await reader.next();
  } catch {
    Deno.exit(70); // the supervisor went away before sending work
  }
}

// Console calls and raw writes to stdout/stderr become output frames (never
// the channel), through a console made on first use. The output budget
// starts with the first frame: a preloaded child's counts what its modules
// printed.
let outputLimit = Infinity;
let capture = null;
function output() {
  capture ??= consoles().makeConsole(
    (stream, text) => send({ type: "output", stream, text }),
    outputLimit,
  );
  return capture;
}

// Everything that does not depend on the run is set up before this child
// reads its work, while it waits in the pool: not on an execution's time.
lazyGlobal("console", () => output().console);
for (const [target, stream] of [[Deno.stdout, "log"], [Deno.stderr, "error"]]) {
  let text = null;
  target.writeSync = (bytes) => {
    text ??= new TextDecoder();
    output().write(stream, text.decode(bytes));
    return bytes.byteLength;
  };
  target.write = (bytes) => Promise.resolve(target.writeSync(bytes));
}
for (const name of ["setTimeout", "setInterval", "clearTimeout", "clearInterval"]) {
  lazyGlobal(name, () => timers().timerGlobals[name], true);
}
// Deno's own fetch would only fail without permissions; `fs` is the sandbox's.
lazyGlobal("fetch", () => capabilities().brokeredFetch);
lazyGlobal("fs", () => capabilities().brokeredFs);
// `__mcpi`: what the supervisor's helper turned each `import(` of a cell into.
Object.defineProperty(globalThis, "__mcpi", {
  value: (specifier) => modules().loadModule(specifier),
});

// Rarely taken paths are functions, which V8 only preparses until they are
// called: top-level statements are compiled with the script, by every child.

/** Evaluate a Preload frame's modules and connect the inspector; returns the Run that follows. */
async function preload(frame, blob) {
  try {
    if (frame.modules.length) {
      await modules().preloadModules(frame.modules, blob ?? new Uint8Array());
    }
    if (frame.repl) await repl().connectInspector();
  } catch (error) {
    send({ type: "preloaded", ok: false, error: describeError(error, USER_URL) });
    Deno.exit(0);
  }
  send({ type: "preloaded", ok: true });
  return await nextFrame();
}

/**
 * Preloaded WebAssembly, at the end of the frame's blob: a global per module,
 * compiled (and instantiated) on first use only. Returns the rest of the blob.
 */
function defineWasmGlobals(wasm, blob) {
  const total = wasm.reduce((sum, m) => sum + m.size, 0);
  let offset = blob.byteLength - total;
  const rest = blob.subarray(0, offset);
  for (const module of wasm) {
    const bytes = blob.subarray(offset, offset + module.size);
    offset += module.size;
    let compiled = null;
    let instance = null;
    const compile = () => (compiled ??= new WebAssembly.Module(bytes));
    Object.defineProperty(globalThis, `__wasm_${module.name}`, { get: compile, configurable: true });
    if (module.instantiate) {
      Object.defineProperty(globalThis, module.name, {
        get: () => (instance ??= new WebAssembly.Instance(compile())).exports,
        configurable: true,
      });
    }
  }
  return rest;
}

let frame;
let restoreBlob;
try {
  // Blocking: this child has nothing else to do until its work arrives. It
  // announces itself only when asked (the server's start-up check).
  ({ frame, blob: restoreBlob } = reader.nextBlocking());
  if (frame.type === "hello") {
    send({ type: "ready", protocol: PROTOCOL_VERSION, deno: Deno.version.deno, v8: Deno.version.v8 });
    ({ frame, blob: restoreBlob } = reader.nextBlocking());
  }
} catch {
  Deno.exit(70); // the supervisor went away before sending work
}
outputLimit = frame.output_limit_bytes;
// A child set aside for executions that import exactly these modules
// evaluates them first, and connects the inspector if they have top-level
// await; its Run comes later (or never: then it is discarded).
if (frame.type === "preload") ({ frame, blob: restoreBlob } = await preload(frame, restoreBlob));
if (frame.type !== "run" || frame.protocol !== PROTOCOL_VERSION) {
  fail(new Error(`sandbox expected a run frame of protocol ${PROTOCOL_VERSION}`));
}

/** Start evaluating the cell; returns a Promise of its completion value, or null if it already failed. */
function evaluate(code) {
  if (mentionsAwait(code)) return repl().replEvaluate(code);
  const [value, error] = core.evalContext(code, USER_URL);
  if (!error) return Promise.resolve(value);
  if (!error.isCompileError) {
    fail(error.thrown);
    return null;
  }
  if (NEEDS_ASYNC.test(String(error.thrown?.message))) return repl().replEvaluate(code);
  return repl().locateSyntaxError(code, error.thrown).then((located) => Promise.reject(located));
}

if (frame.wasm?.length) {
  restoreBlob = defineWasmGlobals(frame.wasm, restoreBlob ?? new Uint8Array());
}

// The baseline of globals is taken after the runner's own changes (console)
// and before any user state: whatever differs from it at the end is the user's.
if (frame.stateful) snapshots().recordBaseline();

/** Imports a restored snapshot kept, then the cell's own static imports, then the cell. */
async function importThenEvaluate(restoredImports) {
  lostOnRestore.push(...(await modules().restoreImports(restoredImports)));
  await modules().bindImports(frame.imports ?? []);
  return evaluate(frame.code);
}

let completion = null;
try {
  let restoredImports = [];
  if (frame.restore) {
    const restored = snapshots().restoreSnapshot(restoreBlob ?? new Uint8Array());
    lostOnRestore.push(...restored.lost);
    restoredImports = restored.imports;
  }
  // Most cells import nothing: they start synchronously, as before.
  completion = restoredImports.length || frame.imports?.length
    ? importThenEvaluate(restoredImports)
    : evaluate(frame.code);
} catch (error) {
  fail(error);
}
completion?.then(onSettled, fail);
// Most cells are over once the microtasks they queued have run (promise
// chains included): then the result goes out now, before Deno's load event
// and the loop's first turn (~0.25 ms of CPU). Anything still pending (a
// timer, I/O, a rejected promise not yet reported: `eventLoopHasMoreWork`
// counts those) waits for that turn. (After an `await` above, this code runs
// in a microtask, where `runMicrotasks` does nothing and the cell cannot have
// settled yet.)
core.runMicrotasks();
if (settled && !core.eventLoopHasMoreWork()) onIdle();
if (!finished) queueImmediate(afterFirstTurn);
