# The recipes people, the README and CI use.

venv := ".venv"
bin := venv / "bin"

# Install the project and its development tools into .venv
install:
    test -x {{bin}}/python || python3 -m venv {{venv}}
    {{bin}}/pip install --quiet --upgrade pip
    {{bin}}/pip install --quiet -e '.[dev]'

# Start the server: Streamable HTTP MCP at /mcp and REST at /api on port 3000
serve *ARGS:
    {{bin}}/mcp-v8 --http-port 3000 {{ARGS}}

# Lint, type-check and run every test
test *ARGS: lint
    {{bin}}/python -m pytest {{ARGS}}

# Ruff (lint and format check), mypy strict, and the generated wire schema check
lint:
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy
    {{bin}}/python -m protocol.jsgen --check

# Print throughput and latency figures against references measured in the same run
bench *ARGS:
    {{bin}}/python -m bench.run {{ARGS}}
    {{bin}}/python -m bench.policy_bench
    {{bin}}/python -m bench.fetch_bench
    {{bin}}/python -m bench.typescript_bench
    {{bin}}/python -m bench.import_bench
    {{bin}}/python -m bench.cells_bench

# Regenerate sandbox_host/wire.js and wire.schema.json from protocol/frames.py
wire:
    {{bin}}/python -m protocol.jsgen
