"""``mcp-v8``: command-line entry point. Builds the settings, configures logging, serves."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from supervisor.app import running, settle_gc
from supervisor.config import (
    DEFAULT_HEAP_DIR,
    DEFAULT_SESSION_DB,
    MIB,
    CapabilitySettings,
    HttpSettings,
    ModuleSettings,
    SandboxSettings,
    Settings,
    StorageSettings,
    default_data_dir,
)
from supervisor.errors import ConfigError, McpV8Error
from supervisor.executions.requests import HEAP_RANGE_MB, TIMEOUT_RANGE_S

logger = logging.getLogger("supervisor")


def _ranged_int(name: str, low: int, high: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a whole number, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} must be between {low} and {high}, got {value}"
            )
        return value

    return parse  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    """The command line, flag for flag with the original mcp-v8 where they overlap."""
    p = argparse.ArgumentParser(
        prog="mcp-v8",
        description="Run JavaScript for AI agents and services in a permission-less V8 sandbox.",
    )
    storage = p.add_argument_group("storage")
    storage.add_argument(
        "--stateless", action="store_true", help="no heap snapshots: every execution starts fresh"
    )
    storage.add_argument(
        "--directory-path", metavar="DIR", help="store heap snapshots in this directory"
    )
    storage.add_argument("--s3-bucket", metavar="BUCKET", help="store heap snapshots in S3")
    storage.add_argument(
        "--cache-dir", metavar="DIR", help="local write-through cache for S3 (requires --s3-bucket)"
    )
    storage.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="an S3-compatible server (default: AWS_ENDPOINT_URL_S3, else AWS)",
    )
    storage.add_argument(
        "--cache-size-mb",
        metavar="MB",
        type=_ranged_int("--cache-size-mb", 1, 2**30),
        default=1024,
        help="size bound of the --cache-dir cache (default 1024)",
    )
    storage.add_argument(
        "--session-db-path",
        metavar="DIR",
        help=f"directory of the session log database (default {DEFAULT_SESSION_DB})",
    )
    storage.add_argument(
        "--session-id",
        metavar="NAME",
        help="log every execution of this stdio connection under this session name",
    )
    storage.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help=f"where executions and output are kept (default {default_data_dir()})",
    )

    transport = p.add_argument_group("transport (default: MCP over stdio)")
    ports = transport.add_mutually_exclusive_group()
    port = _ranged_int("port", 0, 65535)
    ports.add_argument(
        "--http-port",
        type=port,
        metavar="PORT",
        help="serve Streamable HTTP MCP at /mcp and the REST API",
    )
    ports.add_argument(
        "--sse-port",
        type=port,
        metavar="PORT",
        help="serve SSE MCP at /sse and /message, and the REST API",
    )
    transport.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    transport.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="also accept requests for this Host name ('*': any); repeatable",
    )
    transport.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept requests from this Origin; repeatable",
    )
    transport.add_argument(
        "--max-body-bytes",
        type=_ranged_int("--max-body-bytes", 1024, 2**31),
        default=2 * MIB,
        help="request body cap (default 2 MiB)",
    )

    limits = p.add_argument_group("execution limits")
    limits.add_argument(
        "--heap-memory-max",
        type=_ranged_int("--heap-memory-max", *HEAP_RANGE_MB),
        default=8,
        metavar="MB",
        help="JavaScript heap per execution (default 8)",
    )
    limits.add_argument(
        "--external-memory-max",
        metavar="MB",
        default=64,
        type=_ranged_int("--external-memory-max", 0, 65536),
        help="memory outside the JS heap (ArrayBuffers, wasm) per execution (default 64)",
    )
    limits.add_argument(
        "--execution-timeout",
        metavar="SECONDS",
        default=30,
        type=_ranged_int("--execution-timeout", *TIMEOUT_RANGE_S),
        help="time limit per execution, 1-300 (default 30)",
    )
    limits.add_argument(
        "--max-concurrent-executions",
        metavar="N",
        default=os.cpu_count() or 1,
        type=_ranged_int("--max-concurrent-executions", 1, 4096),
        help="executions running at once; more wait (default: CPU count)",
    )
    limits.add_argument(
        "--pool-size",
        metavar="N",
        default=0,
        type=_ranged_int("--pool-size", 0, 256),
        help="pre-started sandboxes (default: --max-concurrent-executions)",
    )
    limits.add_argument(
        "--no-typescript",
        action="store_true",
        help="run code as JavaScript, without stripping TypeScript types",
    )
    limits.add_argument(
        "--no-memory-cgroup",
        action="store_true",
        help="do not put children in memory cgroups even where the host allows it "
        "(RSS polling still limits them)",
    )
    limits.add_argument(
        "--max-output-bytes",
        default=16 * MIB,
        metavar="BYTES",
        type=_ranged_int("--max-output-bytes", 1024, 2**31),
        help="console output kept per execution (default 16 MiB)",
    )
    limits.add_argument(
        "--max-code-bytes",
        default=MIB,
        metavar="BYTES",
        type=_ranged_int("--max-code-bytes", 16, 2**28),
        help="largest accepted code (default 1 MiB)",
    )

    caps = p.add_argument_group("policy-gated fetch and fs")
    caps.add_argument(
        "--policies-json",
        metavar="JSON|PATH",
        help='policies per capability: {"fetch": {"policies": [{"url": ...}]}, "fs": {...}}; '
        "a url is a remote OPA (http://...) or local Rego (file:///path.rego or a directory)",
    )
    caps.add_argument(
        "--fetch-header",
        action="append",
        default=[],
        metavar="RULE",
        help="inject headers into matching fetches: host=H,header=N,value=V[,methods=GET;POST] "
        "or OAuth client credentials host=H,header=N,token_url=U,client_id=I,client_secret=S"
        "[,scope=S][,refresh_buffer_secs=30][,methods=...]; repeatable",
    )
    caps.add_argument(
        "--fetch-header-config",
        action="append",
        default=[],
        metavar="PATH",
        help="a JSON file of header injection rules; repeatable",
    )
    mods = p.add_argument_group("external modules (npm:, jsr:, URL imports)")
    mods.add_argument(
        "--allow-external-modules",
        action="store_true",
        help="let code import npm:, jsr: and http(s) modules; the server downloads and bundles "
        "them (the sandbox never gets a network), narrowed by 'import' policies if any",
    )
    mods.add_argument(
        "--npm-registry",
        default=ModuleSettings.npm_registry,
        type=_http_url("--npm-registry"),
        metavar="URL",
        help=f"the npm registry (default {ModuleSettings.npm_registry})",
    )
    mods.add_argument(
        "--jsr-registry",
        default=ModuleSettings.jsr_registry,
        type=_http_url("--jsr-registry"),
        metavar="URL",
        help=f"the JSR registry (default {ModuleSettings.jsr_registry})",
    )
    mods.add_argument(
        "--module-cdn",
        type=_http_url("--module-cdn"),
        metavar="URL",
        help="load npm: specifiers from this esm.sh-compatible CDN as URL imports "
        "(e.g. https://esm.sh) instead of the npm registry",
    )
    wasm = p.add_argument_group("preloaded WebAssembly")
    wasm.add_argument(
        "--wasm-module",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a .wasm file available to every execution: its exports as the global NAME "
        "(modules without imports) and the compiled module as __wasm_NAME; repeatable",
    )
    wasm.add_argument(
        "--wasm-config",
        action="append",
        default=[],
        metavar="PATH",
        help='a JSON file {"name": "path.wasm", ...}, merged with --wasm-module',
    )
    p.add_argument("--deno-path", metavar="PATH", help="Deno binary (default: the bundled one)")
    p.add_argument(
        "--print-openapi",
        action="store_true",
        help="print the OpenAPI document of the REST API and exit",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="server log level",
    )
    return p


def _http_url(name: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise argparse.ArgumentTypeError(f"{name} must be an http:// or https:// URL: {text!r}")
        return text.rstrip("/") + "/"

    return parse


def _default_deno() -> str:
    try:
        import deno

        return str(deno.find_deno_bin())
    except (ImportError, FileNotFoundError):
        return "deno"


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Turn parsed flags into settings; conflicting flags exit with status 2."""
    for flag in ("directory_path", "s3_bucket", "session_db_path"):
        if args.stateless and getattr(args, flag):
            parser.error(f"--stateless conflicts with --{flag.replace('_', '-')}")
    if args.directory_path and args.s3_bucket:
        parser.error("--directory-path conflicts with --s3-bucket")
    if args.cache_dir and not args.s3_bucket:
        parser.error("--cache-dir requires --s3-bucket")
    if args.session_id is not None and args.stateless:
        parser.error("--stateless conflicts with --session-id")
    if args.s3_endpoint_url and not args.s3_bucket:
        parser.error("--s3-endpoint-url requires --s3-bucket")
    return Settings(
        sandbox=SandboxSettings(
            deno_path=args.deno_path or _default_deno(),
            heap_memory_max_mb=args.heap_memory_max,
            external_memory_max_mb=args.external_memory_max,
            execution_timeout_s=float(args.execution_timeout),
            max_concurrent_executions=args.max_concurrent_executions,
            pool_size=args.pool_size,
            output_limit_bytes=args.max_output_bytes,
            max_code_bytes=args.max_code_bytes,
            memory_cgroups=not args.no_memory_cgroup,
            typescript=not args.no_typescript,
        ),
        http=HttpSettings(
            host=args.host,
            http_port=args.http_port,
            sse_port=args.sse_port,
            allowed_hosts=tuple(args.allowed_host),
            allowed_origins=tuple(args.allowed_origin),
            max_body_bytes=args.max_body_bytes,
        ),
        storage=StorageSettings(
            data_dir=args.data_dir or default_data_dir(),
            stateless=args.stateless,
            heap_dir=Path(args.directory_path) if args.directory_path else DEFAULT_HEAP_DIR,
            s3_bucket=args.s3_bucket,
            s3_endpoint_url=args.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3"),
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            cache_size_bytes=args.cache_size_mb * MIB,
            session_db_path=(
                Path(args.session_db_path) if args.session_db_path else DEFAULT_SESSION_DB
            ),
        ),
        session_id=args.session_id,
        modules=ModuleSettings(
            enabled=args.allow_external_modules,
            npm_registry=args.npm_registry,
            jsr_registry=args.jsr_registry,
            cdn=args.module_cdn.rstrip("/") if args.module_cdn else None,
        ),
        capabilities=CapabilitySettings(
            policies_json=args.policies_json,
            fetch_headers=tuple(args.fetch_header),
            fetch_header_configs=tuple(Path(p) for p in args.fetch_header_config),
            wasm_modules=tuple(args.wasm_module),
            wasm_configs=tuple(Path(p) for p in args.wasm_config),
        ),
    )


async def _serve(settings: Settings) -> None:
    from supervisor.web import serve_http, serve_stdio

    async with running(settings) as services:
        mode = "stateless" if settings.storage.stateless else "stateful"
        logger.info("mcp-v8 ready (%s mode; %s)", mode, services.sandbox_version)
        settle_gc()
        http = settings.http
        if http.http_port is None and http.sse_port is None:
            await serve_stdio(services)
            return
        shutdown = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        shutdown.set()
                        return

            tg.start_soon(on_signal)
            await serve_http(services, shutdown)
            tg.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``mcp-v8`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.print_openapi:
        from supervisor.web.openapi import openapi_text

        sys.stdout.write(openapi_text())
        return
    settings = settings_from_args(args, parser)
    # Logs go to stderr: with the stdio transport, stdout carries the protocol.
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        anyio.run(_serve, settings)
    except ConfigError as exc:
        print(f"mcp-v8: error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except McpV8Error as exc:
        print(f"mcp-v8: error: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
