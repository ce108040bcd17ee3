// setTimeout, setInterval, clearTimeout and clearInterval on Deno's core
// timer list, which the event loop already runs. Deno's own globals load its
// Node-compatible timers module the first time one is even read: ~8 ms of CPU
// and latency per child (measured), for code as small as
// `await new Promise((r) => setTimeout(r, 0))`.
//
// Semantics follow Deno's globals: a delay below 1 ms or not a number becomes
// 1 ms; the handler must be a function; extra arguments are passed to it; the
// value returned is a Timeout object (ref/unref/hasRef/refresh/close) that
// converts to a numeric id, and the clear functions take either.
const timerCore = Deno[Deno.internal].core;
const liveTimers = new Map();
let timerIds = 0;

class Timeout {
  #timer;
  #id;
  #refed = true;

  constructor(timer, id) {
    this.#timer = timer;
    this.#id = id;
  }

  ref() {
    this.#refed = true;
    timerCore.refTimer(this.#timer);
    return this;
  }

  unref() {
    this.#refed = false;
    timerCore.unrefTimer(this.#timer);
    return this;
  }

  hasRef() {
    return this.#refed;
  }

  refresh() {
    timerCore.refreshTimer(this.#timer);
    return this;
  }

  close() {
    clearTimer(this.#id);
    return this;
  }

  [Symbol.toPrimitive]() {
    return this.#id;
  }
}

function startTimer(name, callback, delay, args, repeat) {
  if (typeof callback !== "function") {
    throw new TypeError(`${name}: the callback must be a function, got ${typeof callback}`);
  }
  const id = ++timerIds;
  const run = repeat
    ? () => callback(...args)
    : () => {
      liveTimers.delete(id);
      callback(...args);
    };
  const timer = timerCore.createTimer(run, delay, undefined, repeat, true);
  liveTimers.set(id, timer);
  return new Timeout(timer, id);
}

function clearTimer(handle) {
  const id = typeof handle === "object" && handle !== null ? Number(handle) : handle;
  const timer = liveTimers.get(id);
  if (timer === undefined) return;
  liveTimers.delete(id);
  timerCore.cancelTimer(timer);
}

/** The global timer functions, in place of Deno's (which no code may read first). */
export const timerGlobals = {
  setTimeout: (callback, delay, ...args) => startTimer("setTimeout", callback, delay, args, false),
  setInterval: (callback, delay, ...args) => startTimer("setInterval", callback, delay, args, true),
  clearTimeout: (handle) => clearTimer(handle),
  clearInterval: (handle) => clearTimer(handle),
};
for (const [name, fn] of Object.entries(timerGlobals)) Object.defineProperty(fn, "name", { value: name });
