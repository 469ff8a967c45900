"""The gRPC face of the service: requests in, domain calls, responses out. No logic of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import grpc

from civitai_svc import errors as E
from civitai_svc.catalog import Catalog
from civitai_svc.identify import Identifier
from civitai_svc.installer import Installer, Plan, file_keys, prepare
from civitai_svc.jobs import JobManager, State
from civitai_svc.metadata import ensure_supported
from civitai_svc.references import FileFilter, Kind, Reference, parse_reference
from civitai_svc.updates import IgnoredUpdates, UpdateChecker, check_replaces
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc
from service_kit.logs import register_secret

_KINDS = {
    Kind.MODEL: civitai_pb2.REFERENCE_KIND_MODEL,
    Kind.VERSION: civitai_pb2.REFERENCE_KIND_VERSION,
    Kind.HASH: civitai_pb2.REFERENCE_KIND_HASH,
}


def reference_proto(ref: Reference) -> civitai_pb2.CivitaiReference:
    return civitai_pb2.CivitaiReference(
        kind=_KINDS[ref.kind], model_id=ref.model_id, version_id=ref.version_id, file_id=ref.file_id,
        hash=ref.hash, host=ref.host, original=ref.original,
    )


def _token(*candidates: str | None) -> str | None:
    for token in candidates:
        if token:
            register_secret(token)  # a per-request token is scrubbed from logs like CIVITAI_TOKEN
            return token
    return None


class CivitaiServicer(civitai_pb2_grpc.CivitaiServiceServicer):
    def __init__(self, catalog: Catalog, installer: Installer, jobs: JobManager, identifier: Identifier,
                 updates: UpdateChecker) -> None:
        self.catalog = catalog
        self.installer = installer
        self.jobs = jobs
        self.identifier = identifier
        self.updates = updates

    @property
    def ignored(self) -> IgnoredUpdates:
        return self.updates.ignored

    async def ParseReference(
        self, request: civitai_pb2.ParseReferenceRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.ParseReferenceResponse:
        ref = parse_reference(request.reference)
        return civitai_pb2.ParseReferenceResponse(reference=reference_proto(ref))

    async def GetModelInfo(
        self, request: civitai_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.GetModelInfoResponse:
        which = request.WhichOneof("selector")
        if which == "reference":
            ref = parse_reference(request.reference)
        elif which == "model_id":
            ref = parse_reference(str(request.model_id))
        elif which == "version_id":
            ref = parse_reference(f"v:{request.version_id}")
        elif which == "sha256":
            ref = parse_reference(f"sha256:{request.sha256.strip()}")
        else:
            raise E.MissingSelector("give a reference, model_id, version_id or sha256")
        info = await self.catalog.lookup(ref, _token(request.token, ref.token))
        ensure_supported(info)
        await self.catalog.mark_installed(info)
        return civitai_pb2.GetModelInfoResponse(info=info)

    async def StartDownload(
        self, request: civitai_pb2.StartDownloadRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.StartDownloadResponse:
        ref = parse_reference(request.reference)
        token = _token(request.token, ref.token)
        if request.file_id:  # an explicit pick; a pasted URL's type/format/size/fp no longer apply
            ref = replace(ref, file_id=request.file_id, file_filter=FileFilter())
        info = await self.catalog.lookup(ref, token)
        if request.replaces:
            await check_replaces(self.installer.registry, request.replaces, info)
        keys = file_keys(info.version_id, info.file) if info.file.id else frozenset()
        running = self.jobs.active_with(keys)  # before prepare: its disk check would count this file twice
        if running is not None:
            return civitai_pb2.StartDownloadResponse(job=running.snapshot())
        planned = await prepare(self.installer, info, token)
        proto = civitai_pb2.DownloadJob(
            reference=ref.original, model_id=info.model_id, version_id=info.version_id, file_id=info.file.id,
            name=info.name, filename=info.file.name, model_type=info.model_type, total_bytes=info.file.size_bytes,
            replaces=request.replaces, delete_replaced=bool(request.replaces) and request.delete_replaced,
        )
        if isinstance(planned, Plan):
            job = self.jobs.create(proto, planned, planned.keys)  # or the job that a concurrent call started
        else:  # the same sha256 is installed: nothing to fetch
            proto.state = State.DOWNLOAD_STATE_SUCCEEDED
            proto.already_installed = True
            proto.filename = planned.filename
            proto.model.CopyFrom(planned)
            proto.eta_seconds = 0
            job = self.jobs.add_finished(proto)
        return civitai_pb2.StartDownloadResponse(job=job.snapshot())

    async def GetDownload(
        self, request: civitai_pb2.GetDownloadRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.GetDownloadResponse:
        return civitai_pb2.GetDownloadResponse(job=self.jobs.get(request.job_id).snapshot())

    async def WatchDownload(
        self, request: civitai_pb2.WatchDownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[civitai_pb2.WatchDownloadResponse]:
        async for snapshot in self.jobs.watch(request.job_id):
            yield civitai_pb2.WatchDownloadResponse(job=snapshot)

    async def ListDownloads(
        self, request: civitai_pb2.ListDownloadsRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.ListDownloadsResponse:
        if request.page_size < 0:
            raise E.InvalidPageSize("page_size must not be negative")
        size = min(request.page_size or 50, 500)
        try:
            start = int(request.page_token or 0)
        except ValueError:
            raise E.InvalidPageToken("bad page_token") from None
        jobs = self.jobs.list(active_only=request.active_only)
        page = jobs[start : start + size]
        next_token = str(start + size) if start + size < len(jobs) else ""
        return civitai_pb2.ListDownloadsResponse(jobs=[j.snapshot() for j in page], next_page_token=next_token)

    async def CancelDownload(
        self, request: civitai_pb2.CancelDownloadRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.CancelDownloadResponse:
        job = await self.jobs.cancel(request.job_id)
        return civitai_pb2.CancelDownloadResponse(job=job.snapshot())

    async def SearchModels(
        self, request: civitai_pb2.SearchModelsRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.SearchModelsResponse:
        _token(request.token)
        return await self.catalog.search(request)

    async def IdentifyFile(
        self, request: civitai_pb2.IdentifyFileRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.IdentifyFileResponse:
        _token(request.token)
        return await self.catalog.identify(request)

    async def IdentifyFiles(
        self, request: civitai_pb2.IdentifyFilesRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.IdentifyFilesResponse:
        files = await self.identifier.identify(list(request.sha256s), with_previews=request.with_previews,
                                               token=_token(request.token))
        return civitai_pb2.IdentifyFilesResponse(files=files)

    async def CheckUpdates(
        self, request: civitai_pb2.CheckUpdatesRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.CheckUpdatesResponse:
        _token(request.token)
        return await self.updates.check(request)

    async def IgnoreUpdate(
        self, request: civitai_pb2.IgnoreUpdateRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.IgnoreUpdateResponse:
        ignored = await self.ignored.ignore(request.model_id, request.version_id)
        return civitai_pb2.IgnoreUpdateResponse(ignored_version_ids=ignored)

    async def UnignoreUpdate(
        self, request: civitai_pb2.UnignoreUpdateRequest, context: grpc.aio.ServicerContext
    ) -> civitai_pb2.UnignoreUpdateResponse:
        ignored = await self.ignored.unignore(request.model_id, request.version_id)
        return civitai_pb2.UnignoreUpdateResponse(ignored_version_ids=ignored)

