"""Server-streaming RPCs over HTTP: NDJSON (grpc-gateway's framing) or Server-Sent Events.

The response owns the gRPC call: when the client goes away the call is cancelled at once (not
at the next message), and when the call ends the response ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
import grpc
from google.protobuf.message import Message
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from forge_gateway import errors, transcode

log = logging.getLogger("gateway")

# End-of-stream marker of UnaryStreamCall.read() (missing from grpc-stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

UNDECODABLE = ("the gateway could not decode a message from the broker (nested deeper than "
               "protobuf's limit?); the stream is ended")

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def wants_sse(accept: str) -> bool:
    """True when the Accept header asks for Server-Sent Events."""
    return any(part.split(";")[0].strip().lower() == SSE for part in accept.split(","))


def frame_ndjson(kind: str, value: Any) -> bytes:
    """One NDJSON line: ``{"result": ...}`` or ``{"error": ...}``."""
    return transcode.encode({kind: value}) + b"\n"


def frame_sse(kind: str, value: Any) -> bytes:
    """One SSE event: the bare message as ``data``, errors as an ``error`` event."""
    data = transcode.encode(value)
    if kind == "error":
        return b"event: error\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


class StreamResponse(Response):
    """Streams the messages of a ``grpc.aio.UnaryStreamCall`` as NDJSON or SSE.

    ``first`` is the already-started read of the first message (the caller looked at it to
    answer early errors with a proper HTTP status).
    """

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[Any, Any],
        first: asyncio.Future[Any],
        render: Callable[[Message], Any],
        sse: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.call = call
        self.first = first
        self.render_message = render
        self.frame = frame_sse if sse else frame_ndjson
        # Not Response.__init__: with no body it would declare Content-Length: 0. Like
        # StreamingResponse, leave the length out so the server uses chunked encoding.
        self.status_code = 200
        self.media_type = SSE if sse else NDJSON
        self.background = None
        self.init_headers(
            {
                "cache-control": "no-cache",
                # Tell nginx-style proxies not to buffer: a stream is only useful live.
                "x-accel-buffering": "no",
                **(headers or {}),
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def pump() -> None:
                    await self._pump(send)
                    tg.cancel_scope.cancel()

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(pump)
                tg.start_soon(watch_disconnect)
        finally:
            # Whatever ended the response (client gone, stream done, our own failure), the
            # broker must stop producing for it.
            self.call.cancel()
            if not self.first.done():
                self.first.cancel()

    async def _pump(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        pending: asyncio.Future[Any] = self.first
        while True:
            try:
                message = await pending
            except grpc.aio.AioRpcError as e:
                # Headers (200) are gone already; report in-band as grpc-gateway does.
                _, body = errors.from_rpc_error(e)
                await self._send(send, self.frame("error", body))
                break
            if message is EOF:
                break
            if message is None:
                # grpc.aio's read() answers None for a message the deserializer refused (grpc
                # logs why), and the call goes on: end it, and say so in-band.
                await self._send(send, self.frame("error", errors.status_json(
                    grpc.StatusCode.INTERNAL, UNDECODABLE)))
                break
            await self._send(send, self.frame("result", self.render_message(message)))
            pending = asyncio.ensure_future(self.call.read())
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _send(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
