// Frames to and from the supervisor over this process's stdin/stdout.
// Layout: "MV" | u32 json length | u32 blob length | json | blob (big-endian).
import { HEADER_BYTES, MAGIC } from "./wire.js";

const MAGIC_0 = MAGIC.charCodeAt(0);
const MAGIC_1 = MAGIC.charCodeAt(1);

// Captured before user code runs, so the channel keeps working if user code
// replaces Deno.stdout or Deno.stdin.
const stdout = Deno.stdout;
const writeSync = stdout.writeSync.bind(stdout);
const channelCore = Deno[Deno.internal].core;
// UTF-8 through Deno's core, not TextEncoder and TextDecoder: their first use
// costs a child up to ~0.3 ms (compiling Deno's own JavaScript).
const { encode, decode } = channelCore;

// Reads of stdin are ops that keep the event loop alive only while the
// channel is "ref'd": waiting for the Run frame, or for replies to calls in
// flight. Otherwise a pending read must not stop the code from settling.
let inFlight = null;
let referenced = true;

async function read(buf) {
  const pending = channelCore.read(0, buf);
  inFlight = pending;
  if (!referenced) channelCore.unrefOpPromise(pending);
  const got = await pending;
  inFlight = null;
  return got === 0 ? null : got;
}

// A blocking read, for the first frame only: the child waits for it in the
// pool with nothing else to do, and never starting an asynchronous read is
// ~0.2 ms of CPU less per child.
function readBlocking(buf) {
  const got = channelCore.readSync(0, buf);
  return got === 0 ? null : got;
}

/** Whether waiting on the channel keeps this process alive. */
export function holdChannel(on) {
  if (on === referenced) return;
  referenced = on;
  if (inFlight !== null) {
    if (on) channelCore.refOpPromise(inFlight);
    else channelCore.unrefOpPromise(inFlight);
  }
}

function writeAll(bytes) {
  let offset = 0;
  while (offset < bytes.byteLength) offset += writeSync(bytes.subarray(offset));
}

/**
 * Write one frame synchronously. The blob may come in parts (an array of
 * Uint8Arrays), written one after the other rather than copied together.
 */
export function send(frame, blob) {
  const body = encode(JSON.stringify(frame));
  const parts = blob ? (Array.isArray(blob) ? blob : [blob]) : [];
  const blobLen = parts.reduce((sum, part) => sum + part.byteLength, 0);
  const head = new Uint8Array(HEADER_BYTES + body.byteLength);
  const view = new DataView(head.buffer);
  head[0] = MAGIC_0;
  head[1] = MAGIC_1;
  view.setUint32(2, body.byteLength);
  view.setUint32(6, blobLen);
  head.set(body, HEADER_BYTES);
  writeAll(head);
  for (const part of parts) writeAll(part);
}

/**
 * Reads whole frames from stdin. A run's first frames (nothing else reads
 * stdin yet) are read blocking and exactly: the header, the JSON and the blob
 * straight into buffers of their size. Later ones are read asynchronously in
 * chunks of up to 64 KB, kept in a list and never re-concatenated per read.
 */
class FrameReader {
  #chunks = [];
  #size = 0;

  #take(n) {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.#chunks[0];
      const want = Math.min(n - filled, head.byteLength);
      out.set(head.subarray(0, want), filled);
      filled += want;
      if (want === head.byteLength) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(want);
    }
    this.#size -= n;
    return out;
  }

  /** Exactly `n` bytes: what is buffered, then reads straight into one buffer (no re-copying). */
  async #exactly(n) {
    const out = new Uint8Array(n);
    let filled = Math.min(n, this.#size);
    out.set(this.#take(filled), 0);
    while (filled < n) {
      const got = await read(out.subarray(filled));
      if (got === null) throw new Error("supervisor closed the channel");
      filled += got;
    }
    return out;
  }

  /** Resolve with the next `{frame, blob}`. */
  async next() {
    while (this.#size < HEADER_BYTES) {
      const buf = new Uint8Array(65536);
      const got = await read(buf);
      if (got === null) throw new Error("supervisor closed the channel");
      this.#chunks.push(buf.subarray(0, got));
      this.#size += got;
    }
    const [jsonLen, blobLen] = frameLengths(this.#take(HEADER_BYTES));
    const frame = JSON.parse(decode(await this.#exactly(jsonLen)));
    const blob = blobLen ? await this.#exactly(blobLen) : null;
    return { frame, blob };
  }

  /**
   * The next `{frame, blob}`, blocking the whole process until it has
   * arrived. Only before the first asynchronous read: it leaves nothing
   * buffered, but does not look at what such a read may have buffered.
   */
  nextBlocking() {
    if (this.#size) throw new Error("a blocking read after an asynchronous one");
    const [jsonLen, blobLen] = frameLengths(exactlyBlocking(HEADER_BYTES));
    const frame = JSON.parse(decode(exactlyBlocking(jsonLen)));
    const blob = blobLen ? exactlyBlocking(blobLen) : null;
    return { frame, blob };
  }
}

/** The JSON and blob lengths a frame header announces. */
function frameLengths(header) {
  if (header[0] !== MAGIC_0 || header[1] !== MAGIC_1) throw new Error("bad frame header");
  const view = new DataView(header.buffer, header.byteOffset);
  return [view.getUint32(2), view.getUint32(6)];
}

function exactlyBlocking(n) {
  const out = new Uint8Array(n);
  for (let filled = 0; filled < n;) {
    const got = readBlocking(out.subarray(filled));
    if (got === null) throw new Error("supervisor closed the channel");
    filled += got;
  }
  return out;
}

/** The one reader of this process's stdin. */
export const reader = new FrameReader();

let frameHandler = () => {};
let watching = false;

/** Where frames read by `watchChannel` go (a reply to a capability call). */
export function onFrame(handler) {
  frameHandler = handler;
}

/**
 * Read frames for the rest of the run and hand each to the `onFrame` handler.
 * Started by the first capability call, or by the runner once the code
 * outlives its first turn of the event loop: the read's EOF (the supervisor
 * died) ends this process, which must not live on as an orphan. Idempotent.
 */
export function watchChannel() {
  if (watching) return;
  watching = true;
  holdChannel(false);
  (async () => {
    for (;;) {
      let next;
      try {
        next = await reader.next();
      } catch {
        Deno.exit(70);
      }
      frameHandler(next.frame, next.blob);
    }
  })();
}
