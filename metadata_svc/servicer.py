"""ModelRegistryService over gRPC: protobuf in, Registry call, protobuf out (see proto_mapping.py).
No rules live here (Upload's header is held to limits.py on its way to uploads.py, before any chunk
is read)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from metadata_svc import limits
from metadata_svc import proto_mapping as pm
from metadata_svc.errors import InvalidType
from metadata_svc.file_reads import FileReads
from metadata_svc.library import RootView
from metadata_svc.models import ActiveCheckpointState, ModelEntry
from metadata_svc.registry import Registry
from metadata_svc.uploads import receive_upload
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc


class RegistryServicer(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.file_reads = FileReads(registry.catalog, registry.volume)

    async def ListModels(self, request: registry_pb2.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> registry_pb2.ListModelsResponse:
        if request.type and request.type not in pm.PROTO_TO_TYPE:
            raise InvalidType(f"unknown model type {request.type}", metadata={"type": request.type})
        page = self.registry.list(
            page_size=request.page_size,
            page_token=request.page_token,
            kind=pm.PROTO_TO_TYPE.get(request.type),
            base_model=request.base_model,
            query=request.query,
            root_id=request.root_id,
            folder=request.folder,
        )
        model = self._model
        return registry_pb2.ListModelsResponse(
            models=[model(e) for e in page.entries], next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def GetModel(self, request: registry_pb2.GetModelRequest,
                       context: grpc.aio.ServicerContext) -> registry_pb2.GetModelResponse:
        return registry_pb2.GetModelResponse(model=self._model(self.registry.get(request.filename)))

    async def CreateModel(self, request: registry_pb2.CreateModelRequest,
                          context: grpc.aio.ServicerContext) -> registry_pb2.CreateModelResponse:
        entry = await self.registry.create(pm.new_model(request.model))
        return registry_pb2.CreateModelResponse(model=self._model(entry))

    async def UpdateModel(self, request: registry_pb2.UpdateModelRequest,
                          context: grpc.aio.ServicerContext) -> registry_pb2.UpdateModelResponse:
        entry = await self.registry.update(request.model.filename, pm.model_fields(request.model),
                                           list(request.update_mask.paths))
        return registry_pb2.UpdateModelResponse(model=self._model(entry))

    async def DeleteModel(self, request: registry_pb2.DeleteModelRequest,
                          context: grpc.aio.ServicerContext) -> registry_pb2.DeleteModelResponse:
        entry = await self.registry.delete(request.filename, request.keep_file, request.delete_file)
        return registry_pb2.DeleteModelResponse(model=self._model(entry))

    async def UploadModel(self, request_iterator: AsyncIterator[registry_pb2.UploadModelRequest],
                          context: grpc.aio.ServicerContext) -> registry_pb2.UploadModelResponse:
        entry = await receive_upload(self.registry, _header_checked(request_iterator), context.cancelled)
        return registry_pb2.UploadModelResponse(model=self._model(entry))

    async def GetActiveCheckpoint(
        self, request: registry_pb2.GetActiveCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetActiveCheckpointResponse:
        active = self.registry.active_checkpoint()
        return registry_pb2.GetActiveCheckpointResponse(
            checkpoint=active.name, path=str(active.path), model=self._model_or_none(active),
            file_present=active.file_present,
        )

    async def SetActiveCheckpoint(
        self, request: registry_pb2.SetActiveCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.SetActiveCheckpointResponse:
        active = await self.registry.set_active_checkpoint(request.checkpoint)
        return registry_pb2.SetActiveCheckpointResponse(
            checkpoint=active.name, path=str(active.path), model=self._model_or_none(active),
            file_present=active.file_present,
        )

    async def ComposePrompt(self, request: registry_pb2.ComposePromptRequest,
                            context: grpc.aio.ServicerContext) -> registry_pb2.ComposePromptResponse:
        selections = [(s.name, s.weight if s.HasField("weight") else None) for s in request.loras]
        composed = self.registry.compose_prompt(request.prompt, selections)
        return registry_pb2.ComposePromptResponse(
            prompt=composed.prompt,
            injected_trigger_words=composed.injected,
            loras=[pm.resolved_lora(lora) for lora in composed.loras],
        )

    async def RescanModels(self, request: registry_pb2.RescanModelsRequest,
                           context: grpc.aio.ServicerContext) -> registry_pb2.RescanModelsResponse:
        report = await self.registry.rescan()
        return registry_pb2.RescanModelsResponse(
            added=[self._model(e) for e in report.added],
            missing_filenames=report.missing,
            skipped=[registry_pb2.RescanSkippedFile(path=s.path, reason=s.reason) for s in report.skipped],
        )

    # ------------------------------------------------------------------ library roots and imports

    async def AddLibraryRoot(self, request: registry_pb2.AddLibraryRootRequest,
                             context: grpc.aio.ServicerContext) -> registry_pb2.AddLibraryRootResponse:
        view = self.registry.library.add_root(request.path, write_back=request.write_back)
        return registry_pb2.AddLibraryRootResponse(root=pm.root_message(view))

    async def ListLibraryRoots(self, request: registry_pb2.ListLibraryRootsRequest,
                               context: grpc.aio.ServicerContext) -> registry_pb2.ListLibraryRootsResponse:
        return registry_pb2.ListLibraryRootsResponse(
            roots=[pm.root_message(v) for v in self.registry.library.list_roots()])

    async def RemoveLibraryRoot(self, request: registry_pb2.RemoveLibraryRootRequest,
                                context: grpc.aio.ServicerContext) -> registry_pb2.RemoveLibraryRootResponse:
        root, removed = await self.registry.library.remove_root(request.id)
        return registry_pb2.RemoveLibraryRootResponse(root=pm.root_message(RootView(root, 0)), removed_models=removed)

    async def StartImport(self, request: registry_pb2.StartImportRequest,
                          context: grpc.aio.ServicerContext) -> registry_pb2.StartImportResponse:
        job = self.registry.library.start_import(
            path=request.path, root_id=request.root_id, mode=pm.import_mode(request.mode),
            no_identify=request.no_identify, write_back=request.write_back, force_identify=request.force_identify)
        return registry_pb2.StartImportResponse(job=pm.import_message(job))

    async def GetImport(self, request: registry_pb2.GetImportRequest,
                        context: grpc.aio.ServicerContext) -> registry_pb2.GetImportResponse:
        return registry_pb2.GetImportResponse(job=pm.import_message(self.registry.library.jobs.get(request.id)))

    async def WatchImport(self, request: registry_pb2.WatchImportRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[registry_pb2.WatchImportResponse]:
        async for job in self.registry.library.watch(request.id):
            yield registry_pb2.WatchImportResponse(job=pm.import_message(job))

    async def ListImports(self, request: registry_pb2.ListImportsRequest,
                          context: grpc.aio.ServicerContext) -> registry_pb2.ListImportsResponse:
        return registry_pb2.ListImportsResponse(jobs=[pm.import_message(j) for j in self.registry.library.jobs.list()])

    async def CancelImport(self, request: registry_pb2.CancelImportRequest,
                           context: grpc.aio.ServicerContext) -> registry_pb2.CancelImportResponse:
        return registry_pb2.CancelImportResponse(job=pm.import_message(self.registry.library.jobs.cancel(request.id)))

    async def RefreshFromCivitai(self, request: registry_pb2.RefreshFromCivitaiRequest,
                                 context: grpc.aio.ServicerContext) -> registry_pb2.RefreshFromCivitaiResponse:
        refreshed = await self.registry.library.refresh(list(request.filenames), force=request.force)
        return registry_pb2.RefreshFromCivitaiResponse(models=[self._model(e) for e in refreshed])

    async def GetPreview(self, request: registry_pb2.GetPreviewRequest,
                         context: grpc.aio.ServicerContext) -> registry_pb2.GetPreviewResponse:
        thumb, info = self.registry.library.get_preview(request.filename)
        return registry_pb2.GetPreviewResponse(image=thumb.data, preview=pm.preview_message(info))

    async def SetPreview(self, request: registry_pb2.SetPreviewRequest,
                         context: grpc.aio.ServicerContext) -> registry_pb2.SetPreviewResponse:
        info = await self.registry.library.set_preview(request.filename, request.image,
                                                       nsfw_level=request.nsfw_level, source=request.source)
        return registry_pb2.SetPreviewResponse(preview=pm.preview_message(info))

    # ------------------------------------------------------------------ library health and bulk edits

    async def ListDuplicates(self, request: registry_pb2.ListDuplicatesRequest,
                             context: grpc.aio.ServicerContext) -> registry_pb2.ListDuplicatesResponse:
        return pm.duplicates_message(await self.registry.duplicates(), self._model)

    async def GetDiskUsage(self, request: registry_pb2.GetDiskUsageRequest,
                           context: grpc.aio.ServicerContext) -> registry_pb2.GetDiskUsageResponse:
        return pm.disk_usage_message(await self.registry.disk_usage(request.biggest), self._model)

    async def BatchUpdateTags(self, request: registry_pb2.BatchUpdateTagsRequest,
                              context: grpc.aio.ServicerContext) -> registry_pb2.BatchUpdateTagsResponse:
        changed = await self.registry.update_tags(list(request.filenames), list(request.add_tags),
                                                  list(request.remove_tags))
        return registry_pb2.BatchUpdateTagsResponse(models=[self._model(e) for e in changed])

    async def ReadModelFile(self, request: registry_pb2.ReadModelFileRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[registry_pb2.ReadModelFileResponse]:
        async for chunk in self.file_reads.read(request.sha256, request.offset):
            yield registry_pb2.ReadModelFileResponse(chunk=chunk.data, offset=chunk.offset,
                                                     total_size=chunk.total_size)

    def _model(self, entry: ModelEntry) -> model_pb2.Model:
        volume = self.registry.volume
        path = volume.path_of(entry)
        return pm.model_message(entry, path, volume.present(path))

    def _model_or_none(self, active: ActiveCheckpointState) -> model_pb2.Model | None:
        return self._model(active.entry) if active.entry is not None else None


async def _header_checked(requests: AsyncIterator[registry_pb2.UploadModelRequest]
                          ) -> AsyncIterator[registry_pb2.UploadModelRequest]:
    """The upload stream, its header's fields held to the limits before a single chunk is read."""
    first = True
    async for message in requests:
        if first and message.WhichOneof("payload") == "header":
            limits.check_fields(limits.fields_of(message.header))
        first = False
        yield message
