// Turning completion values and thrown values into what the supervisor stores.
const { inspect } = Deno;

// Node-style single quotes, as users of Node's REPL expect.
export const INSPECT_OPTIONS = Object.freeze({ quotes: ["'", '"', "`"], depth: 4 });

function isPlain(value) {
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * The `result` of an execution: null for undefined, strings as they are,
 * primitives as String(v), plain objects and arrays as JSON, anything else
 * (functions, Map, class instances, cycles, symbols) as a Node-style inspection.
 */
export function renderResult(value) {
  switch (typeof value) {
    case "undefined":
      return null;
    case "string":
      return value.toWellFormed();
    case "number":
    case "boolean":
      return String(value);
    case "object":
      if (value === null) return "null";
      if (isPlain(value)) {
        try {
          const json = JSON.stringify(value);
          if (json !== undefined) return json.toWellFormed();
        } catch {
          // cycles, BigInt, throwing toJSON: fall through to inspection
        }
      }
      return inspect(value, INSPECT_OPTIONS).toWellFormed();
    default:
      return inspect(value, INSPECT_OPTIONS).toWellFormed();
  }
}

export const USER_URL = "file:///code.js";
// Frames of the sandbox's own code: the runner and its lazily loaded modules
// (evaluated as file:///mcp-v8-*.js), the bootstrap file (whose real path
// would tell the user where the server is installed), and Deno's.
const OWN_FRAME = /file:\/\/\/mcp-v8-|\/sandbox_host\/bootstrap\.js:|ext:|node:/;

/** Drop the sandbox's and Deno's own frames, keeping the user's (with their line numbers). */
export function cleanStack(stack, userUrl = USER_URL) {
  if (typeof stack !== "string") return null;
  const kept = stack.split("\n").filter(
    (line) => !/^\s+at /.test(line) || line.includes(userUrl) || !OWN_FRAME.test(line),
  );
  return kept.join("\n").toWellFormed();
}

/** Describe a thrown value (an Error or anything else) as an ErrorInfo frame part. */
export function describeError(thrown, userUrl) {
  if (thrown instanceof Error || (thrown && typeof thrown === "object" && "message" in thrown)) {
    let name = "Error";
    let message = "";
    let stack = null;
    try {
      name = String(thrown.name ?? "Error");
      message = String(thrown.message ?? "");
      stack = cleanStack(thrown.stack, userUrl);
    } catch {
      message = inspect(thrown, INSPECT_OPTIONS);
    }
    return { name: name.toWellFormed(), message: message.toWellFormed(), stack };
  }
  return { name: "Uncaught", message: renderResult(thrown) ?? "undefined", stack: null };
}
