// fetch() and fs: shims over capability calls. The sandbox has no network and
// no filesystem; the supervisor decides every request with its policies and
// performs the I/O itself.
import { call } from "./calls.js";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
// Deno loads its fetch classes on first access (~10 ms of CPU): touch them
// only when the code actually fetches.
const webClass = (name) => globalThis[name];

/** Bytes of any body fetch() accepts (string, ArrayBuffer, views, Blob, URLSearchParams). */
async function bodyBytes(body) {
  if (body === undefined || body === null) return null;
  if (typeof body === "string") return textEncoder.encode(body);
  if (body instanceof Uint8Array) return body;
  return new Uint8Array(await new (webClass("Response"))(body).arrayBuffer());
}

function makeResponse(value, blob) {
  const body = NULL_BODY_STATUS.has(value.status) ? null : blob ?? new Uint8Array();
  const response = new (webClass("Response"))(body, {
    status: value.status,
    statusText: value.status_text,
    headers: value.headers,
  });
  // A constructed Response has no url and is never "redirected": set what
  // the supervisor saw, and keep it on clones.
  const extra = { url: value.url, redirected: value.redirected, type: "basic" };
  const decorate = (target) => {
    for (const [key, val] of Object.entries(extra)) {
      Object.defineProperty(target, key, { value: val, enumerable: true });
    }
    const clone = target.clone.bind(target);
    Object.defineProperty(target, "clone", { value: () => decorate(clone()) });
    return target;
  };
  return decorate(response);
}

/** The Web Fetch API, answered by the supervisor. */
export async function brokeredFetch(input, init = {}) {
  let url;
  let method = init.method;
  let headers = init.headers;
  let body = init.body;
  if (input instanceof webClass("Request")) {
    url = input.url;
    method ??= input.method;
    headers ??= input.headers;
    if (body === undefined && input.body !== null) body = await input.arrayBuffer();
  } else {
    url = String(input instanceof URL ? input.href : input);
  }
  const pairs = [...new (webClass("Headers"))(headers ?? {})];
  const payload = await bodyBytes(body);
  const { value, blob } = await call(
    "fetch",
    { url, method: String(method ?? "GET").toUpperCase(), headers: pairs },
    payload,
  );
  return makeResponse(value, blob);
}

function fsCall(op, path, extra = {}, data = undefined) {
  return call("fs", { op, path: String(path), ...extra }, data);
}

function encodeData(data) {
  if (typeof data === "string") return textEncoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return textEncoder.encode(String(data));
}

function options(value) {
  return value !== null && typeof value === "object" ? value : {};
}

/** The original's `fs` module: every operation a Promise, every one policy-checked. */
export const brokeredFs = Object.freeze({
  async readFile(path, encoding = "utf-8") {
    const asBuffer = encoding === "buffer" || options(encoding).encoding === "buffer";
    const { blob } = await fsCall("readFile", path, { encoding: asBuffer ? "buffer" : "utf8" });
    const bytes = blob ?? new Uint8Array();
    return asBuffer ? bytes : textDecoder.decode(bytes);
  },
  async writeFile(path, data) {
    await fsCall("writeFile", path, {}, encodeData(data));
  },
  async appendFile(path, data) {
    await fsCall("appendFile", path, {}, encodeData(data));
  },
  async readdir(path) {
    return (await fsCall("readdir", path)).value.names;
  },
  async stat(path) {
    const stat = (await fsCall("stat", path)).value;
    return {
      size: stat.size,
      isFile: stat.is_file,
      isDirectory: stat.is_directory,
      isSymlink: stat.is_symlink,
      mtime: new Date(stat.mtime_ms),
      atime: new Date(stat.atime_ms),
      ctime: new Date(stat.ctime_ms),
      mode: stat.mode,
    };
  },
  async mkdir(path, opts) {
    await fsCall("mkdir", path, { recursive: Boolean(options(opts).recursive) });
  },
  async rm(path, opts) {
    await fsCall("rm", path, { recursive: Boolean(options(opts).recursive) });
  },
  async rename(from, to) {
    await fsCall("rename", from, { destination: String(to) });
  },
  async copyFile(from, to) {
    await fsCall("copyFile", from, { destination: String(to) });
  },
  async exists(path) {
    return (await fsCall("exists", path)).value.exists;
  },
});

