"""The JavaScript each sandbox child runs: ``bootstrap.js``, then ``runner.js`` and its modules."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
RUNNER = ROOT / "runner.js"
BOOTSTRAP = ROOT / "bootstrap.js"

__all__ = ["BOOTSTRAP", "ROOT", "RUNNER"]
