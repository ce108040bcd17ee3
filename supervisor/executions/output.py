"""Console output of one execution: prefixed, split into lines, capped."""

from __future__ import annotations

from protocol import OutputStream

_PREFIX: dict[str, str] = {"log": "", "warn": "[WARN] ", "error": "[ERROR] "}


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that encodes to at most ``max_bytes``."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


class OutputSink:
    """Collects output as it arrives; whole lines are taken out in batches.

    Never holds more than ``limit_bytes`` of output: past the cap the rest is
    dropped and one final line says so.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._used = 0
        self._partial = ""
        self._at_line_start = True
        self._lines: list[str] = []
        self.truncated = False

    def write(self, stream: OutputStream, text: str) -> None:
        """Add the text of one output frame (warn and error lines get their prefix)."""
        if self.truncated or not text:
            return
        prefix = _PREFIX.get(stream, "")
        if prefix:
            start = prefix if self._at_line_start else ""
            body = text[:-1].replace("\n", "\n" + prefix) + text[-1]
            text = start + body
        self._at_line_start = text.endswith("\n")
        size = len(text.encode("utf-8", "replace"))
        room = self.limit_bytes - self._used
        # A line left open gets a newline when taken: keep room for it.
        if size + (0 if self._at_line_start else 1) > room:
            text = _cut_utf8(text, max(room - 1, 0))
            self.truncated = True
        self._used += len(text.encode("utf-8", "replace"))
        pending = self._partial + text
        parts = pending.split("\n")
        self._partial = parts.pop()
        self._lines.extend(part + "\n" for part in parts)
        if self.truncated:
            if self._partial:
                self._lines.append(self._partial + "\n")
                self._partial = ""
            self._lines.append(f"[output truncated: limit of {self.limit_bytes} bytes reached]\n")

    def take(self, *, final: bool = False) -> list[str]:
        """Remove and return the complete lines so far (and, if ``final``, the partial one)."""
        lines, self._lines = self._lines, []
        if final and self._partial:
            lines.append(self._partial + "\n")
            self._partial = ""
        return lines
