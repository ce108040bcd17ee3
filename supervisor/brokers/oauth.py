"""Applying header rules to requests, and the OAuth client-credentials tokens they need.

Tokens are cached per rule and reused until ``refresh_buffer_secs`` before they
expire; a ``refresh_token`` is tried first, then a fresh client-credentials
request; concurrent fetches share one token request (a lock per rule). Error
messages name the HTTP status and OAuth error code only: never the client
secret, the token, or the endpoint's response body.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from supervisor.brokers.headers import (
    _BAD_VALUE_CHAR,
    HeaderRule,
    OAuthHeaderRule,
    StaticHeaderRule,
)
from supervisor.brokers.models import BrokerError

__all__ = ["HeaderInjector"]

logger = logging.getLogger(__name__)

_MAX_TOKEN_RESPONSE_BYTES = 1 << 20
_OAUTH_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# -- injection and tokens ------------------------------------------------------------------


@dataclass
class _CachedToken:
    value: str  # the header value, "<token_type> <access_token>"
    refresh_token: str | None
    stale_at: float | None  # monotonic; None: expiry unknown, use once


@dataclass
class _TokenSlot:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    token: _CachedToken | None = None


class _TokenFailure(Exception):
    """Why one token request failed, in words safe to show (no secret, no body)."""


class HeaderInjector:
    """Applies header rules to requests and keeps each OAuth rule's token.

    Tokens are cached per rule and reused until ``refresh_buffer_s`` before
    they expire; then a refresh token is tried first (when the endpoint gave
    one), then a fresh client-credentials grant. One lock per rule makes
    concurrent fetches share a single token request. A token response without
    ``expires_in`` takes its expiry from a JWT ``exp`` claim; when neither is
    present the token serves the fetch that asked for it and is not cached.
    """

    def __init__(
        self,
        rules: Sequence[HeaderRule],
        *,
        token_timeout_s: float = 30.0,
        verify: Any = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules: tuple[HeaderRule, ...] = tuple(rules)
        self._slots = {
            index: _TokenSlot()
            for index, rule in enumerate(self.rules)
            if isinstance(rule, OAuthHeaderRule)
        }
        self._token_timeout_s = token_timeout_s
        self._verify = verify
        self._clock = clock
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"HeaderInjector({len(self.rules)} rules)"

    async def aclose(self) -> None:
        """Close the token endpoint client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def inject(
        self, host: str, method: str, headers: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """``headers`` plus the headers of every rule matching ``host`` and ``method``.

        A header already present (by case-insensitive name) is kept and the
        rule's value skipped; an OAuth rule then makes no token request.
        """
        result = list(headers)
        present = {name.lower() for name, _ in headers}
        for index, rule in enumerate(self.rules):
            if not rule.matches(host, method):
                continue
            if isinstance(rule, StaticHeaderRule):
                for name, value in rule.headers:
                    if name.lower() not in present:
                        result.append((name, value))
                        present.add(name.lower())
            elif rule.header.lower() not in present:
                result.append((rule.header, await self._token_header(index, rule)))
                present.add(rule.header.lower())
        return result

    async def _token_header(self, index: int, rule: OAuthHeaderRule) -> str:
        slot = self._slots[index]
        async with slot.lock:
            cached = slot.token
            if (
                cached is not None
                and cached.stale_at is not None
                and self._clock() < cached.stale_at
            ):
                return cached.value
            slot.token = None
            token = await self._acquire(rule, cached.refresh_token if cached else None)
            if token.stale_at is not None:
                slot.token = token
            return token.value

    async def _acquire(self, rule: OAuthHeaderRule, refresh_token: str | None) -> _CachedToken:
        refresh_problem = ""
        if refresh_token is not None:
            try:
                token = await self._request_token(rule, refresh_token)
            except _TokenFailure as exc:
                refresh_problem = f"the refresh failed ({exc}), then "
                logger.info("fetch header %s: token refresh failed: %s", rule.source, exc)
            else:
                if token.refresh_token is None:
                    token.refresh_token = refresh_token
                return token
        try:
            return await self._request_token(rule, None)
        except _TokenFailure as exc:
            logger.warning("fetch header %s: token request failed: %s", rule.source, exc)
            raise BrokerError(
                "EAUTH",
                f"fetch could not obtain an OAuth token for header {rule.header!r} "
                f"({rule.source}, host {rule.host}): {refresh_problem}{exc}",
            ) from None

    async def _request_token(
        self, rule: OAuthHeaderRule, refresh_token: str | None
    ) -> _CachedToken:
        form = {"client_id": rule.client_id, "client_secret": rule.client_secret}
        if refresh_token is not None:
            form |= {"grant_type": "refresh_token", "refresh_token": refresh_token}
        else:
            form["grant_type"] = "client_credentials"
            if rule.scope:
                form["scope"] = rule.scope
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                timeout=self._token_timeout_s,
                verify=self._verify,
            )
        grant = form["grant_type"]
        started = self._clock()
        try:
            async with self._client.stream(
                "POST", rule.token_url, data=form, headers={"Accept": "application/json"}
            ) as response:
                body = await _read_capped(response, _MAX_TOKEN_RESPONSE_BYTES)
        except httpx.TimeoutException:
            raise _TokenFailure(f"the token endpoint did not answer in time ({grant})") from None
        except httpx.HTTPError as exc:
            # Only the class name: messages of some httpx errors quote the request.
            raise _TokenFailure(
                f"the token endpoint could not be reached ({grant}, {type(exc).__name__})"
            ) from None
        if body is None:
            raise _TokenFailure(f"the token endpoint's answer is too large ({grant})")
        payload = _json_object(body)
        if not 200 <= response.status_code < 300:
            code = payload.get("error") if payload else None
            detail = (
                f" {code}" if isinstance(code, str) and _OAUTH_ERROR_CODE.fullmatch(code) else ""
            )
            raise _TokenFailure(
                f"the token endpoint answered HTTP {response.status_code}{detail} ({grant})"
            )
        access_token = payload.get("access_token") if payload else None
        if not isinstance(access_token, str) or not access_token:
            raise _TokenFailure(f"the token endpoint's answer has no access_token ({grant})")
        auth_scheme = payload.get("token_type") if payload else None
        if not isinstance(auth_scheme, str) or auth_scheme.strip().lower() in ("", "bearer"):
            auth_scheme = "Bearer"
        value = f"{auth_scheme.strip()} {access_token}"
        if _BAD_VALUE_CHAR.search(value):
            raise _TokenFailure(f"the token endpoint's token contains control characters ({grant})")
        assert payload is not None
        new_refresh = payload.get("refresh_token")
        lifetime_s = _lifetime_s(payload.get("expires_in"), access_token)
        stale_at = None if lifetime_s is None else started + lifetime_s - rule.refresh_buffer_s
        logger.debug(
            "fetch header %s: obtained a token by %s (lifetime %s s)",
            rule.source,
            grant,
            lifetime_s,
        )
        return _CachedToken(
            value, new_refresh if isinstance(new_refresh, str) and new_refresh else None, stale_at
        )


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _lifetime_s(expires_in: object, access_token: str) -> float | None:
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        return float(expires_in)
    if isinstance(expires_in, str):
        try:
            return float(expires_in)
        except ValueError:
            pass
    # No usable expires_in: read (without verifying) a JWT's exp claim, wall-clock seconds.
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp) - time.time()
    return None
