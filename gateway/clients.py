"""One peer (service_kit.peer) per service, made once; helpers that turn call failures into ApiError.

Both the HTTP routes and the web UI use the same `ServiceClients`, so the UI
never goes over HTTP to its own process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GatewaySettings
from gateway.errors import ApiError, from_peer_error
from gateway.protojson import message_to_dict
from modelmanager.v1 import civitai_pb2_grpc, inference_pb2_grpc, registry_pb2_grpc
from service_kit import errors, insecure_channel
from service_kit.peer import Peer

T = TypeVar("T")

SERVICES = ("registry", "civitai", "inference")


def to_dict(msg: Message) -> dict[str, Any]:
    """Proto → JSON-able dict with the proto's field names and every field present
    (json_format's output, computed faster: see gateway.protojson)."""
    result: dict[str, Any] = message_to_dict(msg)  # a Message always gives an object
    return result


def proto_json(msg: Message, status_code: int = 200) -> JSONResponse:
    """A JSON response straight from the proto (no jsonable_encoder pass: it costs more than the rest)."""
    return JSONResponse(to_dict(msg), status_code=status_code)


def parse(data: dict[str, Any], msg: T) -> T:
    """JSON dict → proto; unknown fields and bad values are a 400 naming the problem."""
    try:
        json_format.ParseDict(data, msg, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise ApiError.local(400, f"invalid request body: {exc}", "INVALID_REQUEST") from exc
    return msg


@dataclass
class ServiceClients:
    """Stubs for the three services, over channels made at start-up and closed at shutdown."""

    settings: GatewaySettings
    registry: registry_pb2_grpc.ModelRegistryServiceStub
    civitai: civitai_pb2_grpc.CivitaiServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub
    _peers: dict[str, Peer]

    @classmethod
    def connect(cls, settings: GatewaySettings) -> ServiceClients:
        peers = {}
        for name in SERVICES:
            address = getattr(settings, name)
            peers[name] = Peer(name, insecure_channel(address), address=address, deadline=settings.rpc_timeout)
        return cls(
            settings=settings,
            registry=registry_pb2_grpc.ModelRegistryServiceStub(peers["registry"].channel),
            civitai=civitai_pb2_grpc.CivitaiServiceStub(peers["civitai"].channel),
            inference=inference_pb2_grpc.InferenceServiceStub(peers["inference"].channel),
            _peers=peers,
        )

    async def close(self) -> None:
        await asyncio.gather(*(peer.close() for peer in self._peers.values()))

    def address(self, service: str) -> str:
        return str(getattr(self.settings, service))

    def error(self, exc: grpc.aio.AioRpcError, service: str) -> ApiError:
        return from_peer_error(self._peers[service].error(exc))

    async def unary(self, service: str, method: Callable[..., Awaitable[T]], request: Any,
                    deadline: float | None = None) -> T:
        """`await method(request)`; a failed call becomes ApiError naming the service."""
        try:
            return await self._peers[service].call(method, request, deadline=deadline)
        except errors.ServiceError as err:
            raise from_peer_error(err) from None

    async def stream(self, service: str, call: grpc.aio.UnaryStreamCall) -> AsyncIterator[Any]:
        """Iterate a server stream; failures become ApiError; leaving early cancels the call."""
        try:
            async for msg in call:
                yield msg
        except grpc.aio.AioRpcError as exc:
            raise self.error(exc, service) from None
        finally:
            call.cancel()

    def channel(self, service: str) -> grpc.aio.Channel:
        return self._peers[service].channel

    async def health(self, deadline: float = 2.0) -> dict[str, str]:
        """Each service's grpc.health.v1 status: SERVING, NOT_SERVING or UNAVAILABLE."""

        async def check(name: str) -> tuple[str, str]:
            stub = health_pb2_grpc.HealthStub(self._peers[name].channel)
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=deadline)
            except grpc.aio.AioRpcError as exc:
                return name, exc.code().name
            return name, health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

        return dict(await asyncio.gather(*(check(n) for n in SERVICES)))
