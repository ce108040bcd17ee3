// The TypeScript type-stripping helper: a long-lived, trusted Deno program.
//
// It never runs user code: it only turns TypeScript text into JavaScript text
// with amaro (swc compiled to wasm), kept loaded so no execution pays the
// ~60 ms it takes to load. It runs with no --allow-* flag at all: npm: module
// loading and stdin/stdout need none (see supervisor/typescript.py).
//
// Wire: newline-delimited JSON. The first line out is
//   {"ready": true, "amaro": "<version>"}
// then, for every request line {"id": n, "code": "..."}, one line
//   {"id": n, "code": "..."}                                    or
//   {"id": n, "error": {"kind": "unsupported" | "syntax" | "internal",
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

// Keep in step with AMARO_VERSION and the lock in supervisor/typescript.py.
import { transformSync } from "npm:amaro@1.2.1";

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
    return { id, ...strip(request.code) };
  } catch (error) {
    return { id, error: { kind: "internal", message: String(error?.message ?? error) } };
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const writer = Deno.stdout.writable.getWriter();

async function send(lines) {
  await writer.write(encoder.encode(lines.join("")));
}

async function serve() {
  await send([`${JSON.stringify({ ready: true, amaro: AMARO_VERSION })}\n`]);
  // Chunks of a line not yet complete; joined once, when its newline arrives.
  let pending = [];
  for await (const chunk of Deno.stdin.readable) {
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
    if (out.length > 0) await send(out);
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
