"""Stand-ins for Deno: small Python programs that speak (or break) the frame protocol."""

from pathlib import Path

FAKE_DENO = Path(__file__).resolve().parent / "fake_deno.py"

__all__ = ["FAKE_DENO", "write_fake_deno"]


def write_fake_deno(directory: Path, mode: str = "") -> Path:
    """An executable in ``directory`` that runs the fake deno (in ``mode``) with this Python."""
    import sys

    launcher = directory / f"fake-deno{'-' + mode if mode else ''}"
    launcher.write_text(
        f'#!/bin/sh\nFAKE_DENO_MODE="{mode}" exec "{sys.executable}" "{FAKE_DENO}" "$@"\n'
    )
    launcher.chmod(0o755)
    return launcher
