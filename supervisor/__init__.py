"""mcp-v8: a supervisor that runs JavaScript in permission-less Deno sandboxes."""

__all__: list[str] = []
