// Capability calls: the user's code asks, the supervisor decides and answers.
import { holdChannel, onFrame, send, watchChannel } from "./channel.js";

const waiting = new Map();
let nextCallId = 1;

/** A JavaScript Error shaped like Node's (code, path) from a CallError. */
function callError(error) {
  const made = new Error(error.message);
  made.code = error.code;
  if (error.path !== null && error.path !== undefined) made.path = error.path;
  return made;
}

onFrame((frame, blob) => {
  const entry = frame.type === "reply" ? waiting.get(frame.id) : undefined;
  if (entry === undefined) return;
  waiting.delete(frame.id);
  if (waiting.size === 0) holdChannel(false);
  if (frame.ok) entry.resolve({ value: frame.value ?? {}, blob });
  else entry.reject(callError(frame.error));
});

/** Ask the supervisor for `capability`; resolves with `{value, blob}`. */
export function call(capability, args, blob) {
  watchChannel();
  const id = nextCallId++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    holdChannel(true);
    send({ type: "call", id, capability, args }, blob ?? undefined);
  });
}
