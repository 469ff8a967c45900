"""Metadata lookups: a reference, a hash or a search turned into `CivitaiModelInfo` (update checks: updates.py).

A version reference needs two calls: `/model-versions/{id}` (files with a
reliable `primary`, trained words, images) and `/models/{modelId}` (tags,
creator, the list of versions). Both are cached by the API client. The
version answer may lack `modelId` (an old API drift), so the model call is
best-effort.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from civitai_svc import errors as E
from civitai_svc.api_client import CivitaiApi
from civitai_svc.metadata import SEARCH_TYPES, build_info, select_file
from civitai_svc.references import Kind, Reference
from civitai_svc.registry_client import RegistryClient
from modelmanager.v1 import civitai_pb2
from service_kit import errors
from service_kit.logs import get_logger

log = get_logger("civitai_svc.catalog")

SORTS = ("Highest Rated", "Most Downloaded", "Most Liked", "Most Discussed", "Most Collected", "Most Images",
         "Newest", "Oldest")
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")


class Catalog:
    def __init__(self, api: CivitaiApi, registry: RegistryClient) -> None:
        self.api = api
        self.registry = registry

    async def _with_model(self, version: dict[str, Any], ref: Reference, token: str | None) -> civitai_pb2.CivitaiModelInfo:
        model_id = version.get("modelId") or (version.get("model") or {}).get("id") or ref.model_id
        model = None
        if model_id:
            try:
                model = await self.api.get_model(int(model_id), token)
            except (E.CivitaiNotFound, E.CivitaiForbidden):
                model = None
        if model is not None and "modelId" not in version:
            version = {**version, "modelId": model_id}
        return build_info(model, version, file_id=ref.file_id, wanted=ref.file_filter)

    async def lookup(self, ref: Reference, token: str | None = None) -> civitai_pb2.CivitaiModelInfo:
        """The info of what `ref` names (a model's latest version unless a version or a file is named).

        A reference that names a file (id, or a download URL's type/format/size/fp) gets that file
        or an error saying why not (FILE_NOT_FOUND, NO_MODEL_FILE for training data), never
        another file of the version."""
        if ref.kind is Kind.MODEL:
            model = await self.api.get_model(ref.model_id, token)
            if not model.get("modelVersions") and model.get("mode") is None:
                raise E.CivitaiNotFound(f"model {ref.model_id} has no published version",
                                        metadata={"model_id": ref.model_id})
            # An AIR `civitai:{model}+{file}` without a version: the version that has the file.
            version = _version_with_file(model, ref.file_id) if ref.file_id else None
            info = build_info(model, version, file_id=ref.file_id, wanted=ref.file_filter)
        else:
            if ref.kind is Kind.VERSION:
                version = await self.api.get_version(ref.version_id, token)
            else:
                version = await self.api.get_version_by_hash(ref.hash, token)
                # The hash names one file of the version: that one, not the version's preferred file.
                ref = replace(ref, file_id=ref.file_id or _file_with_hash(version, ref.hash))
            info = await self._with_model(version, ref, token)
        if (ref.file_id or ref.file_filter) and not info.mode:  # archived: no files; StartDownload says so
            select_file(info.files, version_id=info.version_id, file_id=ref.file_id, wanted=ref.file_filter)
        return info

    async def mark_installed(self, info: civitai_pb2.CivitaiModelInfo) -> None:
        """Fill `installed_filename` when this version (or the same file) is in the registry."""
        try:
            async for model in self.registry.iter_models():
                same_version = info.version_id and model.civitai_version_id == info.version_id
                same_file = info.file.sha256 and model.sha256.lower() == info.file.sha256.lower()
                if same_version or same_file:
                    info.installed_filename = model.filename
                    return
        except errors.ServiceError as exc:  # the registry being down must not hide CivitAI's answer
            log.warning("registry.lookup_failed", reason=exc.reason, error=exc.message)

    async def search(self, request: civitai_pb2.SearchModelsRequest) -> civitai_pb2.SearchModelsResponse:
        if request.sort and request.sort not in SORTS:
            raise E.InvalidSort(f"unknown sort {request.sort!r}; one of {', '.join(SORTS)}",
                                metadata={"sort": request.sort})
        if request.period and request.period not in PERIODS:
            raise E.InvalidPeriod(f"unknown period {request.period!r}; one of {', '.join(PERIODS)}",
                                  metadata={"period": request.period})
        if request.page_size < 0:
            raise E.InvalidPageSize("page_size must not be negative")
        limit = min(request.page_size or 20, 100)
        params: list[tuple[str, str]] = [("limit", str(limit))]
        if request.query.strip():
            params.append(("query", request.query.strip()))
        # `types` must be repeated, not comma-separated (the schema does not split them).
        params += [("types", t) for t in (request.types or SEARCH_TYPES)]
        params += [("baseModels", b) for b in request.base_models]
        if request.sort:
            params.append(("sort", request.sort))
        if request.period:
            params.append(("period", request.period))
        params.append(("nsfw", "true" if request.nsfw else "false"))
        if request.page_token:
            params.append(("cursor", request.page_token))
        data = await self.api.search(params, request.token or None)
        reply = civitai_pb2.SearchModelsResponse()
        for item in data.get("items") or []:
            if isinstance(item, dict):
                reply.models.append(build_info(item, None))
        cursor = (data.get("metadata") or {}).get("nextCursor")
        reply.next_page_token = str(cursor) if cursor not in (None, "") else ""
        return reply

    async def identify(self, request: civitai_pb2.IdentifyFileRequest) -> civitai_pb2.IdentifyFileResponse:
        which = request.WhichOneof("selector")
        if which == "filename":
            model = await self.registry.get_model(request.filename)
            sha256 = model.sha256.lower()
            if not sha256:
                raise E.NoSha256(f"the registry has no sha256 for {request.filename}",
                                 metadata={"filename": request.filename})
        elif which == "sha256":
            sha256 = request.sha256.strip().lower()
            if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
                raise E.InvalidSha256("sha256 must be 64 hex characters",
                                      metadata={"sha256": request.sha256[:80]})
        else:
            raise E.MissingSelector("give a filename or a sha256")
        info = await self.lookup(Reference(Kind.HASH, hash=sha256.upper()), request.token or None)
        await self.mark_installed(info)
        return civitai_pb2.IdentifyFileResponse(sha256=sha256, info=info)


def _version_with_file(model: dict[str, Any], file_id: int) -> dict[str, Any] | None:
    for version in model.get("modelVersions") or []:
        if isinstance(version, dict) and any(
            isinstance(f, dict) and f.get("id") == file_id for f in version.get("files") or []
        ):
            return version
    return None


def _file_with_hash(version: dict[str, Any], value: str) -> int:
    """The id of the version's file that has this hash (any type: SHA256, AutoV2, CRC32...), or 0."""
    for f in version.get("files") or []:
        hashes = f.get("hashes") if isinstance(f, dict) else None
        if isinstance(hashes, dict) and value.upper() in {str(h).upper() for h in hashes.values()}:
            return int(f.get("id") or 0)
    return 0
