// External modules (npm:, jsr:, URLs) in a sandbox with no network and no npm.
//
// Every load is an `import` capability call: the supervisor decides it with
// its policies, resolves, downloads and bundles the module host-side, and
// answers with one self-contained bundle, which is evaluated here. A CommonJS
// bundle runs as a plain script (Deno's module loader would parse it once
// more first, ~3x slower); an ES module bundle is imported from a blob: URL.
//
// A cell's static imports arrive taken out of its code (the supervisor's
// helper blanks them) and are bound as globals before the cell runs; its
// `import(...)` calls arrive as `__mcpi(...)`. Both load through here.
import { call } from "./calls.js";

const moduleCore = Deno[Deno.internal].core;
const moduleText = new TextDecoder();
// specifier -> Promise of the module's namespace: one load per run.
const namespaces = new Map();
// global name -> { specifier, name, value } for names a static import bound
const importBindings = new Map();

/** A namespace object for a CommonJS bundle's exports (`default` is module.exports itself). */
function commonJsNamespace(exports) {
  if (exports !== null && typeof exports === "object" && exports.__esModule) return exports;
  const namespace = Object.create(null);
  if (exports !== null && (typeof exports === "object" || typeof exports === "function")) {
    for (const key of Object.keys(exports)) namespace[key] = exports[key];
  }
  namespace.default = exports;
  return Object.freeze(namespace);
}

async function evaluateBundle(specifier, format, source) {
  if (format === "cjs") {
    // `0, function` and not `(function`: a parenthesized function is compiled
    // eagerly, before it is called (~3 ms more for lodash).
    const [factory, error] = moduleCore.evalContext(
      `0, function (module, exports) {${source}\n}`,
      specifier,
    );
    if (error) throw error.thrown;
    const module = { exports: {} };
    factory(module, module.exports);
    return commonJsNamespace(module.exports);
  }
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return await import(url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function fetchModule(specifier) {
  const { value, blob } = await call("import", { specifier });
  return evaluateBundle(specifier, value.format, moduleText.decode(blob ?? new Uint8Array()));
}

/** Evaluate bundles handed over ahead of the run (`Preload`): later imports find them loaded. */
export async function preloadModules(modules, blob) {
  let offset = 0;
  for (const { specifier, format, size } of modules) {
    const source = moduleText.decode(blob.subarray(offset, offset + size));
    offset += size;
    namespaces.set(specifier, Promise.resolve(await evaluateBundle(specifier, format, source)));
  }
}

/** `import(specifier)` for user code: node: built-ins natively, anything else brokered. */
export function loadModule(specifier) {
  const key = String(specifier);
  // Built-ins need no permission to load (and get none to act).
  if (key.startsWith("node:")) return import(key);
  let pending = namespaces.get(key);
  if (pending === undefined) {
    pending = fetchModule(key);
    namespaces.set(key, pending);
    pending.catch(() => namespaces.delete(key));
  }
  // A promise of the caller's own: the cleanup above handles the shared one,
  // and a failed import nobody awaits must still be an unhandled rejection.
  return pending.then((namespace) => namespace);
}

function bindImport(local, specifier, name, namespace) {
  let value = namespace;
  if (name !== "*") {
    if (!(name in namespace)) {
      throw new SyntaxError(`The requested module '${specifier}' does not provide an export named '${name}'`);
    }
    value = namespace[name];
  }
  Object.defineProperty(globalThis, local, { value, writable: true, enumerable: true, configurable: true });
  importBindings.set(local, { specifier, name, value });
}

/** Load a cell's static imports in order and bind their names as globals. */
export async function bindImports(imports) {
  for (const decl of imports) {
    const namespace = await loadModule(decl.specifier);
    if (decl.default !== null && decl.default !== undefined) {
      bindImport(decl.default, decl.specifier, "default", namespace);
    }
    if (decl.namespace !== null && decl.namespace !== undefined) {
      bindImport(decl.namespace, decl.specifier, "*", namespace);
    }
    for (const { imported, local } of decl.named ?? []) {
      bindImport(local, decl.specifier, imported, namespace);
    }
  }
}

/**
 * Globals whose value is still what an import gave them (a namespace, or one
 * of its exports, bound statically or taken from `await import()`), as
 * {name, specifier, export}: a snapshot keeps these as imports to redo.
 */
export async function importedGlobals(names) {
  const origin = new Map();
  for (const [specifier, pending] of namespaces) {
    let namespace;
    try {
      namespace = await pending;
    } catch {
      continue;
    }
    if (!origin.has(namespace)) origin.set(namespace, [specifier, "*"]);
    for (const key of Object.keys(namespace)) {
      const value = namespace[key];
      const isObject = value !== null && (typeof value === "object" || typeof value === "function");
      if (isObject && !origin.has(value)) origin.set(value, [specifier, key]);
    }
  }
  const found = [];
  for (const [name, value] of names) {
    const bound = importBindings.get(name);
    const from = bound !== undefined && Object.is(bound.value, value)
      ? [bound.specifier, bound.name]
      : origin.get(value);
    if (from !== undefined) found.push({ name, specifier: from[0], export: from[1] });
  }
  return found;
}

/** Bind names a snapshot kept as imports; returns those that could not be loaded again. */
export async function restoreImports(imported) {
  const lost = [];
  for (const { name, specifier, export: exported } of imported) {
    try {
      bindImport(name, specifier, exported, await loadModule(specifier));
    } catch (error) {
      lost.push({ name, reason: `could not import ${specifier} again: ${error?.message ?? error}` });
    }
  }
  return lost;
}

