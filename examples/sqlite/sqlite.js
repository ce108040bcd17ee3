// SQLite, compiled to WebAssembly, inside the sandbox: create a table, insert
// rows, query them back as JSON. Run it against a server started with
//   mcp-v8 --allow-external-modules --wasm-module sqlite3=<path of sqlite3.wasm> --heap-memory-max 32 ...
// (see README.md in this directory). The JavaScript half of the official build
// comes from the npm registry, bundled by the server; the wasm half is the
// preloaded module `__wasm_sqlite3`, since the sandbox can fetch nothing.
import sqlite3InitModule from "npm:@sqlite.org/sqlite-wasm@3.54.1-build1";

// Only the in-memory database exists here: skip the browser-only OPFS storage.
globalThis.sqlite3ApiConfig = { disable: { vfs: { opfs: true, "opfs-wl": true } } };
const sqlite3 = await sqlite3InitModule({
  instantiateWasm(imports, onSuccess) {
    WebAssembly.instantiate(__wasm_sqlite3, imports).then((instance) => onSuccess(instance, __wasm_sqlite3));
    return {}; // instantiation finishes asynchronously
  },
  print: console.log,
  printErr: console.error,
});

const db = new sqlite3.oo1.DB(":memory:");
db.exec("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, born INTEGER)");
db.exec({
  sql: "INSERT INTO people (name, born) VALUES (?, ?), (?, ?), (?, ?)",
  bind: ["Ada Lovelace", 1815, "Grace Hopper", 1906, "Edsger Dijkstra", 1930],
});
const rows = db.exec({
  sql: "SELECT id, name, born FROM people WHERE born > ? ORDER BY born",
  bind: [1900],
  rowMode: "object",
  returnValue: "resultRows",
});
db.close();
JSON.stringify({ sqlite: sqlite3.version.libVersion, rows });
