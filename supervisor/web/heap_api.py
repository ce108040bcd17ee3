"""Sessions and heap tags, validated once for REST and MCP alike."""

from __future__ import annotations

from typing import Any

import anyio

from supervisor.app import Services
from supervisor.errors import HeapNotFound, InvalidRequest
from supervisor.executions.requests import check_session, check_tag_keys, check_tags
from supervisor.heaps import check_digest
from supervisor.sessions import SNAPSHOT_FIELDS, SessionStore
from supervisor.web.models import HeapList, HeapTags, SessionList, SessionSnapshots, entry_fields


def _sessions(services: Services) -> SessionStore:
    if services.sessions is None:
        raise InvalidRequest(
            "sessions and heap tags need stateful mode; this server runs with --stateless"
        )
    return services.sessions


def parse_fields(fields: str | None) -> list[str]:
    """``"index,code"`` -> ``["index", "code"]``; every field when None; unknown ones refused."""
    if fields is None or not fields.strip():
        return list(SNAPSHOT_FIELDS)
    chosen = [f.strip() for f in fields.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in SNAPSHOT_FIELDS]
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(unknown)}; choose from {', '.join(SNAPSHOT_FIELDS)}"
        )
    return chosen


async def list_sessions(services: Services) -> SessionList:
    """Every session name."""
    sessions = _sessions(services)
    return SessionList(sessions=await anyio.to_thread.run_sync(sessions.sessions))


async def session_snapshots(
    services: Services, session: Any, fields: str | None
) -> SessionSnapshots:
    """The log of one session with the chosen fields."""
    sessions = _sessions(services)
    name = check_session(session)
    chosen = parse_fields(fields)
    entries = await anyio.to_thread.run_sync(sessions.entries, name)
    return SessionSnapshots(session=name, snapshots=[entry_fields(e, chosen) for e in entries])


async def _existing_heap(services: Services, heap: Any) -> str:
    digest = check_digest(heap)
    heaps = services.engine.heaps
    if heaps is None or not await heaps.exists(digest):
        raise HeapNotFound(f"heap not found: {digest}")
    return digest


async def get_tags(services: Services, heap: Any) -> HeapTags:
    """The tags of a stored heap."""
    sessions = _sessions(services)
    digest = await _existing_heap(services, heap)
    return HeapTags(heap=digest, tags=await anyio.to_thread.run_sync(sessions.tags, digest))


async def set_tags(services: Services, heap: Any, tags: Any) -> HeapTags:
    """Replace the tags of a stored heap."""
    sessions = _sessions(services)
    digest = await _existing_heap(services, heap)
    checked = check_tags(tags)
    await anyio.to_thread.run_sync(sessions.set_tags, digest, checked)
    return HeapTags(heap=digest, tags=checked)


async def delete_tags(services: Services, heap: Any, keys: Any) -> HeapTags:
    """Remove some tags of a stored heap; returns what remains."""
    sessions = _sessions(services)
    digest = await _existing_heap(services, heap)
    await anyio.to_thread.run_sync(sessions.delete_tags, digest, check_tag_keys(keys))
    return HeapTags(heap=digest, tags=await anyio.to_thread.run_sync(sessions.tags, digest))


async def query_heaps(services: Services, tags: Any) -> HeapList:
    """Heaps whose tags contain every given pair."""
    sessions = _sessions(services)
    checked = check_tags(tags)
    return HeapList(heaps=await anyio.to_thread.run_sync(sessions.heaps_with, checked))
