"""A module server's content for the loopback servers of ``tests.brokers.test_fetch_support``."""

from __future__ import annotations

from tests.brokers.test_fetch_support import Handler, Received, Reply

Files = dict[str, Reply]


def js(text: str) -> Reply:
    return Reply(200, [("content-type", "application/javascript; charset=utf-8")], text.encode())


def ts(text: str) -> Reply:
    return Reply(200, [("content-type", "application/typescript")], text.encode())


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status, [("location", location)])


def site(files: Files) -> Handler:
    """A module server answering ``files`` by path, 404 for anything else."""

    async def handler(request: Received) -> Reply:
        found = files.get(request.target.split("?")[0])
        return found if found is not None else Reply(404, [("content-type", "text/plain")], b"no")

    return handler


def requested(received: list[Received]) -> list[str]:
    return [r.target for r in received]
