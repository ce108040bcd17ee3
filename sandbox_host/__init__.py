"""The JavaScript program each sandbox child runs (``runner.js`` and its modules)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
RUNNER = ROOT / "runner.js"

__all__ = ["ROOT", "RUNNER"]
