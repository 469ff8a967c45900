"""The index entry and its conversions to JSON and to protobuf.

Field names are the old app's UserModelEntry ones, so `.metadata.json` stays compatible with it.

Entries are treated as immutable values: a change makes a new entry
(`dataclasses.replace`). That lets the index store snapshot the whole index
by copying a dict of references, and lets each entry cache its JSON text.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2

from modelmanager.v1 import model_pb2

LORA = "lora"
CHECKPOINT = "checkpoint"
TYPES = (LORA, CHECKPOINT)
FOLDER_OF_TYPE = {LORA: "loras", CHECKPOINT: "checkpoints"}

TYPE_TO_PROTO = {LORA: model_pb2.MODEL_TYPE_LORA, CHECKPOINT: model_pb2.MODEL_TYPE_CHECKPOINT}
PROTO_TO_TYPE = {v: k for k, v in TYPE_TO_PROTO.items()}
SOURCES = {
    "local": model_pb2.MODEL_SOURCE_LOCAL,
    "civitai": model_pb2.MODEL_SOURCE_CIVITAI,
    "upload": model_pb2.MODEL_SOURCE_UPLOAD,
    "builtin": model_pb2.MODEL_SOURCE_BUILTIN,
}
PROTO_TO_SOURCE = {v: k for k, v in SOURCES.items()}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Inspection:
    """What a safetensors header says about a file (see inspection.py)."""

    format: str = "safetensors"
    detected_type: str = "unknown"
    architecture: str = "unknown"
    lora_format: str = ""
    tensor_count: int = 0
    header_metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inspection:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_proto(self) -> model_pb2.FileInspection:
        return model_pb2.FileInspection(
            format=self.format,
            detected_type=self.detected_type,
            architecture=self.architecture,
            lora_format=self.lora_format,
            tensor_count=self.tensor_count,
            header_metadata=self.header_metadata,
        )


@dataclass(frozen=True)
class ModelEntry:
    filename: str
    type: str
    display_name: str = ""
    short_name: str = ""
    source: str = "local"
    trigger_words: tuple[str, ...] = ()
    recommended_weight: float = 1.0
    base_model: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""
    file_size_bytes: int = 0
    added_at: str = ""
    civitai_model_id: int | None = None
    civitai_version_id: int | None = None
    civitai_url: str = ""
    sha256: str = ""
    inspection: Inspection | None = None
    # Keys of the stored JSON this version does not know; written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # ---- JSON (the `.metadata.json` schema)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            filename=self.filename,
            type=self.type,
            display_name=self.display_name,
            short_name=self.short_name,
            source=self.source,
            trigger_words=list(self.trigger_words),
            recommended_weight=self.recommended_weight,
            base_model=self.base_model,
            tags=list(self.tags),
            description=self.description,
            file_size_bytes=self.file_size_bytes,
            added_at=self.added_at,
            civitai_model_id=self.civitai_model_id,
            civitai_version_id=self.civitai_version_id,
            civitai_url=self.civitai_url,
            sha256=self.sha256,
        )
        if self.inspection is not None:
            data["inspection"] = self.inspection.to_json()
        return data

    def json_line(self) -> bytes:
        """`"filename": {entry}` as UTF-8, computed once (entries never change in place), so
        rewriting a 10,000-entry index is a join of cached lines, not 10,000 json.dumps calls."""
        cached = self.__dict__.get("_json_line")
        if cached is None:
            key = json.dumps(self.filename, ensure_ascii=False)
            body = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
            cached = f"{key}:{body}".encode()
            object.__setattr__(self, "_json_line", cached)
        return cached

    def search_text(self) -> str:
        """Lower-cased text that List's free-text query searches, computed once."""
        cached = self.__dict__.get("_search_text")
        if cached is None:
            parts = [self.display_name, self.short_name, self.filename, *self.tags, *self.trigger_words]
            cached = "\n".join(parts).lower()
            object.__setattr__(self, "_search_text", cached)
        return cached

    def sort_key(self) -> tuple[int, str, str]:
        """List's stable order: type, then display name, then filename."""
        return (0 if self.type == LORA else 1, self.display_name.lower(), self.filename)

    @classmethod
    def from_json(cls, key: str, data: Any) -> ModelEntry:
        """Raises ValueError with a short reason when the stored entry is unusable."""
        if not isinstance(data, dict):
            raise ValueError(f"entry {key!r} is not an object")
        filename = data.get("filename", key)
        if filename != key:
            raise ValueError(f"entry {key!r} has filename {filename!r}")
        kind = data.get("type")
        if kind not in TYPES:
            raise ValueError(f"entry {key!r} has type {kind!r}, expected 'lora' or 'checkpoint'")
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            inspection = data.get("inspection")
            return cls(
                filename=key,
                type=kind,
                display_name=str(data.get("display_name") or Path(key).stem),
                short_name=str(data.get("short_name") or ""),
                source=str(data.get("source") or "local"),
                trigger_words=tuple(str(w) for w in data.get("trigger_words") or ()),
                recommended_weight=float(_or(data.get("recommended_weight"), 1.0)),
                base_model=str(data.get("base_model") or ""),
                tags=tuple(str(t) for t in data.get("tags") or ()),
                description=str(data.get("description") or ""),
                file_size_bytes=int(data.get("file_size_bytes") or 0),
                added_at=str(data.get("added_at") or ""),
                civitai_model_id=_opt_int(data.get("civitai_model_id")),
                civitai_version_id=_opt_int(data.get("civitai_version_id")),
                civitai_url=str(data.get("civitai_url") or ""),
                sha256=str(data.get("sha256") or ""),
                inspection=Inspection.from_json(inspection) if isinstance(inspection, dict) else None,
                extra=extra,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"entry {key!r}: {exc}") from exc

    # ---- protobuf

    def to_proto(self, path: Path, file_present: bool) -> model_pb2.Model:
        """A new message; the conversion is done once per entry and copied after that."""
        model = model_pb2.Model()
        model.CopyFrom(self._cached_proto(path))
        model.file_present = file_present
        return model

    def wire_size(self, path: Path) -> int:
        """Bytes this entry adds to a ListModelsResponse, computed once: the message, its
        file_present (2 bytes) and the repeated field's tag and length prefix (at most 6)."""
        cached = self._cached_proto(path)
        size = self.__dict__.get("_wire_size")
        if size is None:
            size = cached.ByteSize() + 8
            object.__setattr__(self, "_wire_size", size)
        return size

    def _cached_proto(self, path: Path) -> model_pb2.Model:
        cached = self.__dict__.get("_proto")
        if cached is None or cached.path != str(path):
            cached = self._build_proto(path)
            object.__setattr__(self, "_proto", cached)
            self.__dict__.pop("_wire_size", None)
        return cached

    def _build_proto(self, path: Path) -> model_pb2.Model:
        model = model_pb2.Model(
            filename=self.filename,
            type=TYPE_TO_PROTO[self.type],
            display_name=self.display_name,
            short_name=self.short_name,
            source=SOURCES.get(self.source, model_pb2.MODEL_SOURCE_UNSPECIFIED),
            trigger_words=self.trigger_words,
            recommended_weight=self.recommended_weight,
            base_model=self.base_model,
            tags=self.tags,
            description=self.description,
            file_size_bytes=self.file_size_bytes,
            civitai_model_id=self.civitai_model_id or 0,
            civitai_version_id=self.civitai_version_id or 0,
            civitai_url=self.civitai_url,
            sha256=self.sha256,
            path=str(path),
        )
        if self.added_at:
            try:
                model.added_at.CopyFrom(_timestamp(self.added_at))
            except ValueError:
                pass  # a hand-edited date that does not parse is shown as unset, not an error
        if self.inspection is not None:
            model.inspection.CopyFrom(self.inspection.to_proto())
        return model


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _opt_int(value: Any) -> int | None:
    if value in (None, "", 0):
        return None
    return int(value)


def _timestamp(iso: str) -> timestamp_pb2.Timestamp:
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def clean_words(words: Any) -> tuple[str, ...]:
    """Strip, drop empties and case-insensitive duplicates, keep order."""
    seen: set[str] = set()
    out: list[str] = []
    for word in words:
        word = str(word).strip()
        if word and word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return tuple(out)
