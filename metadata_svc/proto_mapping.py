"""Protobuf <-> the registry's own types (models.py), for the servicer and the upload stream."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import timestamp_pb2

from metadata_svc.disk_usage import DiskUsage
from metadata_svc.duplicates import DuplicateReport
from metadata_svc.import_jobs import ImportJob, ImportMode, ImportState
from metadata_svc.library import RootView
from metadata_svc.models import (
    CHECKPOINT,
    EMBEDDING,
    LOOKUP_FAILED,
    LOOKUP_FOUND,
    LOOKUP_NOT_FOUND,
    LOOKUP_PENDING,
    LORA,
    UPSCALER,
    VAE,
    Inspection,
    ModelEntry,
    ModelFields,
    NewModel,
    PreviewInfo,
    ResolvedLora,
)
from modelmanager.v1 import model_pb2, registry_pb2

TYPE_TO_PROTO = {LORA: model_pb2.MODEL_TYPE_LORA, CHECKPOINT: model_pb2.MODEL_TYPE_CHECKPOINT,
                 EMBEDDING: model_pb2.MODEL_TYPE_EMBEDDING, VAE: model_pb2.MODEL_TYPE_VAE,
                 UPSCALER: model_pb2.MODEL_TYPE_UPSCALER}
PROTO_TO_TYPE = {v: k for k, v in TYPE_TO_PROTO.items()}
SOURCES = {
    "local": model_pb2.MODEL_SOURCE_LOCAL,
    "civitai": model_pb2.MODEL_SOURCE_CIVITAI,
    "upload": model_pb2.MODEL_SOURCE_UPLOAD,
    "builtin": model_pb2.MODEL_SOURCE_BUILTIN,
}
PROTO_TO_SOURCE = {v: k for k, v in SOURCES.items()}
LOOKUPS = {
    LOOKUP_PENDING: model_pb2.CIVITAI_LOOKUP_STATE_PENDING,
    LOOKUP_FOUND: model_pb2.CIVITAI_LOOKUP_STATE_FOUND,
    LOOKUP_NOT_FOUND: model_pb2.CIVITAI_LOOKUP_STATE_NOT_FOUND,
    LOOKUP_FAILED: model_pb2.CIVITAI_LOOKUP_STATE_FAILED,
}
MODES = {
    ImportMode.IN_PLACE: registry_pb2.IMPORT_MODE_IN_PLACE,
    ImportMode.LINK: registry_pb2.IMPORT_MODE_LINK,
    ImportMode.COPY: registry_pb2.IMPORT_MODE_COPY,
}
PROTO_TO_MODE = {v: k.value for k, v in MODES.items()}
STATES = {
    ImportState.QUEUED: registry_pb2.IMPORT_STATE_QUEUED,
    ImportState.SCANNING: registry_pb2.IMPORT_STATE_SCANNING,
    ImportState.HASHING: registry_pb2.IMPORT_STATE_HASHING,
    ImportState.IDENTIFYING: registry_pb2.IMPORT_STATE_IDENTIFYING,
    ImportState.SUCCEEDED: registry_pb2.IMPORT_STATE_SUCCEEDED,
    ImportState.FAILED: registry_pb2.IMPORT_STATE_FAILED,
    ImportState.CANCELLED: registry_pb2.IMPORT_STATE_CANCELLED,
}


def import_mode(mode: int) -> str:
    """StartImportRequest.mode as the domain's name; "" for unspecified, the number for an unknown one."""
    if mode == registry_pb2.IMPORT_MODE_UNSPECIFIED:
        return ""
    return PROTO_TO_MODE.get(mode, str(mode))


# ---------------------------------------------------------------- in


def model_fields(message: model_pb2.Model | registry_pb2.UploadModelHeader) -> ModelFields:
    """The client-settable fields of a Model or an UploadModelHeader (they share the names)."""
    return ModelFields(
        display_name=message.display_name,
        short_name=message.short_name,
        trigger_words=tuple(message.trigger_words),
        recommended_weight=message.recommended_weight,
        base_model=message.base_model,
        tags=tuple(message.tags),
        description=message.description,
        civitai_model_id=message.civitai_model_id,
        civitai_version_id=message.civitai_version_id,
        civitai_url=message.civitai_url,
        # Model only (an upload's header has neither).
        default_vae=getattr(message, "default_vae", ""),
        negative_embedding=getattr(message, "negative_embedding", False),
    )


def new_model(model: model_pb2.Model) -> NewModel:
    """CreateModel's model."""
    return NewModel(filename=model.filename, type=PROTO_TO_TYPE.get(model.type, ""), fields=model_fields(model),
                    source=PROTO_TO_SOURCE.get(model.source) or "local", sha256=model.sha256)


def uploaded_model(header: registry_pb2.UploadModelHeader) -> NewModel:
    """UploadModel's header (its expected_sha256 is checked while the bytes stream, see uploads.py)."""
    return NewModel(filename=header.filename, type=PROTO_TO_TYPE.get(header.type, ""),
                    fields=model_fields(header), source="upload")


# ---------------------------------------------------------------- out


def model_message(entry: ModelEntry, path: Path, file_present: bool) -> model_pb2.Model:
    """A new message; the conversion is done once per entry and copied after that."""
    model = model_pb2.Model()
    model.CopyFrom(_cached_message(entry, path))
    model.file_present = file_present
    return model


def wire_size(entry: ModelEntry, path: Path) -> int:
    """Bytes this entry adds to a ListModelsResponse, computed once: the message, its
    file_present (2 bytes) and the repeated field's tag and length prefix (at most 6)."""
    return entry.cached(f"wire_size:{path}", lambda: int(_cached_message(entry, path).ByteSize()) + 8)


def resolved_lora(lora: ResolvedLora) -> model_pb2.ResolvedLora:
    e = lora.entry
    return model_pb2.ResolvedLora(filename=e.filename, path=str(lora.path), weight=lora.weight,
                                  trigger_words=e.trigger_words, display_name=e.display_name,
                                  base_model=e.base_model, sha256=e.sha256)


def preview_message(info: PreviewInfo) -> model_pb2.ModelPreview:
    return model_pb2.ModelPreview(sha256=info.sha256, content_type=info.content_type, width=info.width,
                                  height=info.height, nsfw_level=info.nsfw_level, source=info.source)


def root_message(view: RootView) -> registry_pb2.LibraryRoot:
    root = view.root
    message = registry_pb2.LibraryRoot(id=root.id, path=str(root.path), write_back=root.write_back,
                                       model_count=view.model_count, from_flag=root.from_flag)
    _set_time(message.added_at, root.added_at)
    return message


def import_message(job: ImportJob) -> registry_pb2.ImportJob:
    message = registry_pb2.ImportJob(
        id=job.id, root_id=job.root_id, path=str(job.path), mode=MODES[job.mode], state=STATES[job.state],
        files_seen=job.files_seen, models_found=job.models_found, registered=job.registered,
        already_known=job.already_known, missing=job.missing, files_hashed=job.files_hashed,
        files_to_hash=job.files_to_hash, bytes_hashed=job.bytes_hashed, bytes_to_hash=job.bytes_to_hash,
        identified=job.identified, not_on_civitai=job.not_on_civitai, identify_failed=job.identify_failed,
        skipped=[registry_pb2.RescanSkippedFile(path=s.path, reason=s.reason) for s in job.skipped],
        error=job.error, error_reason=job.error_reason, identify_note=job.identify_note,
    )
    _set_time(message.created_at, job.created_at)
    _set_time(message.finished_at, job.finished_at)
    return message


def _set_time(field: timestamp_pb2.Timestamp, iso: str) -> None:
    if iso:
        try:
            field.CopyFrom(_timestamp(iso))
        except ValueError:
            pass


def inspection_message(found: Inspection) -> model_pb2.FileInspection:
    return model_pb2.FileInspection(
        format=found.format,
        detected_type=found.detected_type,
        architecture=found.architecture,
        lora_format=found.lora_format,
        tensor_count=found.tensor_count,
        header_metadata=found.header_metadata,
    )


def _cached_message(entry: ModelEntry, path: Path) -> model_pb2.Model:
    return entry.cached(f"proto:{path}", lambda: _build_message(entry, path))


def _build_message(entry: ModelEntry, path: Path) -> model_pb2.Model:
    model = model_pb2.Model(
        filename=entry.filename,
        type=TYPE_TO_PROTO[entry.type],
        display_name=entry.display_name,
        short_name=entry.short_name,
        source=SOURCES.get(entry.source, model_pb2.MODEL_SOURCE_UNSPECIFIED),
        trigger_words=entry.trigger_words,
        recommended_weight=entry.recommended_weight,
        base_model=entry.base_model,
        tags=entry.tags,
        description=entry.description,
        file_size_bytes=entry.file_size_bytes,
        civitai_model_id=entry.civitai_model_id or 0,
        civitai_version_id=entry.civitai_version_id or 0,
        civitai_url=entry.civitai_url,
        sha256=entry.sha256,
        path=str(path),
        root_id=entry.root_id,
        folder=entry.folder,
        file_name=entry.disk_name,
        nsfw_level=entry.nsfw_level,
        autov2=entry.sha256[:10].upper(),
        autov3=entry.autov3[:12].upper(),
        user_edited_fields=entry.user_edited_fields,
        civitai_version_name=entry.civitai_version_name,
        notes=entry.notes,
        default_vae=entry.default_vae,
        embedding_token=entry.embedding_token,
        negative_embedding=entry.negative_embedding,
    )
    if entry.preview is not None:
        model.preview.CopyFrom(preview_message(entry.preview))
    if entry.civitai_lookup in LOOKUPS:
        model.civitai_lookup.state = LOOKUPS[entry.civitai_lookup]
        _set_time(model.civitai_lookup.checked_at, entry.civitai_checked_at)
    if entry.added_at:
        try:
            model.added_at.CopyFrom(_timestamp(entry.added_at))
        except ValueError:
            pass  # a hand-edited date that does not parse is shown as unset, not an error
    if entry.inspection is not None:
        model.inspection.CopyFrom(inspection_message(entry.inspection))
    return model


def _timestamp(iso: str) -> timestamp_pb2.Timestamp:
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def duplicates_message(report: DuplicateReport,
                       model: Callable[[ModelEntry], model_pb2.Model]) -> registry_pb2.ListDuplicatesResponse:
    return registry_pb2.ListDuplicatesResponse(
        groups=[registry_pb2.DuplicateGroup(
            sha256=g.sha256, size_bytes=g.size_bytes, reclaimable_bytes=g.reclaimable_bytes,
            entries=[registry_pb2.DuplicateEntry(model=model(e), file_number=n) for e, n in g.entries],
        ) for g in report.groups],
        reclaimable_bytes=report.reclaimable_bytes, unhashed=report.unhashed,
    )


def disk_usage_message(usage: DiskUsage,
                       model: Callable[[ModelEntry], model_pb2.Model]) -> registry_pb2.GetDiskUsageResponse:
    return registry_pb2.GetDiskUsageResponse(
        by_type=[registry_pb2.TypeDiskUsage(type=TYPE_TO_PROTO[kind], bytes=u.bytes, model_count=u.model_count)
                 for kind, u in usage.by_type.items() if kind in TYPE_TO_PROTO],
        by_root=[registry_pb2.RootDiskUsage(root_id=r.root_id, path=r.path, bytes=r.usage.bytes,
                                            model_count=r.usage.model_count, free_bytes=r.free_bytes,
                                            filesystem_bytes=r.filesystem_bytes) for r in usage.by_root],
        biggest=[model(e) for e in usage.biggest],
        total_bytes=usage.total.bytes, model_count=usage.total.model_count, missing_count=usage.missing_count,
        volume_free_bytes=usage.volume_free_bytes, volume_total_bytes=usage.volume_total_bytes,
    )
