"""Server streams → server-sent events (FastAPI's `fastapi.sse` types and wire format).

The first message is awaited before the response starts, so a call that fails
at once (unknown job, bad input, service down) gets a real HTTP error status.
After that, every message is one event; a failure mid-stream becomes a final
`event: error` with the AIP-193 body. A ping comment goes out when the stream
is idle, so proxies keep the connection open.

When the client disconnects, Starlette cancels the response body; the
`finally` below cancels the upstream gRPC call. For a generate or upscale
that stops the job; for a download or import watch it stops only the watch
(the job lives in the CivitAI service or the registry, not in this stream).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from fastapi.sse import EventSourceResponse, ServerSentEvent, format_sse_event

from gateway.clients import ServiceClients
from gateway.errors import ApiError

PING_SECONDS = 15.0

# (event name, id or None, JSON-able data) for one upstream message.
Converter = Callable[[Any], tuple[str, str | None, Any]]

_END = object()


def encode(event: ServerSentEvent) -> bytes:
    data = None if event.data is None else json.dumps(event.data, separators=(",", ":"))
    return format_sse_event(data_str=data, event=event.event, id=event.id, retry=event.retry,
                            comment=event.comment)


async def sse_response(
    clients: ServiceClients,
    service: str,
    call: grpc.aio.UnaryStreamCall,
    convert: Converter,
    *,
    headers: dict[str, str] | None = None,
    ping_seconds: float = PING_SECONDS,
) -> EventSourceResponse:
    iterator = call.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        first = _END
    except grpc.aio.AioRpcError as exc:
        call.cancel()
        raise clients.error(exc, service) from None
    except BaseException:
        call.cancel()
        raise

    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)

    async def pump() -> None:
        # Reads upstream independently of the client, so idle pings never cancel a read.
        try:
            async for msg in iterator:
                await queue.put(msg)
            await queue.put(_END)
        except grpc.aio.AioRpcError as exc:
            await queue.put(clients.error(exc, service))

    def event_of(msg: Any) -> bytes:
        name, event_id, data = convert(msg)
        return encode(ServerSentEvent(event=name, id=event_id, data=data))

    async def body() -> AsyncIterator[bytes]:
        task = None
        try:
            if first is _END:
                yield encode(ServerSentEvent(event="end", data={}))
                return
            yield event_of(first)
            task = asyncio.create_task(pump())
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), ping_seconds)
                except TimeoutError:
                    yield encode(ServerSentEvent(comment="ping"))
                    continue
                if item is _END:
                    yield encode(ServerSentEvent(event="end", data={}))
                    return
                if isinstance(item, ApiError):
                    yield encode(ServerSentEvent(event="error", data=item.body()))
                    return
                yield event_of(item)
        finally:
            call.cancel()
            if task is not None:
                task.cancel()

    return _CancellingResponse(call, body(), headers={**SSE_HEADERS, **(headers or {})})


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _CancellingResponse(EventSourceResponse):
    """Cancels the upstream call however the response ends, even before its body starts."""

    def __init__(self, call: grpc.aio.Call, content: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        super().__init__(content, headers=headers)
        self._call = call

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._call.cancel()
