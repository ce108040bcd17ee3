// The TypeScript type-stripping helper: a long-lived, trusted Deno program.
//
// It never runs user code: it only turns TypeScript text into JavaScript text
// with amaro (swc compiled to wasm), kept loaded so no execution pays the
// ~60 ms it takes to load. It runs with no --allow-* flag at all: npm: module
// loading and stdin/stdout need none (see supervisor/typescript.py).
//
// It also reads import statements with es-module-lexer, for the supervisor's
// module loading: which modules a cell imports (and the cell without those
// statements), and which modules a downloaded module needs.
//
// Wire: newline-delimited JSON. The first line out is
//   {"ready": true, "amaro": "<version>"}
// then, for every request line, one line with the same id:
//   {"id": n, "code": "..."}                     a cell: types stripped
//     -> {"id": n, "code": "..."}
//   {"id": n, "code": "...", "imports": true}    a cell, imports taken out too
//     -> {"id": n, "code": "...", "imports": [{specifier, default, namespace, named}]}
//   {"id": n, "op": "module", "code": "...", "url": "...", "typescript": bool}
//     -> {"id": n, "code": "...", "dependencies": ["<absolute specifier>", ...]}
// or, for any of them,
//   {"id": n, "error": {"kind": "unsupported" | "syntax" | "import" | "internal",
//                       "message": "...", "line": L, "column": C,
//                       "construct": "enum"}}
// Lines are 1-based; columns are 1-based UTF-16 units, as in V8 stack traces.
// Replies come in request order, but callers should match them by id.
//
// Strip-only mode replaces types with whitespace, so every line and column of
// the output is where it was in the input. Constructs that need code generated
// (enum, namespace) are transformed one declaration at a time and spliced back
// on the lines they came from; other constructs that need transformation
// (parameter properties, `import x = require()`, ...) are refused, naming the
// construct and its line, because transforming the whole cell would move lines.

// Keep in step with the versions and the lock in supervisor/typescript.py.
import { transformSync } from "npm:amaro@1.2.1";
import { init as lexerReady, parse as lexImports } from "npm:es-module-lexer@3.0.5";

const AMARO_VERSION = "1.2.1";
const STRIP = { mode: "strip-only", sourceMap: false };
const TRANSFORM = { mode: "transform", sourceMap: false };
// Constructs whose declarations can be transformed on their own.
const SPLICEABLE = new Map([
  ["enum", /^(?:const\s+)?enum\b/],
  ["namespace declaration", /^(?:namespace|module)\b/],
]);
const MAX_SPLICES = 64;
const HINTS = new Map([
  ["parameter property", "declare the field in the class body and assign it in the constructor"],
  ["import equals declaration", "use an import statement"],
  ["export assignment", "use export default"],
]);
const AsyncFunction = (async () => {}).constructor;

/** amaro reports swc errors as plain objects with a code; anything else is a bug. */
function swcFailure(error) {
  if (error === null || typeof error !== "object" || typeof error.code !== "string") {
    throw error;
  }
  return error;
}

/** Start offset of every line, split as swc splits them (\r\n, \r or \n). */
function lineStarts(text) {
  const starts = [0];
  const breaks = /\r\n|\r|\n/g;
  let match;
  while ((match = breaks.exec(text)) !== null) starts.push(match.index + match[0].length);
  return starts;
}

/**
 * The UTF-16 offset in `text` of swc's (1-based line, column), or -1.
 *
 * swc counts columns as UTF-8 bytes less one per non-ASCII character (2 for
 * "中", 3 for an emoji), measured on amaro 1.2.1; walk the line to invert that.
 */
function offsetOf(text, starts, line, column) {
  if (line < 1 || line > starts.length) return -1;
  let offset = starts[line - 1];
  let width = 0;
  while (width < column && offset < text.length) {
    const point = text.codePointAt(offset);
    if (point === 0x0a || point === 0x0d) return -1;
    width += point < 0x80 ? 1 : point < 0x800 ? 1 : point < 0x10000 ? 2 : 3;
    offset += point > 0xffff ? 2 : 1;
  }
  return width === column ? offset : -1;
}

/** A 1-based UTF-16 column for a person, from swc's column (best effort). */
function userColumn(text, starts, line, column) {
  const offset = offsetOf(text, starts, line, column);
  if (offset < 0) return column + 1;
  return offset - starts[line - 1] + 1;
}

/** "TypeScript enum is not supported in strip-only mode" -> "enum". */
function constructOf(message) {
  const match = /^TypeScript (.+?) is not supported in strip-only mode/.exec(message);
  return match ? match[1] : null;
}

/**
 * Transform the failing declaration alone and put the result where it was,
 * keeping every line break of the original span (so later lines do not move)
 * and padding the last line so code after the declaration keeps its column.
 * Returns the new text, or null when the span cannot be handled this way.
 */
function splice(text, failure, pattern) {
  const starts = lineStarts(text);
  let start = offsetOf(text, starts, failure.startLine, failure.startColumn);
  const end = offsetOf(text, starts, failure.endLine, failure.endColumn);
  if (start < 0 || end <= start || text[end - 1] !== "}") return null;
  if (!pattern.test(text.slice(start, end))) return null;
  // `export enum E {}` is reported from `enum`; transform it with its export.
  const exported = /(?:^|[^\w$])(export\s+)$/.exec(text.slice(Math.max(0, start - 64), start));
  if (exported) start -= exported[1].length;
  let generated;
  try {
    generated = transformSync(text.slice(start, end), TRANSFORM).code;
  } catch (error) {
    swcFailure(error);
    return null;
  }
  // swc's output keeps no comments and ends every statement with a semicolon,
  // so it may be joined on one line, unless a template literal spans lines.
  if (generated.includes("`")) return null;
  // An empty statement first, so a previous line without a semicolon cannot
  // run into the `(` a namespace's code starts with.
  let replacement = `;${generated.trim().replace(/\s*(?:\r\n|\r|\n)\s*/g, " ")}`;
  const span = text.slice(start, end);
  const breaks = span.match(/\r\n|\r|\n/g) ?? [];
  if (breaks.length === 0) {
    replacement = replacement.padEnd(span.length);
  } else {
    const lastLineStart = starts[failure.endLine - 1];
    replacement += breaks.join("") + " ".repeat(end - lastLineStart);
  }
  return text.slice(0, start) + replacement + text.slice(end);
}

/** Whether V8 accepts the text as sloppy-mode JavaScript; compiled, never called. */
function isJavaScript(text) {
  try {
    new AsyncFunction(text);
    return true;
  } catch {
    return false;
  }
}

function failureReply(kind, text, failure, construct) {
  const starts = lineStarts(text);
  const error = {
    kind,
    message: failure.message,
    line: failure.startLine,
    column: userColumn(text, starts, failure.startLine, failure.startColumn),
  };
  if (construct !== null) {
    error.construct = construct;
    const hint = HINTS.get(construct);
    if (hint !== undefined) error.hint = hint;
  }
  return { error };
}

/** Strip one cell: {code} or {error}. */
function strip(source) {
  let text = source;
  for (let splices = 0; ; splices++) {
    let failure;
    try {
      return { code: transformSync(text, STRIP).code };
    } catch (error) {
      failure = swcFailure(error);
    }
    if (failure.code === "UnsupportedSyntax") {
      const construct = constructOf(failure.message);
      const pattern = SPLICEABLE.get(construct);
      if (pattern !== undefined && splices < MAX_SPLICES) {
        const spliced = splice(text, failure, pattern);
        if (spliced !== null) {
          text = spliced;
          continue;
        }
      }
      return failureReply("unsupported", text, failure, construct);
    }
    // TypeScript's grammar is stricter than sloppy JavaScript (`with`, legacy
    // octal literals): plain JavaScript that V8 accepts passes unchanged.
    if (isJavaScript(source)) return { code: source };
    return failureReply("syntax", text, failure, null);
  }
}

// ---- imports ---------------------------------------------------------------
//
// A cell is a script, where `import` statements are not allowed: each static
// import is taken out (blanked, keeping lines and columns) and described, so
// the sandbox can load the module and bind its names before the cell runs;
// each `import(` becomes `__mcpi(` (same width), the sandbox's brokered loader.

const DYNAMIC_LOADER = "__mcpi";
const IDENTIFIER = /^[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*$/u;

/** Every character but line breaks replaced by a space. */
function blank(text) {
  return text.replace(/[^\r\n\u2028\u2029]/g, " ");
}

function withoutComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\r\n]*/g, " ");
}

class ClauseError extends Error {}

function localName(name, statement) {
  if (!IDENTIFIER.test(name)) throw new ClauseError(`cannot read the import clause of: ${statement}`);
  return name;
}

/** The bindings of one `import ... from` clause: default, namespace and named imports. */
function importClause(clause, statement) {
  const decl = { default: null, namespace: null, named: [] };
  let rest = withoutComments(clause).trim();
  if (rest === "") return decl;
  const braces = /\{([\s\S]*)\}/.exec(rest);
  if (braces) {
    for (const part of braces[1].split(",")) {
      const item = part.trim();
      if (item === "") continue;
      const match = /^(?:("[^"]*"|'[^']*'|[^\s]+)\s+as\s+)?([^\s]+)$/.exec(item);
      if (!match) throw new ClauseError(`cannot read the import clause of: ${statement}`);
      const imported = match[1] === undefined ? match[2] : match[1].replace(/^["']|["']$/g, "");
      decl.named.push([imported, localName(match[2], statement)]);
    }
    rest = rest.replace(braces[0], "");
  }
  for (const part of rest.split(",")) {
    const item = part.trim();
    if (item === "") continue;
    const namespace = /^\*\s*as\s+([^\s]+)$/.exec(item);
    if (namespace) decl.namespace = localName(namespace[1], statement);
    else decl.default = localName(item, statement);
  }
  return decl;
}

/** A cell's static imports described and blanked, dynamic ones sent to the loader. */
function cellImports(code) {
  if (!code.includes("import")) return { code, imports: [] };
  let found;
  try {
    [found] = lexImports(code);
  } catch {
    return { code, imports: [] }; // not parseable: V8 will say where
  }
  const imports = [];
  let out = "";
  let from = 0;
  for (const item of found) {
    if (item.type === "static") {
      const statement = code.slice(item.importStart, item.importEnd);
      if (item.typeOnly) {
        out += code.slice(from, item.importStart) + blank(statement);
        from = item.importEnd;
        continue;
      }
      const head = code.slice(item.importStart + "import".length, item.start - 1);
      const clause = head.replace(/\bfrom\s*$/, "");
      imports.push({ specifier: item.specifier, ...importClause(clause, statement) });
      out += code.slice(from, item.importStart) + blank(statement);
      from = item.importEnd;
    } else if (item.type === "dynamic") {
      out += code.slice(from, item.importStart) + DYNAMIC_LOADER;
      from = item.importStart + "import".length;
    }
  }
  return { code: out + code.slice(from), imports };
}

/** Whether a specifier is relative to the module it appears in. */
function isRelative(specifier) {
  return /^(?:\.{1,2}\/|\/)/.test(specifier);
}

/**
 * A remote module prepared for bundling: types stripped, every relative
 * specifier made absolute against the module's URL, and the list of the
 * modules it needs (static imports, re-exports and literal dynamic imports).
 */
function remoteModule(source, url, typescript) {
  let code = source;
  if (typescript) {
    const stripped = strip(source);
    if (stripped.error) return stripped;
    code = stripped.code;
  }
  let found;
  try {
    [found] = lexImports(code);
  } catch (error) {
    return { error: { kind: "import", message: `${url} does not parse: ${error.message}` } };
  }
  const dependencies = [];
  let out = "";
  let from = 0;
  for (const item of found) {
    // import.meta, and import(expression), are left alone.
    if (item.type === "import-meta" || typeof item.specifier !== "string") continue;
    if (item.typeOnly) continue;
    let target = item.specifier;
    if (isRelative(target)) target = new URL(target, url).href;
    if (!dependencies.includes(target)) dependencies.push(target);
    if (target === item.specifier) continue;
    const text = item.type === "dynamic" ? JSON.stringify(target) : target;
    out += code.slice(from, item.start) + text;
    from = item.end;
  }
  return { code: out + code.slice(from), dependencies };
}

function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return { id: null, error: { kind: "internal", message: "request is not JSON" } };
  }
  const id = request?.id ?? null;
  if (typeof request?.code !== "string") {
    return { id, error: { kind: "internal", message: "request has no code string" } };
  }
  try {
    if (request.op === "module") {
      if (typeof request.url !== "string") {
        return { id, error: { kind: "internal", message: "request has no url string" } };
      }
      return { id, ...remoteModule(request.code, request.url, request.typescript === true) };
    }
    const stripped = strip(request.code);
    if (stripped.error || request.imports !== true) return { id, ...stripped };
    return { id, ...cellImports(stripped.code) };
  } catch (error) {
    if (error instanceof ClauseError) return { id, error: { kind: "import", message: error.message } };
    return { id, error: { kind: "internal", message: String(error?.message ?? error) } };
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Plain reads and writes of the standard streams, not their web streams: a
// request through ReadableStream and WritableStream cost ~0.1-0.2 ms more here.
function send(lines) {
  const bytes = encoder.encode(lines.join(""));
  for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
}

async function serve() {
  await lexerReady;
  send([`${JSON.stringify({ ready: true, amaro: AMARO_VERSION })}\n`]);
  // Chunks of a line not yet complete; joined once, when its newline arrives.
  let pending = [];
  const buffer = new Uint8Array(65536);
  for (;;) {
    const got = await Deno.stdin.read(buffer);
    if (got === null) break;
    const chunk = buffer.subarray(0, got);
    const out = [];
    let from = 0;
    let newline = chunk.indexOf(0x0a);
    while (newline !== -1) {
      pending.push(chunk.subarray(from, newline));
      const bytes = pending.length === 1 ? pending[0] : concat(pending);
      pending = [];
      const line = decoder.decode(bytes);
      if (line.trim() !== "") out.push(`${JSON.stringify(handle(line))}\n`);
      from = newline + 1;
      newline = chunk.indexOf(0x0a, from);
    }
    if (from < chunk.length) pending.push(chunk.slice(from));
    if (out.length > 0) send(out);
  }
}

function concat(parts) {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

await serve();
