"""The few registry calls this service makes, over gRPC.

Failures of the registry keep their code, reason and domain (`from_rpc_error`),
so a caller sees e.g. UNAVAILABLE from "registry.modelmanager" when it is down.

Calls made for a user's request fail fast when the registry is down. Calls made
by a running download job pass `wait=True` (gRPC wait-for-ready, up to the call's
deadline): a registry that restarts, or starts after this service, must not fail
a job and throw away gigabytes already downloaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from civitai_svc import errors as E
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import errors, insecure_channel

CALL_TIMEOUT = 30.0
# How long a download job waits for a registry that is down before it gives up.
JOB_WAIT_TIMEOUT = 120.0
# CreateModel may hash and inspect a multi-GB file when it must; give it time.
CREATE_TIMEOUT = 600.0


class RegistryClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = insecure_channel(address)
        self._stub = registry_pb2_grpc.ModelRegistryServiceStub(self._channel)

    async def aclose(self) -> None:
        await self._channel.close()

    async def _call(self, method, request, deadline: float = CALL_TIMEOUT, wait: bool = False):  # type: ignore[no-untyped-def]
        if wait:
            deadline = max(deadline, JOB_WAIT_TIMEOUT)
        try:
            return await method(request, timeout=deadline, wait_for_ready=wait)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not errors.error_info_of(exc):
                raise E.RegistryUnavailable(
                    f"the model registry at {self.address} is unavailable ({exc.code().name})",
                    metadata={"registry": self.address},
                ) from None
            raise errors.from_rpc_error(exc) from None

    async def create_model(self, model: model_pb2.Model) -> model_pb2.Model:
        # Only download jobs register: always wait for the registry.
        reply = await self._call(self._stub.CreateModel, registry_pb2.CreateModelRequest(model=model), CREATE_TIMEOUT,
                                 wait=True)
        return reply.model

    async def get_model(self, filename: str, *, wait: bool = False) -> model_pb2.Model:
        reply = await self._call(self._stub.GetModel, registry_pb2.GetModelRequest(filename=filename), wait=wait)
        return reply.model

    async def find_model(self, filename: str, *, wait: bool = False) -> model_pb2.Model | None:
        try:
            return await self.get_model(filename, wait=wait)
        except errors.NotFound:
            return None
        except errors.InvalidArgument:
            return None

    async def iter_models(self, model_type: int = model_pb2.MODEL_TYPE_UNSPECIFIED, *,
                          wait: bool = False) -> AsyncIterator[model_pb2.Model]:
        token = ""
        while True:
            reply = await self._call(
                self._stub.ListModels, registry_pb2.ListModelsRequest(page_size=1000, page_token=token, type=model_type),
                wait=wait,
            )
            for model in reply.models:
                yield model
            token = reply.next_page_token
            if not token:
                return

    async def find_by_sha256(self, sha256: str, *, wait: bool = False) -> model_pb2.Model | None:
        sha256 = sha256.lower()
        async for model in self.iter_models(wait=wait):
            if model.sha256 and model.sha256.lower() == sha256:
                return model
        return None

    async def civitai_models(self) -> list[model_pb2.Model]:
        return [m async for m in self.iter_models() if m.civitai_model_id]
