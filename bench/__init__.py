"""Benchmarks for mcp-v8: ``.venv/bin/python -m bench.run`` (see ``bench/run.py``)."""
