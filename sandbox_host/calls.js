// Capability calls: the user's code asks, the supervisor decides and answers.
import { holdChannel, reader, send } from "./channel.js";

const waiting = new Map();
let nextCallId = 1;
let serving = false;

/** A JavaScript Error shaped like Node's (code, path) from a CallError. */
export function callError(error) {
  const made = new Error(error.message);
  made.code = error.code;
  if (error.path !== null && error.path !== undefined) made.path = error.path;
  return made;
}

/** Ask the supervisor for `capability`; resolves with `{value, blob}`. */
export function call(capability, args, blob) {
  serveReplies();
  const id = nextCallId++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    holdChannel(true);
    send({ type: "call", id, capability, args }, blob ?? undefined);
  });
}

/**
 * Read frames for the rest of the run: replies to calls; EOF means the
 * supervisor is gone. Started by the first call, or by the runner once the
 * code outlives its first turn of the event loop, so that a child whose
 * supervisor died does not live on as an orphan. Idempotent.
 */
export function serveReplies() {
  if (serving) return;
  serving = true;
  holdChannel(false);
  (async () => {
    for (;;) {
      let next;
      try {
        next = await reader.next();
      } catch {
        Deno.exit(70); // stdin closed: the supervisor died
      }
      const { frame, blob } = next;
      const entry = frame.type === "reply" ? waiting.get(frame.id) : undefined;
      if (entry === undefined) continue;
      waiting.delete(frame.id);
      if (waiting.size === 0) holdChannel(false);
      if (frame.ok) entry.resolve({ value: frame.value ?? {}, blob });
      else entry.reject(callError(frame.error));
    }
  })();
}
