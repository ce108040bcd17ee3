{
  // The file every sandbox child starts from. It reads the runner itself
  // (length-prefixed, from stdin) and evaluates it as a script: Deno analyses
  // every module it loads from a file, and skipping that for the runner saves
  // ~2.5 ms of CPU per execution. The runner's lazily compiled modules follow
  // (supervisor/sandbox/script.py). Nothing else is ever read this way; user
  // code arrives later, over the frame channel the runner speaks.
  //
  // Comments stay inside this block: Deno inspects a module's top-level
  // comments (for pragmas), and the first one costs each child ~0.5-0.9 ms.
  // Deno's core functions, not Deno.stdin and TextDecoder: their first use
  // costs a child ~0.1-0.3 ms each, compiling Deno's own JavaScript.
  const core = Deno[Deno.internal].core;
  const readExactly = () => {
    const head = new Uint8Array(4);
    for (let got = 0; got < 4;) {
      const n = core.readSync(0, head.subarray(got));
      if (n === 0) Deno.exit(70);
      got += n;
    }
    const body = new Uint8Array(new DataView(head.buffer).getUint32(0));
    for (let got = 0; got < body.byteLength;) {
      const n = core.readSync(0, body.subarray(got));
      if (n === 0) Deno.exit(70);
      got += n;
    }
    return core.decode(body);
  };
  const [runner, error] = core.evalContext(readExactly(), "file:///mcp-v8-runner.js");
  if (error) throw error.thrown;
  runner(readExactly());
}
