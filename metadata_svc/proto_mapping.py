"""Protobuf <-> the registry's own types (models.py), for the servicer and the upload stream."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import timestamp_pb2

from metadata_svc.models import CHECKPOINT, LORA, Inspection, ModelEntry, ModelFields, NewModel, ResolvedLora
from modelmanager.v1 import model_pb2, registry_pb2

TYPE_TO_PROTO = {LORA: model_pb2.MODEL_TYPE_LORA, CHECKPOINT: model_pb2.MODEL_TYPE_CHECKPOINT}
PROTO_TO_TYPE = {v: k for k, v in TYPE_TO_PROTO.items()}
SOURCES = {
    "local": model_pb2.MODEL_SOURCE_LOCAL,
    "civitai": model_pb2.MODEL_SOURCE_CIVITAI,
    "upload": model_pb2.MODEL_SOURCE_UPLOAD,
    "builtin": model_pb2.MODEL_SOURCE_BUILTIN,
}
PROTO_TO_SOURCE = {v: k for k, v in SOURCES.items()}


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
    )
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
