"""Calls to another service, with one rule for their failures, per-call deadlines and paging.

    registry = Peer("registry", insecure_channel(address))
    stub = registry_pb2_grpc.ModelRegistryServiceStub(registry.channel)
    model = (await registry.call(stub.GetModel, GetModelRequest(filename=name))).model
    async for model in paged(lambda r: registry.call(stub.ListModels, r), ListModelsRequest(page_size=500),
                             "models"):
        ...

The rule for failures (every caller of a peer follows it):

- the peer did not answer (UNAVAILABLE or DEADLINE_EXCEEDED *without* an ErrorInfo: the channel failed,
  the service is down, refused or slow) -> `PeerUnavailable`: UNAVAILABLE / <PEER>_UNAVAILABLE (e.g.
  REGISTRY_UNAVAILABLE) naming the service. Its address and gRPC's debug text go to the log only;
- the peer answered with an ErrorInfo (even UNAVAILABLE / INDEX_WRITE_FAILED) -> passed on with its code,
  reason, domain and metadata (`errors.from_rpc_error`).

`paged` works over any `call(request) -> reply`, so a caller that maps errors its own way (the gateway's
ServiceClients.unary) pages with it too.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from service_kit import errors
from service_kit.logs import get_logger

__all__ = ["DEFAULT_DEADLINE", "Peer", "PeerUnavailable", "paged", "unavailable_reason"]

log = get_logger("service_kit.peer")

# Long enough for any unary call of these services; streams and big writes pass their own.
DEFAULT_DEADLINE = 30.0

Reply = TypeVar("Reply")
Req = TypeVar("Req", bound=Message)

# The codes a channel failure arrives as; with an ErrorInfo they are the peer's own answer instead.
_NO_ANSWER = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def unavailable_reason(service: str) -> str:
    """The reason of a peer that did not answer: "registry" -> REGISTRY_UNAVAILABLE."""
    return f"{service.upper()}_UNAVAILABLE"


class PeerUnavailable(errors.Unavailable):
    """A peer service did not answer; the reason names it (<PEER>_UNAVAILABLE), never its address."""

    default_reason = "PEER_UNAVAILABLE"

    def __init__(self, service: str, no_answer: grpc.StatusCode) -> None:
        timed_out = no_answer == grpc.StatusCode.DEADLINE_EXCEEDED
        what = "did not answer in time" if timed_out else "is unavailable"
        super().__init__(f"the {service} service {what}", reason=unavailable_reason(service),
                         metadata={"service": service})
        self.service = service
        # DEADLINE_EXCEEDED (slow) rather than UNAVAILABLE (down, refused): the gateway answers 504 then.
        self.timed_out = timed_out


class Peer:
    """One service this process calls: its name (for errors), its channel and the default deadline."""

    def __init__(self, name: str, channel: grpc.aio.Channel, *, address: str = "",
                 deadline: float = DEFAULT_DEADLINE) -> None:
        self.name = name
        self.channel = channel
        self.address = address  # for the log only
        self.deadline = deadline

    async def close(self) -> None:
        await self.channel.close()

    async def call(self, method: Callable[..., Awaitable[Reply]], request: Any, *,
                   deadline: float | None = None, wait_for_ready: bool = False) -> Reply:
        """`await method(request)` with a deadline (the default one unless given).

        `wait_for_ready`: a peer that is down is waited for rather than failed on, up to the deadline
        (so the deadline is the wait budget)."""
        try:
            return await method(request, timeout=deadline or self.deadline, wait_for_ready=wait_for_ready)
        except grpc.aio.AioRpcError as exc:
            raise self.error(exc) from None

    async def stream(self, call: grpc.aio.UnaryStreamCall) -> AsyncIterator[Any]:
        """The messages of a server stream (`stub.Method(request, timeout=...)`); failures follow the rule.

        Closing the iterator cancels the call; one left early is closed only when collected, so wrap it
        in `contextlib.aclosing` when a loop may break out."""
        try:
            async for msg in call:
                yield msg
        except grpc.aio.AioRpcError as exc:
            raise self.error(exc) from None
        finally:
            call.cancel()

    def error(self, exc: grpc.aio.AioRpcError) -> errors.ServiceError:
        """The failed call as the rule says: PeerUnavailable, or the peer's own error passed on."""
        err = errors.from_rpc_error(exc)
        if exc.code() in _NO_ANSWER and err.error_info is None:
            log.warning("peer.unavailable", service=self.name, address=self.address, code=exc.code().name,
                        grpc_details=exc.details())
            return PeerUnavailable(self.name, exc.code())
        return err


async def paged(call: Callable[[Req], Awaitable[Any]], request: Req, items: str) -> AsyncGenerator[Any, None]:
    """Every item of a List* RPC, page after page: sends `request` with each `next_page_token` in turn
    and yields the elements of the reply's `items` field (e.g. "models") until the token is empty.

    `request` is copied, never changed; its page_size and filters apply to every page."""
    page = type(request)()
    page.CopyFrom(request)
    while True:
        reply = await call(page)
        for item in getattr(reply, items):
            yield item
        token = reply.next_page_token
        if not token:
            return
        if token == page.page_token:
            raise errors.Internal(f"the peer answered page token {token!r} with the same token again")
        page.page_token = token
