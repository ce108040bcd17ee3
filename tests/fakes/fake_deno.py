"""A fake ``deno`` binary: ignores its arguments and obeys the code it is sent.

Commands (the whole code of a Run frame):
  ``echo:TEXT``      print TEXT as one output line, complete with TEXT as result
  ``fail:MESSAGE``   fail with an Error
  ``hang``           never answer
  ``garbage``        write bytes that are not a frame
  ``huge``           announce a frame far over any limit
  ``exit:N``         exit with status N without answering
  ``trap-term``      ignore SIGTERM and never exit (after answering)
  ``grandchild:F``   start a grandchild that writes its pid to file F, then hang
  ``alloc:MB``       touch MB mebibytes of memory, then answer
Asked ``Hello`` first (the start-up check), it answers ``Ready``. The
FAKE_DENO_MODE environment variable changes that: ``bad-protocol`` announces
protocol 999, ``silent`` never answers, ``die-at-start`` exits with status 3
before reading anything (a sandbox that cannot load).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol import (
    PROTOCOL_VERSION,
    Done,
    ErrorInfo,
    FrameDecoder,
    Hello,
    HostFrame,
    Output,
    Ready,
    Run,
    encode_frame,
)


def send(frame: object) -> None:
    sys.stdout.buffer.write(encode_frame(frame))  # type: ignore[arg-type]
    sys.stdout.buffer.flush()


def forever() -> None:
    while True:
        time.sleep(3600)


def main() -> None:
    mode = os.environ.get("FAKE_DENO_MODE", "")
    if mode == "die-at-start":
        sys.stderr.write("fake deno: cannot load\n")
        sys.exit(3)
    decoder: FrameDecoder[HostFrame] = FrameDecoder(HostFrame, max_frame_bytes=1 << 24)
    frames: list[tuple[HostFrame, bytes]] = []

    def next_frame() -> HostFrame | None:
        while not frames:
            data = os.read(0, 65536)
            if not data:
                return None
            frames.extend(decoder.feed(data))
        return frames.pop(0)[0]

    run = next_frame()
    if isinstance(run, Hello):
        if mode == "silent":
            forever()
        protocol = 999 if mode == "bad-protocol" else PROTOCOL_VERSION
        send(Ready(protocol=protocol, deno="fake", v8="fake"))
        run = next_frame()
    if run is None:
        return
    assert isinstance(run, Run)
    command, _, arg = run.code.partition(":")
    if command == "echo":
        send(Output(stream="log", text=arg + "\n"))
        send(Done(ok=True, result=arg))
    elif command == "fail":
        send(Done(ok=False, error=ErrorInfo(name="Error", message=arg)))
    elif command == "hang":
        forever()
    elif command == "garbage":
        sys.stdout.buffer.write(b"this is not a frame\n" * 10)
        sys.stdout.buffer.flush()
        forever()
    elif command == "huge":
        sys.stdout.buffer.write(b"MV" + (2**31).to_bytes(4, "big") + (0).to_bytes(4, "big"))
        sys.stdout.buffer.flush()
        forever()
    elif command == "exit":
        sys.stderr.write("fake deno: exiting as asked\n")
        sys.exit(int(arg))
    elif command == "trap-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        send(Done(ok=True, result="trapped"))
        forever()
    elif command == "alloc":
        hog = bytearray(int(arg) << 20)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        send(Done(ok=True, result=str(len(hog))))
    elif command == "grandchild":
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(arg).write_text(str(proc.pid))
        forever()


if __name__ == "__main__":
    main()
