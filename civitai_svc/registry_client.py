"""The few registry calls this service makes, over gRPC.

Failures follow service_kit.peer's rule: a registry that does not answer is
UNAVAILABLE / REGISTRY_UNAVAILABLE; its own errors keep their code, reason and domain.

Calls made for a user's request fail fast when the registry is down. Calls made
by a running download job pass `wait=True` (gRPC wait-for-ready, up to the call's
deadline): a registry that restarts, or starts after this service, must not fail
a job and throw away gigabytes already downloaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import field_mask_pb2

from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import errors, insecure_channel
from service_kit.peer import DEFAULT_DEADLINE, Peer, paged

CALL_TIMEOUT = DEFAULT_DEADLINE
# How long a download job waits for a registry that is down before it gives up.
JOB_WAIT_TIMEOUT = 120.0
# CreateModel may hash and inspect a multi-GB file when it must; give it time.
CREATE_TIMEOUT = 600.0


class RegistryClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self._peer = Peer("registry", insecure_channel(address), address=address, deadline=CALL_TIMEOUT)
        self._stub = registry_pb2_grpc.ModelRegistryServiceStub(self._peer.channel)

    async def aclose(self) -> None:
        await self._peer.close()

    async def _call(self, method: Any, request: Any, deadline: float = CALL_TIMEOUT, wait: bool = False) -> Any:
        if wait:
            deadline = max(deadline, JOB_WAIT_TIMEOUT)
        return await self._peer.call(method, request, deadline=deadline, wait_for_ready=wait)

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
        request = registry_pb2.ListModelsRequest(page_size=1000, type=model_type)
        async for model in paged(lambda r: self._call(self._stub.ListModels, r, wait=wait), request, "models"):
            yield model

    async def find_by_sha256(self, sha256: str, *, wait: bool = False) -> model_pb2.Model | None:
        sha256 = sha256.lower()
        async for model in self.iter_models(wait=wait):
            if model.sha256 and model.sha256.lower() == sha256:
                return model
        return None

    async def set_preview(self, filename: str, image: bytes, *, nsfw_level: int = 0,
                          source: str = "civitai") -> model_pb2.ModelPreview | None:
        """Store a model's preview (the registry decodes and re-encodes it again); None from a registry
        that has no SetPreview yet (UNIMPLEMENTED): no preview, nothing wrong. Fails fast: a preview is not
        worth holding a finished download for."""
        request = registry_pb2.SetPreviewRequest(filename=filename, image=image, nsfw_level=nsfw_level, source=source)
        try:
            reply = await self._call(self._stub.SetPreview, request)
        except errors.Unimplemented:
            return None
        return reply.preview

    async def update_model(self, model: model_pb2.Model, fields: list[str], *, wait: bool = False) -> model_pb2.Model:
        """UpdateModel of the named editable fields (the registry records them as the user's edits)."""
        request = registry_pb2.UpdateModelRequest(model=model, update_mask=field_mask_pb2.FieldMask(paths=fields))
        reply = await self._call(self._stub.UpdateModel, request, wait=wait)
        return reply.model

    async def delete_model(self, filename: str, *, delete_file: bool = True, wait: bool = False) -> model_pb2.Model:
        """DeleteModel of the entry and its file (a library root's file too, with delete_file)."""
        request = registry_pb2.DeleteModelRequest(filename=filename, delete_file=delete_file)
        reply = await self._call(self._stub.DeleteModel, request, wait=wait)
        return reply.model

    async def civitai_models(self) -> list[model_pb2.Model]:
        return [m async for m in self.iter_models() if m.civitai_model_id]
