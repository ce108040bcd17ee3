// Code a child compiles only when a run needs it. Parsing is a large part of
// a child's start-up (~0.03 ms per KB of script here), so modules most runs
// never call (snapshots, capabilities, module loading, even the console) are
// not part of the runner script: they arrive beside it, as text, and are
// compiled on first use.
//
// `LAZY_SOURCES` is the parameter of the function the joined runner is
// wrapped in, and `LAZY_IMPORTS` the table that script starts with (see
// supervisor/sandbox/script.py): JSON text mapping a module's file name to a
// function expression, and the same names to a function returning the
// imports that function takes.
const lazyCore = Deno[Deno.internal].core;
let lazyTable = null;
const lazyExports = new Map();

/** A function returning the exports of sandbox_host module `name`, compiling it on first call. */
export function lazyModule(name) {
  return () => {
    let exports = lazyExports.get(name);
    if (exports === undefined) {
      lazyTable ??= JSON.parse(LAZY_SOURCES);
      const [factory, error] = lazyCore.evalContext(lazyTable[name], `file:///mcp-v8-${name}`);
      if (error) throw error.thrown;
      exports = factory(LAZY_IMPORTS[name]());
      lazyExports.set(name, exports);
    }
    return exports;
  };
}

/**
 * Define global `name` as the value `make()` returns, made on first access,
 * as Deno defines many of its own globals. The accessor stays (so a snapshot
 * sees it unchanged); assigning to the global replaces it with that value.
 */
export function lazyGlobal(name, make, enumerable = false) {
  let value;
  let made = false;
  Object.defineProperty(globalThis, name, {
    get() {
      if (!made) {
        value = make();
        made = true;
      }
      return value;
    },
    set(replacement) {
      Object.defineProperty(globalThis, name, {
        value: replacement,
        writable: true,
        enumerable,
        configurable: true,
      });
    },
    enumerable,
    configurable: true,
  });
}
