// Modules a child compiles only when a run needs them. Parsing is a large
// part of a child's start-up (~0.03 ms per KB of script here), so code most
// runs never call (taking and restoring snapshots) is not part of the runner
// script: it arrives beside it, as text, and is compiled on first use.
//
// `LAZY_SOURCES` is the parameter of the function the joined runner is
// wrapped in (see supervisor/sandbox/script.py): JSON text mapping a module's
// file name to a script whose completion value is that module's exports.
const lazyCore = Deno[Deno.internal].core;
let lazyTable = null;
const lazyExports = new Map();

/** A function returning the exports of sandbox_host module `name`, compiling it on first call. */
export function lazyModule(name) {
  return () => {
    let exports = lazyExports.get(name);
    if (exports === undefined) {
      lazyTable ??= JSON.parse(LAZY_SOURCES);
      const [value, error] = lazyCore.evalContext(lazyTable[name], `file:///mcp-v8-${name}`);
      if (error) throw error.thrown;
      exports = value;
      lazyExports.set(name, exports);
    }
    return exports;
  };
}
