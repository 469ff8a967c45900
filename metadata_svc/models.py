"""The registry's own types: the index entry (and its JSON form), and what its operations take and return.

Entry field names are the old app's UserModelEntry ones, so `.metadata.json` stays compatible with it.
Protobuf is not spoken here (see proto_mapping.py).

Entries are treated as immutable values: a change makes a new entry
(`dataclasses.replace`). That lets the index store snapshot the whole index
by copying a dict of references, and lets each entry cache its JSON text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

LORA = "lora"
CHECKPOINT = "checkpoint"
EMBEDDING = "embedding"  # textual inversion (issue 14)
VAE = "vae"
UPSCALER = "upscaler"
TYPES = (LORA, CHECKPOINT, EMBEDDING, VAE, UPSCALER)
FOLDER_OF_TYPE = {LORA: "loras", CHECKPOINT: "checkpoints", EMBEDDING: "embeddings", VAE: "vaes",
                  UPSCALER: "upscalers"}
# Types whose pickle files (.pt/.pth, as many ship) are read with torch's weights-only unpickler.
WEIGHTS_ONLY_PICKLE_TYPES = (EMBEDDING, VAE, UPSCALER)

T = TypeVar("T")


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
        # By hand, not dataclasses.asdict (a deep copy: a third of rendering an entry); same keys, same order.
        return {"format": self.format, "detected_type": self.detected_type, "architecture": self.architecture,
                "lora_format": self.lora_format, "tensor_count": self.tensor_count,
                "header_metadata": dict(self.header_metadata)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inspection:
        if data.keys() == _INSPECTION_FIELDS:  # as written: every field there, none unknown (the usual case)
            found = object.__new__(cls)
            found.__dict__.update(data)  # what cls(**data) sets, without the frozen __init__
            return found
        return cls(**{k: v for k, v in data.items() if k in _INSPECTION_FIELDS})


@dataclass(frozen=True)
class PreviewInfo:
    """A model's stored thumbnail (see previews.py): kept under its own sha256 with the registry's data."""

    sha256: str
    content_type: str = "image/webp"
    width: int = 0
    height: int = 0
    nsfw_level: int = 0
    source: str = "upload"  # "civitai", "sidecar" or "upload"

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "content_type": self.content_type, "width": self.width,
                "height": self.height, "nsfw_level": self.nsfw_level, "source": self.source}

    @classmethod
    def from_json(cls, data: Any) -> PreviewInfo | None:
        if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
            return None
        return cls(**{k: v for k, v in data.items() if k in _PREVIEW_FIELDS})


# CivitAI lookup states (Model.civitai_lookup); "" is an entry never meant to be looked up (volume files).
LOOKUP_PENDING = "pending"
LOOKUP_FOUND = "found"
LOOKUP_NOT_FOUND = "not_found"
LOOKUP_FAILED = "failed"


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
    # Library import (issue 12). Written to the index only when set, so an entry of the volume keeps the
    # documented shape. An entry in a root lies at <root>/<folder>/<file_name>; one in the volume at
    # <loras|checkpoints>/<folder>/<file_name> (file_name "" means the key itself).
    root_id: str = ""
    folder: str = ""
    file_name: str = ""
    # The file as last stat'ed: (dev:inode:size:mtime_ns), so a rescan of an unchanged file reads nothing.
    file_key: str = ""
    preview: PreviewInfo | None = None
    nsfw_level: int = 0
    autov3: str = ""  # lower-case; shown upper-case
    user_edited_fields: tuple[str, ...] = ()
    # Fields a sidecar of another tool set (user > sidecars > CivitAI: identification leaves them alone).
    sidecar_fields: tuple[str, ...] = ()
    civitai_version_name: str = ""
    civitai_lookup: str = ""  # a LOOKUP_* state
    civitai_checked_at: str = ""
    notes: str = ""
    default_vae: str = ""  # checkpoints: a VAE entry's filename
    negative_embedding: bool = False
    # Keys of the stored JSON this version does not know; written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def disk_name(self) -> str:
        """The file's own name on disk."""
        return self.file_name or self.filename

    @property
    def embedding_token(self) -> str:
        """An embedding's prompt token: its trigger word (the first), by default the file's stem."""
        if self.type != EMBEDDING:
            return ""
        return self.trigger_words[0] if self.trigger_words else Path(self.disk_name).stem

    @property
    def rel_path(self) -> str:
        """`folder/file_name` relative to its root (or to loras/ / checkpoints/)."""
        return f"{self.folder}/{self.disk_name}" if self.folder else self.disk_name

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
        for name in _ADDED_FIELDS:
            value = getattr(self, name)
            if value:
                data[name] = value.to_json() if isinstance(value, PreviewInfo) else (
                    list(value) if isinstance(value, tuple) else value)
        return data

    def json_line(self) -> bytes:
        """`"filename": {entry}` as UTF-8, computed once, so rewriting a 10,000-entry index is a join
        of cached lines, not 10,000 json.dumps calls."""
        memo = self.__dict__.get("_memo")
        if memo is not None and "json_line" in memo:  # the usual case, without making a closure
            return cast(bytes, memo["json_line"])

        def render() -> bytes:
            key = json.dumps(self.filename, ensure_ascii=False)
            body = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
            return f"{key}:{body}".encode()
        return self.cached("json_line", render)

    def keep_json_line(self, line: bytes) -> None:
        """Take `line`, the index file's own line this entry was just parsed from, as its line, so a load
        does not render 100,000 lines again (the line parses to this very entry, so it says the same)."""
        memo: dict[str, Any] = self.__dict__.setdefault("_memo", {})
        memo.setdefault("json_line", line)

    def search_text(self) -> str:
        """Lower-cased text that List's free-text query searches (List keeps it: not cached here)."""
        return "\n".join([self.display_name, self.short_name, self.filename, *self.tags, *self.trigger_words]).lower()

    def cached(self, key: str, make: Callable[[], T]) -> T:
        """`make()`, computed once and kept on the entry: entries never change in place, so whatever
        is derived from one (its JSON line, its search text, its protobuf form) stays true."""
        memo: dict[str, Any] = self.__dict__.setdefault("_memo", {})  # frozen: not through __setattr__
        if key not in memo:
            memo[key] = make()
        return cast(T, memo[key])

    def sort_key(self) -> tuple[int, str, str]:
        """List's stable order: type, then display name, then filename."""
        return (TYPES.index(self.type), self.display_name.lower(), self.filename)

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
            raise ValueError(f"entry {key!r} has type {kind!r}, expected one of {', '.join(TYPES)}")
        extra = {k: v for k, v in data.items() if k not in _ENTRY_FIELDS}
        try:
            inspection = data.get("inspection")
            return _frozen(cls, dict(
                filename=key,
                type=kind,
                display_name=str(data.get("display_name") or Path(key).stem),
                short_name=str(data.get("short_name") or ""),
                source=str(data.get("source") or "local"),
                trigger_words=tuple(map(str, data.get("trigger_words") or ())),
                recommended_weight=float(_or(data.get("recommended_weight"), 1.0)),
                base_model=str(data.get("base_model") or ""),
                tags=tuple(map(str, data.get("tags") or ())),
                description=str(data.get("description") or ""),
                file_size_bytes=int(data.get("file_size_bytes") or 0),
                added_at=str(data.get("added_at") or ""),
                civitai_model_id=_opt_int(data.get("civitai_model_id")),
                civitai_version_id=_opt_int(data.get("civitai_version_id")),
                civitai_url=str(data.get("civitai_url") or ""),
                sha256=str(data.get("sha256") or ""),
                inspection=Inspection.from_json(inspection) if isinstance(inspection, dict) else None,
                root_id=str(data.get("root_id") or ""),
                folder=str(data.get("folder") or ""),
                file_name=str(data.get("file_name") or ""),
                file_key=str(data.get("file_key") or ""),
                preview=PreviewInfo.from_json(data.get("preview")),
                nsfw_level=int(data.get("nsfw_level") or 0),
                autov3=str(data.get("autov3") or ""),
                user_edited_fields=tuple(map(str, data.get("user_edited_fields") or ())),
                sidecar_fields=tuple(map(str, data.get("sidecar_fields") or ())),
                civitai_version_name=str(data.get("civitai_version_name") or ""),
                civitai_lookup=str(data.get("civitai_lookup") or ""),
                civitai_checked_at=str(data.get("civitai_checked_at") or ""),
                notes=str(data.get("notes") or ""),
                default_vae=str(data.get("default_vae") or ""),
                negative_embedding=bool(data.get("negative_embedding")),
                extra=extra,
            ))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"entry {key!r}: {exc}") from exc


# Field names, computed once (dataclasses.fields per entry was a tenth of loading 100,000 of them).
_INSPECTION_FIELDS = frozenset(f.name for f in dataclasses.fields(Inspection))
_PREVIEW_FIELDS = frozenset(f.name for f in dataclasses.fields(PreviewInfo))
_ENTRY_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelEntry))

# Written only when set (see ModelEntry.to_json).
_ADDED_FIELDS = ("root_id", "folder", "file_name", "file_key", "preview", "nsfw_level", "autov3",
                 "user_edited_fields", "sidecar_fields", "civitai_version_name", "civitai_lookup",
                 "civitai_checked_at", "notes", "default_vae", "negative_embedding")


def _frozen(cls: type[ModelEntry], values: dict[str, Any]) -> ModelEntry:
    """`cls(**values)` with every field given, without the frozen dataclass __init__ (its
    object.__setattr__ per field was a third of loading 100,000 entries); tests check it is equal."""
    entry = object.__new__(cls)
    entry.__dict__.update(values)
    return entry


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _opt_int(value: Any) -> int | None:
    if value in (None, "", 0):
        return None
    return int(value)


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


@dataclass(frozen=True)
class ModelFields:
    """What a client may set on an entry (Create, Update, Upload's header); bounded by limits.py.
    Zero values mean "not given", as in protobuf."""

    display_name: str = ""
    short_name: str = ""
    trigger_words: tuple[str, ...] = ()
    recommended_weight: float = 0.0
    base_model: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""
    civitai_model_id: int = 0
    civitai_version_id: int = 0
    civitai_url: str = ""
    default_vae: str = ""
    negative_embedding: bool = False

    def is_set(self, name: str) -> bool:
        value = getattr(self, name)
        return value != 0 if isinstance(value, float | int) else bool(len(value))


@dataclass(frozen=True)
class NewModel:
    """A model to register (Create, Upload): its name, what the client says of it."""

    filename: str
    type: str  # one of TYPES; "" when the client gave none (refused)
    fields: ModelFields = ModelFields()
    source: str = "local"
    sha256: str = ""  # Create's claim, as the client sent it; checked against the bytes


@dataclass(frozen=True)
class Claim:
    """A new file's name, checked and held while it is created or uploaded (see Registry.claim)."""

    filename: str
    type: str
    format: str  # "safetensors" or a pickle format
    path: Path  # where the file is (Create) or goes (Upload)


@dataclass(frozen=True)
class FileFacts:
    """What the registry found out about a file itself."""

    size: int
    inspection: Inspection
    sha256: str


@dataclass(frozen=True)
class Page:
    """One page of ListModels."""

    entries: list[ModelEntry]
    next_page_token: str
    total_size: int


@dataclass(frozen=True)
class ActiveCheckpointState:
    name: str  # DEFAULT_CHECKPOINT or an installed checkpoint's filename
    path: Path
    entry: ModelEntry | None  # None for the default checkpoint
    file_present: bool


@dataclass(frozen=True)
class ResolvedLora:
    entry: ModelEntry
    path: Path
    weight: float


@dataclass(frozen=True)
class ComposedPrompt:
    prompt: str
    injected: list[str]
    loras: list[ResolvedLora]


@dataclass(frozen=True)
class SkippedFile:
    path: str  # relative to the volume
    reason: str  # "REASON: message"


@dataclass(frozen=True)
class ScanResult:
    """What a read-only pass over the volume found (see rescan.py)."""

    added: list[ModelEntry]
    missing: list[str]
    skipped: list[SkippedFile]


@dataclass(frozen=True)
class RescanReport:
    added: list[ModelEntry]  # those actually registered
    missing: list[str]
    skipped: list[SkippedFile]
