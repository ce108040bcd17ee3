"""Remote OPA policies, asked through OPA's REST data API; every failure denies (fail closed)."""

from __future__ import annotations

import logging
import socket
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from supervisor.policy.base import Decision
from supervisor.policy.config import DEFAULT_OPA_TIMEOUT_S

logger = logging.getLogger(__name__)


class RemoteOpaPolicy:
    """A :class:`~supervisor.policy.base.PolicySource` served by an OPA server at ``url``.

    ``POST {url}/v1/data/mcp/<category>/allow`` with ``{"input": ...}``; only an HTTP 200
    answer of ``{"result": true}`` allows. ``false``, a missing ``result`` (OPA's undefined),
    another status, a body that is not JSON, a refused connection, or no complete answer within
    ``timeout_s`` (one deadline over connect, send and receive) deny, with a reason saying which.
    The ``client`` is shared and owned by the caller.
    """

    def __init__(
        self, url: str, client: httpx.AsyncClient, *, timeout_s: float = DEFAULT_OPA_TIMEOUT_S
    ) -> None:
        self.name = url
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = client

    def endpoint(self, category: str) -> str:
        """The data API URL of ``data.mcp.<category>.allow``."""
        return f"{self.url}/v1/data/mcp/{quote(category, safe='')}/allow"

    async def decide(self, category: str, policy_input: dict[str, Any]) -> Decision:
        """Ask the server; any failure is a denial whose reason says what happened."""
        endpoint = self.endpoint(category)
        response: httpx.Response | None = None
        try:
            with anyio.move_on_after(self.timeout_s):
                response = await self._client.post(
                    endpoint, json={"input": policy_input}, timeout=self.timeout_s
                )
        except httpx.TimeoutException:
            response = None
        except httpx.HTTPError as exc:
            return self._unreachable(category, _describe(exc))
        if response is None:
            return self._unreachable(category, f"no answer within {self.timeout_s:g} s")
        if response.status_code != 200:
            logger.warning("OPA at %s answered HTTP %s", endpoint, response.status_code)
            return Decision(
                False,
                f"denied by policy: remote policy at {self.url} answered HTTP "
                f"{response.status_code} for {category}",
            )
        try:
            answer = response.json()
        except ValueError:
            return Decision(
                False, f"denied by policy: remote policy at {self.url} answered with invalid JSON"
            )
        if isinstance(answer, dict) and answer.get("result") is True:
            return Decision(True)
        return Decision(False, f"denied by policy: {self.url} did not allow {category}")

    def _unreachable(self, category: str, what: str) -> Decision:
        logger.warning("OPA at %s is unreachable for %s: %s", self.url, category, what)
        return Decision(
            False, f"denied by policy: remote policy at {self.url} is unreachable: {what}"
        )


def _describe(exc: httpx.HTTPError) -> str:
    """What went wrong, from the OS error under httpx's (often "All connection attempts failed")."""
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused ({exc})"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve its host ({cause})"
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
