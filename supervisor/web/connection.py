"""Quart's HTTP connection, handled in the server's own task.

Quart runs every request as two new tasks (one reads the body and watches for
a disconnect, one runs the handler), waits for the first to finish, cancels the
other, and sends the response in a third task (``asyncio.wait_for``). Under
load those tasks and their loop iterations are a large part of what a request
costs. Behind our guard (guard.py) the body has always arrived whole before
Quart sees the request, so a request is handled here in the task the server
gave it, and the response timeout is an ``asyncio.timeout`` (no task).

Only a request that may wait for something else than the server (a long-poll,
``?wait=``) keeps a watch for the client going away: one task that cancels
the handler when the connection closes, as Quart's own class does.
"""

from __future__ import annotations

import asyncio
from typing import cast

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart.asgi import ASGIHTTPConnection, _handle_exception
from quart.utils import encode_headers
from quart.wrappers import Request, Response
from quart.wrappers.response import DataBody

from supervisor.web.guard import Receive, replaying


class InlineHTTPConnection(ASGIHTTPConnection):
    """One request, handled in the calling task once its body is complete."""

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        first = await receive()
        if first["type"] != "http.request" or first.get("more_body", False):
            # Not behind the guard (or a disconnect already): Quart's own way.
            rest = replaying(dict(first), cast(Receive, receive))
            await super().__call__(cast(ASGIReceiveCallable, rest), send)
            return
        request = self._create_request_from_scope(send)
        request.body.append(first.get("body", b""))
        request.body.set_complete()
        if b"wait=" not in self.scope["query_string"]:
            await self._handle(request, send)
            return
        handler = asyncio.current_task()
        assert handler is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            handler.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self._handle(request, send)
        except asyncio.CancelledError:
            if not gone:
                raise
            handler.uncancel()  # the client left; there is no one to answer
        finally:
            watcher.cancel()

    async def _handle(self, request: Request, send: ASGISendCallable) -> None:
        try:
            response = await self.app.handle_request(request)
        except Exception as error:
            response = await _handle_exception(self.app, error)
        if isinstance(response, Response) and response.timeout != Ellipsis:
            timeout = cast(float | None, response.timeout)
        else:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        try:
            async with asyncio.timeout(timeout):
                if isinstance(response, Response) and isinstance(response.response, DataBody):
                    await self._send_data(send, response, response.response)
                else:
                    await self._send_response(send, response)
        except TimeoutError:
            pass  # the client stopped reading; the connection is dropped

    async def _send_data(self, send: ASGISendCallable, response: Response, body: DataBody) -> None:
        """A response whose body is in memory (every JSON reply): the start, then the
        whole body as the last message. Quart sends it as a body message followed by
        an empty last one, which costs the server one more pass through its send path.
        """
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": encode_headers(response.headers),
            }
        )
        await send(
            {
                "type": "http.response.body",
                "body": body.data[body.begin : body.end],
                "more_body": False,
            }
        )
