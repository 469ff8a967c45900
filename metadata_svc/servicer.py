"""ModelRegistryService over gRPC: protobuf in, Registry call, protobuf out. No rules live here
(Upload's header is held to limits.py on its way to uploads.py, before any chunk is read)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from metadata_svc import limits
from metadata_svc.errors import InvalidType
from metadata_svc.models import PROTO_TO_TYPE
from metadata_svc.registry import Registry
from metadata_svc.uploads import receive_upload
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc


class RegistryServicer(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def ListModels(self, request, context):
        if request.type and request.type not in PROTO_TO_TYPE:
            raise InvalidType(f"unknown model type {request.type}",
                              metadata={"type": request.type})
        page, token, total = self.registry.list(
            page_size=request.page_size,
            page_token=request.page_token,
            kind=PROTO_TO_TYPE.get(request.type),
            base_model=request.base_model,
            query=request.query,
        )
        to_proto = self.registry.to_proto
        return registry_pb2.ListModelsResponse(
            models=[to_proto(e) for e in page], next_page_token=token, total_size=total
        )

    async def GetModel(self, request, context):
        return registry_pb2.GetModelResponse(model=self.registry.to_proto(self.registry.get(request.filename)))

    async def CreateModel(self, request, context):
        entry = await self.registry.create(request.model)
        return registry_pb2.CreateModelResponse(model=self.registry.to_proto(entry))

    async def UpdateModel(self, request, context):
        entry = await self.registry.update(request.model, list(request.update_mask.paths))
        return registry_pb2.UpdateModelResponse(model=self.registry.to_proto(entry))

    async def DeleteModel(self, request, context):
        entry = await self.registry.delete(request.filename, request.keep_file)
        return registry_pb2.DeleteModelResponse(model=self.registry.to_proto(entry))

    async def UploadModel(self, request_iterator, context):
        entry = await receive_upload(self.registry, _header_checked(request_iterator), context.cancelled)
        return registry_pb2.UploadModelResponse(model=self.registry.to_proto(entry))

    async def GetActiveCheckpoint(self, request, context):
        name, path, entry, present = self.registry.active_checkpoint()
        return registry_pb2.GetActiveCheckpointResponse(
            checkpoint=name, path=str(path), model=self._model_or_none(entry), file_present=present
        )

    async def SetActiveCheckpoint(self, request, context):
        name, path, entry, present = await self.registry.set_active_checkpoint(request.checkpoint)
        return registry_pb2.SetActiveCheckpointResponse(
            checkpoint=name, path=str(path), model=self._model_or_none(entry), file_present=present
        )

    async def ComposePrompt(self, request, context):
        selections = [(s.name, s.weight if s.HasField("weight") else None) for s in request.loras]
        composed = self.registry.compose_prompt(request.prompt, selections)
        return registry_pb2.ComposePromptResponse(
            prompt=composed.prompt,
            injected_trigger_words=composed.injected,
            loras=[
                model_pb2.ResolvedLora(
                    filename=e.filename, path=str(path), weight=weight, trigger_words=e.trigger_words,
                    display_name=e.display_name, base_model=e.base_model, sha256=e.sha256,
                )
                for e, path, weight in composed.loras
            ],
        )

    async def RescanModels(self, request, context):
        report = await self.registry.rescan()
        return registry_pb2.RescanModelsResponse(
            added=[self.registry.to_proto(e) for e in report.added],
            missing_filenames=report.missing,
            skipped=[registry_pb2.RescanSkippedFile(path=p, reason=r) for p, r in report.skipped],
        )

    def _model_or_none(self, entry):
        return self.registry.to_proto(entry) if entry is not None else None


async def _header_checked(requests: AsyncIterator[registry_pb2.UploadModelRequest]
                          ) -> AsyncIterator[registry_pb2.UploadModelRequest]:
    """The upload stream, its header's fields held to the limits before a single chunk is read."""
    first = True
    async for message in requests:
        if first and message.WhichOneof("payload") == "header":
            limits.check_fields(limits.fields_of(message.header))
        first = False
        yield message
