// Cells that need V8's REPL mode (top-level await) or a located SyntaxError:
// both go through the inspector, which costs ~20 ms to load and is loaded
// only for such cells; this module itself is compiled on first use.
import { USER_URL } from "./render.js";

const replCore = Deno[Deno.internal].core;

let inspector = null;

/**
 * Load and connect the inspector now: a child set aside for a cell with
 * top-level await does it before the cell arrives. (Loading it costs ~20 ms,
 * most of it in the first message a session sends; most cells never need it.)
 */
export async function connectInspector() {
  if (inspector === null) {
    const { Session } = await import("node:inspector");
    inspector = new Session();
    inspector.connect();
    await new Promise((resolve) => inspector.post("Runtime.enable", {}, resolve));
  }
}

async function inspectorPost(method, params) {
  await connectInspector();
  return new Promise((resolve, reject) =>
    inspector.post(method, params, (err, res) => (err ? reject(err) : resolve(res)))
  );
}

/** Bring a value the inspector holds back into this realm. */
async function fromRemote(remote) {
  if (remote.objectId === undefined) {
    if (remote.type === "undefined") return undefined;
    if (remote.unserializableValue !== undefined) {
      const raw = remote.unserializableValue;
      return raw.endsWith("n") ? BigInt(raw.slice(0, -1)) : Number(raw);
    }
    return remote.value;
  }
  const slot = "__mcp_v8_remote__";
  await inspectorPost("Runtime.callFunctionOn", {
    objectId: remote.objectId,
    functionDeclaration: `function () { globalThis.${slot} = this; }`,
  });
  const value = globalThis[slot];
  delete globalThis[slot];
  return value;
}

/** Names of the given global functions that capture state from an enclosing scope. */
export async function capturingFunctions(names) {
  const captured = [];
  for (const name of names) {
    const { result: fn } = await inspectorPost("Runtime.evaluate", { expression: name, silent: true });
    if (!fn?.objectId) continue;
    const { internalProperties = [] } = await inspectorPost("Runtime.getProperties", {
      objectId: fn.objectId,
      ownProperties: false,
    });
    const scopes = internalProperties.find((p) => p.name === "[[Scopes]]")?.value?.objectId;
    if (!scopes) continue;
    const { result: list } = await inspectorPost("Runtime.getProperties", { objectId: scopes, ownProperties: true });
    if (list.some((p) => !/^(Global|Script)\b/.test(p.value?.description ?? ""))) captured.push(name);
  }
  return captured;
}

/** Evaluate a cell that needs top-level await in V8's REPL mode. */
export async function replEvaluate(code) {
  // While the inspector holds the evaluation, the event loop must not reach
  // its end, so a timer keeps it alive until the cell settles. (If the cell
  // awaits a Promise nothing references, V8 may collect it and Deno aborts;
  // the supervisor then ends the execution at its deadline, as any other hang.)
  // (A core timer: the cell may replace the global timer functions.)
  const keepAlive = replCore.createTimer(() => {}, 2 ** 30, undefined, true, true);
  let response;
  try {
    response = await inspectorPost("Runtime.evaluate", {
      expression: `${code}\n//# sourceURL=${USER_URL}`,
      replMode: true,
      awaitPromise: true,
    });
  } finally {
    replCore.cancelTimer(keepAlive);
  }
  if (response.exceptionDetails) {
    const details = response.exceptionDetails;
    const thrown = await fromRemote(details.exception);
    if (thrown instanceof SyntaxError) throw located(thrown, details);
    // REPL-mode scripts are anonymous; point their frames at the user's code.
    if (thrown instanceof Error && typeof thrown.stack === "string") {
      thrown.stack = thrown.stack.replace(/<anonymous>:(\d+:\d+)/g, `${USER_URL}:$1`);
    }
    throw thrown;
  }
  return await fromRemote(response.result);
}

/** A SyntaxError from evalContext has no position; ask the compiler where it is. */
export async function locateSyntaxError(code, thrown) {
  const response = await inspectorPost("Runtime.compileScript", {
    expression: code,
    sourceURL: USER_URL,
    persistScript: false,
  });
  return response.exceptionDetails ? located(thrown, response.exceptionDetails) : thrown;
}

/** A SyntaxError that names its line and column (1-based) in the user's code. */
function located(thrown, details) {
  const line = details.lineNumber + 1;
  const column = details.columnNumber + 1;
  const error = new SyntaxError(`${thrown.message} (at line ${line}, column ${column})`);
  error.stack = `SyntaxError: ${error.message}\n    at ${USER_URL}:${line}:${column}`;
  return error;
}
