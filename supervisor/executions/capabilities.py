"""Capability calls of user code (``fetch``, ``fs``, ``import``): validated, decided, performed.

The child has no permissions; every call arrives as a ``Call`` frame, is
checked like any untrusted input, goes to the category's policies (all must
allow), and only then is performed by a broker in this process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, get_args

from protocol import Call, CallError, Reply
from supervisor.brokers.fetch import FetchBroker
from supervisor.brokers.fs import FsBroker
from supervisor.brokers.models import (
    BrokerError,
    FetchRequest,
    FsOp,
    FsRequest,
    FsResponse,
)
from supervisor.modules import ModuleError, ModuleResolver, ResolvedModule
from supervisor.policy import Decision, PolicyEngine

logger = logging.getLogger(__name__)

_FS_OPS = frozenset(get_args(FsOp))


def _str(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise BrokerError("EINVAL", f"{name} must be a string")
    return value


_ALLOWED = Decision(allowed=True)


async def _allow(policy_input: dict[str, Any]) -> Decision:
    return _ALLOWED


class Capabilities:
    """Answers ``Call`` frames.

    ``fetch`` and ``fs`` are enabled by having policies; ``import`` by having
    a module resolver (``--allow-external-modules``), and its policies, when
    there are any, narrow it.
    """

    def __init__(
        self,
        policies: PolicyEngine | None,
        *,
        fetch: FetchBroker | None = None,
        fs: FsBroker | None = None,
        modules: ModuleResolver | None = None,
    ) -> None:
        self.policies = policies
        self.fetch = fetch
        self.fs = fs
        self.modules = modules

    async def aclose(self) -> None:
        """Close the policies', the fetch broker's and the module resolver's connections."""
        if self.modules is not None:
            await self.modules.aclose()
        if self.fetch is not None:
            await self.fetch.aclose()
        if self.policies is not None:
            await self.policies.aclose()

    def _decider(self, category: str) -> Callable[[dict[str, Any]], Awaitable[Decision]]:
        policies = self.policies
        if policies is None or not policies.has(category):
            raise BrokerError("ENOTSUP", f"{category} is not enabled on this server")

        async def decide(policy_input: dict[str, Any]) -> Decision:
            return await policies.decide(category, policy_input)

        return decide

    async def __call__(self, call: Call, blob: bytes) -> tuple[Reply, bytes]:
        try:
            if call.capability == "fetch":
                value, data = await self._fetch(call.args, blob)
            elif call.capability == "fs":
                value, data = await self._fs(call.args, blob)
            elif call.capability == "import":
                value, data = await self._import(call.args)
            else:
                raise BrokerError("ENOTSUP", f"{call.capability} is not a capability")
        except BrokerError as exc:
            error = CallError(code=exc.code, message=exc.message, path=exc.path)
            return Reply(id=call.id, ok=False, error=error), b""
        except Exception:
            incident = uuid.uuid4().hex[:12]
            logger.exception("capability call failed (incident %s)", incident)
            error = CallError(code="EIO", message=f"internal error (incident {incident})")
            return Reply(id=call.id, ok=False, error=error), b""
        return Reply(id=call.id, ok=True, value=value), data

    async def _fetch(self, args: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        decide = self._decider("fetch")
        assert self.fetch is not None
        headers = args.get("headers", [])
        if not isinstance(headers, list) or not all(
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(part, str) for part in pair)
            for pair in headers
        ):
            raise BrokerError("EINVAL", "headers must be a list of [name, value] strings")
        request = FetchRequest(
            url=_str(args, "url"),
            method=_str(args, "method", "GET"),
            headers=tuple((name, value) for name, value in headers),
            body=body,
        )
        response = await self.fetch.handle(request, decide)
        value = {
            "status": response.status,
            "status_text": response.status_text,
            "url": response.url,
            "redirected": response.redirected,
            "headers": [list(pair) for pair in response.headers],
        }
        return value, response.body

    async def resolve_import(self, specifier: str) -> ResolvedModule:
        """The bundle of an import, decided by the ``import`` policies; :class:`BrokerError`."""
        if self.modules is None:
            raise BrokerError(
                "ENOTSUP",
                "importing external modules is not enabled on this server "
                "(start it with --allow-external-modules)",
            )
        policies = self.policies
        decide = self._decider("import") if policies and policies.has("import") else _allow
        try:
            return await self.modules.resolve(specifier, decide)
        except ModuleError as exc:
            raise BrokerError(exc.code, exc.message) from None

    async def _import(self, args: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        module = await self.resolve_import(_str(args, "specifier"))
        return {"format": module.format, "sha256": module.sha256}, module.source

    async def _fs(self, args: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
        decide = self._decider("fs")
        assert self.fs is not None
        op = _str(args, "op")
        if op not in _FS_OPS:
            raise BrokerError("EINVAL", f"unknown fs operation {op!r}")
        destination = args.get("destination")
        encoding = args.get("encoding")
        recursive = args.get("recursive", False)
        if destination is not None and not isinstance(destination, str):
            raise BrokerError("EINVAL", "destination must be a string")
        if encoding == "utf-8":
            encoding = "utf8"  # the policy input spells it as the original does
        if encoding is not None and encoding not in ("utf8", "buffer"):
            raise BrokerError("EINVAL", "encoding must be 'utf8' or 'buffer'")
        if not isinstance(recursive, bool):
            raise BrokerError("EINVAL", "recursive must be a boolean")
        request = FsRequest(
            op=op,  # type: ignore[arg-type]
            path=_str(args, "path"),
            destination=destination,
            recursive=recursive,
            encoding=encoding,
            data=data,
        )
        return _fs_value(await self.fs.handle(request, decide))


def _fs_value(response: FsResponse) -> tuple[dict[str, Any], bytes]:
    value: dict[str, Any] = {}
    if response.names is not None:
        value["names"] = list(response.names)
    if response.exists is not None:
        value["exists"] = response.exists
    if response.stat is not None:
        stat = response.stat
        value.update(
            size=stat.size,
            is_file=stat.is_file,
            is_directory=stat.is_directory,
            is_symlink=stat.is_symlink,
            mtime_ms=stat.mtime_ms,
            atime_ms=stat.atime_ms,
            ctime_ms=stat.ctime_ms,
            mode=stat.mode,
        )
    return value, response.data or b""
