// A console that captures every call as output frames instead of printing.
import { cleanStack, INSPECT_OPTIONS } from "./render.js";

const { inspectArgs, Console } = Deno[Deno.internal];


// Long texts are cut into frames of at most this many UTF-16 units, which
// bounds every output frame well below the supervisor's frame limit.
const CHUNK_CHARS = 256 * 1024;

/**
 * Build a console whose output goes to `emit(stream, text)`, stream being
 * "log", "warn" or "error". At most `limit` characters are emitted in total:
 * the supervisor enforces the byte cap itself, this only stops a flood early.
 * Returns the console and the raw `write(stream, text)` it is built on.
 */
export function makeConsole(emit, limit) {
  let budget = limit;
  let indent = "";
  const counts = new Map();
  const timers = new Map();

  const write = (stream, text) => {
    // One character past the limit is still sent, so the supervisor sees the overflow.
    if (budget < 0) return;
    if (indent) text = text.replace(/^(?=.)/gm, indent);
    if (!text.endsWith("\n")) text += "\n";
    if (text.length > budget + 1) text = text.slice(0, budget + 1);
    budget -= text.length;
    for (let i = 0; i < text.length;) {
      let end = Math.min(i + CHUNK_CHARS, text.length);
      const last = text.charCodeAt(end - 1);
      if (end < text.length && last >= 0xd800 && last <= 0xdbff) end -= 1; // keep pairs whole
      emit(stream, text.slice(i, end).toWellFormed());
      i = end;
    }
  };
  const format = (args) => inspectArgs(args, INSPECT_OPTIONS);
  const log = (...args) => write("log", format(args));
  const warn = (...args) => write("warn", format(args));
  const error = (...args) => write("error", format(args));
  // Deno's own console renders tables; its output is routed through `write`.
  const tables = new Console((msg, level) => write(level >= 2 ? "error" : "log", msg));

  const methods = {
    log,
    info: log,
    debug: log,
    warn,
    error,
    trace: (...args) => {
      const frames = (cleanStack(new Error().stack) ?? "").split("\n").slice(1).join("\n");
      write("error", `Trace${args.length ? ": " + format(args) : ""}\n${frames}`);
    },
    dir: (value, options) => write("log", Deno.inspect(value, { ...INSPECT_OPTIONS, ...options })),
    dirxml: log,
    table: (data, properties) => tables.table(data, properties),
    assert: (condition, ...args) => {
      if (condition) return;
      write("error", `Assertion failed${args.length ? ": " + format(args) : ""}`);
    },
    count: (label = "default") => {
      const n = (counts.get(String(label)) ?? 0) + 1;
      counts.set(String(label), n);
      write("log", `${label}: ${n}`);
    },
    countReset: (label = "default") => counts.delete(String(label)),
    time: (label = "default") => {
      if (timers.has(String(label))) return warn(`Timer '${label}' already exists`);
      timers.set(String(label), performance.now());
    },
    timeLog: (label = "default", ...args) => {
      const start = timers.get(String(label));
      if (start === undefined) return warn(`Timer '${label}' does not exist`);
      const extra = args.length ? " " + format(args) : "";
      write("log", `${label}: ${(performance.now() - start).toFixed(3)}ms${extra}`);
    },
    timeEnd: (label = "default") => {
      const start = timers.get(String(label));
      if (start === undefined) return warn(`Timer '${label}' does not exist`);
      timers.delete(String(label));
      write("log", `${label}: ${(performance.now() - start).toFixed(3)}ms`);
    },
    group: (...args) => {
      if (args.length) log(...args);
      indent += "  ";
    },
    groupEnd: () => {
      indent = indent.slice(2);
    },
    clear: () => {},
  };
  methods.groupCollapsed = methods.group;
  return { console: methods, write };
}
