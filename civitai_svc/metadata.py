"""Map CivitAI's JSON to `CivitaiModelInfo`: pure functions, robust to the API's quirks.

The real API drops keys instead of sending empties (`removeEmpty`), omits
`primary` on non-primary files in `/models`, may send empty `hashes`, sends
`description` as HTML or null, and grows new fields and enum values. Every
read here is a `.get` with a default, and unknown values pass through as
strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from civitai_svc import errors as E
from civitai_svc.api_client import parse_time
from civitai_svc.references import FileFilter
from modelmanager.v1 import civitai_pb2, model_pb2

SITE = "https://civitai.com"

# CivitAI type (case-insensitive) -> how it installs. Everything else (Hypernetwork, Controlnet,
# MotionModule, Poses, Wildcards, Workflows, AestheticGradient, Other...) is UNSUPPORTED_MODEL_TYPE.
INSTALLABLE = {
    "lora": model_pb2.MODEL_TYPE_LORA,
    "locon": model_pb2.MODEL_TYPE_LORA,
    "dora": model_pb2.MODEL_TYPE_LORA,
    "checkpoint": model_pb2.MODEL_TYPE_CHECKPOINT,
    "textualinversion": model_pb2.MODEL_TYPE_EMBEDDING,
    "vae": model_pb2.MODEL_TYPE_VAE,
    "upscaler": model_pb2.MODEL_TYPE_UPSCALER,
}
SUPPORTED_TYPES = "LORA, LoCon, DoRA (installed as LoRAs), Checkpoint, TextualInversion, VAE and Upscaler"
SEARCH_TYPES = ("LORA", "LoCon", "DoRA", "Checkpoint", "TextualInversion", "VAE", "Upscaler")

# File types that hold model weights; never "Training Data", "Config", "Archive"...
_WEIGHT_TYPES = {"model", "pruned model"}

_AIR_TYPES = {"checkpoint": "checkpoint", "lora": "lora", "locon": "lycoris", "dora": "dora",
              "textualinversion": "embedding", "vae": "vae", "upscaler": "upscaler"}
_SDXL_BASES = ("sdxl", "pony", "illustrious", "noobai")

# "Recommended weight 0.6-0.8", "strength: 0.7", "use weight 0.5 to 1.5" (midpoint of a range).
_WEIGHT = re.compile(
    r"(?:weight|strength)s?\s*(?:of|is|:|=|at|around|between)?\s*(-?\d+(?:\.\d+)?)"
    r"(?:\s*(?:-|–|~|to|and)\s*(\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^>]+>")


def model_type_of(civitai_type: str | None) -> int:
    return INSTALLABLE.get((civitai_type or "").lower(), model_pb2.MODEL_TYPE_UNSPECIFIED)


def ensure_supported(info: civitai_pb2.CivitaiModelInfo) -> None:
    if not info.supported:
        raise E.UnsupportedModelType(
            f"{info.name or 'this model'} is a {info.civitai_type or 'model of unknown type'}; "
            f"only {SUPPORTED_TYPES} can be installed",
            metadata={"civitai_type": info.civitai_type, "supported": SUPPORTED_TYPES},
        )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for item in value:
        if isinstance(item, dict):  # older shapes: tags as {"name": ...}
            item = item.get("name")
        text = _str(item).strip()
        if text and text not in out:
            out.append(text)
    return out


def _ts(value: Any) -> Timestamp | None:
    parsed = parse_time(value)
    if parsed is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(parsed)
    return ts


def recommended_weight(*texts: str | None) -> float | None:
    """A LoRA weight named in the creator's text (midpoint of a range), when one is there."""
    for text in texts:
        if not text:
            continue
        plain = _TAG.sub(" ", text)
        for m in _WEIGHT.finditer(plain):
            low = float(m.group(1))
            high = float(m.group(2)) if m.group(2) else low
            value = round((low + high) / 2, 3)
            if 0 < value <= 2 and low <= high:
                return value
    return None


def _count(value: Any) -> int:
    """A count from CivitAI: a non-negative int64; anything else (missing, text, a bool, NaN) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    return int(min(max(value, 0), 2**63 - 1))


def stats_info(raw: Any) -> civitai_pb2.CivitaiStats:
    """CivitAI's `stats` object (model or version); a count that is missing or not a number is 0."""
    raw = raw if isinstance(raw, dict) else {}
    rating = raw.get("rating")
    return civitai_pb2.CivitaiStats(
        download_count=_count(raw.get("downloadCount")),
        thumbs_up_count=_count(raw.get("thumbsUpCount")),
        thumbs_down_count=_count(raw.get("thumbsDownCount")),
        favorite_count=_count(raw.get("favoriteCount")),
        comment_count=_count(raw.get("commentCount")),
        rating=float(rating) if not isinstance(rating, bool) and isinstance(rating, int | float) and 0 <= rating <= 5
        else 0.0,
        rating_count=_count(raw.get("ratingCount")),
    )


def file_info(raw: dict[str, Any]) -> civitai_pb2.CivitaiFile:
    meta = raw.get("metadata") or {}
    hashes = {str(k).upper(): _str(v) for k, v in (raw.get("hashes") or {}).items()}
    size_kb = raw.get("sizeKB")
    return civitai_pb2.CivitaiFile(
        id=_int(raw.get("id")),
        name=_str(raw.get("overrideName") or raw.get("name")),
        size_bytes=int(float(size_kb) * 1024) if isinstance(size_kb, int | float) else 0,
        type=_str(raw.get("type")),
        format=_str(meta.get("format")),
        fp=_str(meta.get("fp")),
        size=_str(meta.get("size")),
        sha256=hashes.get("SHA256", "").lower(),
        primary=raw.get("primary") is True,
        download_url=_str(raw.get("downloadUrl")),
        pickle_scan_result=_str(raw.get("pickleScanResult")),
        virus_scan_result=_str(raw.get("virusScanResult")),
    )


def _matches(f: civitai_pb2.CivitaiFile, wanted: FileFilter) -> bool:
    # Every field given must agree, as on CivitAI's download endpoint; case-insensitive, since people edit URLs.
    pairs = ((wanted.type, f.type), (wanted.format, f.format), (wanted.size, f.size), (wanted.fp, f.fp))
    return all(not want or want.lower() == have.lower() for want, have in pairs)


def _describe(f: civitai_pb2.CivitaiFile) -> str:
    return f"{f.id} ({', '.join(v for v in (f.type or 'no type', f.format, f.size, f.fp) if v)})"


def select_file(
    files: Iterable[civitai_pb2.CivitaiFile], *, version_id: int, file_id: int = 0, wanted: FileFilter = FileFilter()
) -> civitai_pb2.CivitaiFile:
    """The file a download of the version installs; raises when there is none to install.

    `file_id` (?fileId=, an AIR `+file`, the request's file_id) names one file; `wanted` (a download
    URL's type/format/size/fp) keeps the files that agree on every field given. Among what is left:
    a weights type, SafeTensor, primary, pruned, fp16 (CivitAI's own order). Training data never.
    FileNotFound: the version has no such file. NoModelFile: what is left is training data, or
    (nothing asked for) the version has no weights file.
    """
    files = list(files)
    listing = ", ".join(_describe(f) for f in files) or "none"
    meta: dict[str, object] = {"version_id": version_id, "file_ids": ",".join(str(f.id) for f in files)}
    asked = bool(file_id or wanted)
    pool = files
    if file_id:
        pool = [f for f in files if f.id == file_id]
        if not pool:
            raise E.FileNotFound(f"file {file_id} is not a file of version {version_id}; its files: {listing}",
                                 metadata={**meta, "file_id": file_id})
    if wanted:
        pool = [f for f in pool if _matches(f, wanted)]
        if not pool:
            which = f"file {file_id} with {wanted}" if file_id else f"file with {wanted}"
            raise E.FileNotFound(f"version {version_id} has no {which}; its files: {listing}",
                                 metadata={**meta, "filter": str(wanted)})
    installable = [f for f in pool if f.type.lower() != "training data"]
    if not asked:  # a weights file, or the primary one (new weight types appear, e.g. "Enhancement LoRA")
        installable = [f for f in installable if f.type.lower() in _WEIGHT_TYPES or f.primary]
    if not installable:
        if asked:
            raise E.NoModelFile(f"file {pool[0].id} of version {version_id} is training data; training data is "
                                "never installed", metadata={**meta, "file_id": pool[0].id, "type": pool[0].type})
        raise E.NoModelFile(f"version {version_id} has no model file to install; its files: {listing}", metadata=meta)
    return max(
        installable,
        key=lambda f: (
            f.type.lower() in _WEIGHT_TYPES,
            f.format.lower() == "safetensor" or f.name.lower().endswith(".safetensors"),
            f.primary,
            f.size.lower() == "pruned",
            f.fp.lower() == "fp16",
            -files.index(f),
        ),
    )


def choose_file(
    files: Iterable[civitai_pb2.CivitaiFile], file_id: int = 0, wanted: FileFilter = FileFilter()
) -> civitai_pb2.CivitaiFile | None:
    """`select_file`, or None where it would refuse (info is still shown; a download says why)."""
    try:
        return select_file(files, version_id=0, file_id=file_id, wanted=wanted)
    except (E.FileNotFound, E.NoModelFile):
        return None


def _air(model_id: int, version_id: int, civitai_type: str, base_model: str) -> str:
    base = base_model.lower()
    if any(base.startswith(b) for b in _SDXL_BASES) and base != "pony v7":
        eco = "sdxl"
    elif base.startswith("sd 1"):
        eco = "sd1"
    elif base.startswith("flux.1"):
        eco = "flux1"
    else:
        eco = re.sub(r"[^a-z0-9]+", "", base) or "other"
    kind = _AIR_TYPES.get(civitai_type.lower(), "unknown")
    return f"urn:air:{eco}:{kind}:civitai:{model_id}@{version_id}"


def civitai_url(model_id: int, version_id: int = 0) -> str:
    if not model_id:
        return f"{SITE}/model-versions/{version_id}" if version_id else ""
    return f"{SITE}/models/{model_id}" + (f"?modelVersionId={version_id}" if version_id else "")


def build_info(
    model: dict[str, Any] | None,
    version: dict[str, Any] | None,
    *,
    file_id: int = 0,
    wanted: FileFilter = FileFilter(),
    now: datetime | None = None,
) -> civitai_pb2.CivitaiModelInfo:
    """One version as this project installs it.

    `model` is `GET /models/{id}` (or a search item); `version` is either one of its
    `modelVersions` or `GET /model-versions/{id}` (which nests a small `model`).
    Either may be missing; whatever is there is used. An early-access deadline before
    `now` (default: the current time) is left out: that version is public now.
    """
    model = model or {}
    if version is None:
        versions = model.get("modelVersions") or []
        version = versions[0] if versions else {}
    nested = version.get("model") or {}
    model_id = _int(model.get("id") or version.get("modelId"))
    version_id = _int(version.get("id"))
    civitai_type = _str(model.get("type") or nested.get("type"))
    base_model = _str(version.get("baseModel"))
    files = [file_info(f) for f in version.get("files") or [] if isinstance(f, dict)]
    chosen = choose_file(files, file_id, wanted)
    model_description = model.get("description")
    version_description = version.get("description")
    description = _str(model_description or version_description)
    creator = model.get("creator") or {}

    info = civitai_pb2.CivitaiModelInfo(
        model_id=model_id,
        version_id=version_id,
        name=_str(model.get("name") or nested.get("name")),
        version_name=_str(version.get("name")),
        civitai_type=civitai_type,
        model_type=model_type_of(civitai_type),
        base_model=base_model,
        trigger_words=_strings(version.get("trainedWords")),
        description=description,
        tags=_strings(model.get("tags")),
        creator=_str(creator.get("username")) if isinstance(creator, dict) else "",
        nsfw=bool(model.get("nsfw", nested.get("nsfw", False))),
        files=files,
        civitai_url=civitai_url(model_id, version_id),
        air=_str(version.get("air")) or (_air(model_id, version_id, civitai_type, base_model) if model_id else ""),
        supported=model_type_of(civitai_type) != model_pb2.MODEL_TYPE_UNSPECIFIED,
        mode=_str(model.get("mode") or nested.get("mode")),
        stats=stats_info(model.get("stats") or version.get("stats")),
    )
    if chosen is not None:
        info.file.CopyFrom(chosen)
    weight = None
    if info.model_type == model_pb2.MODEL_TYPE_LORA:
        settings = version.get("settings") or {}
        strength = settings.get("strength") if isinstance(settings, dict) else None
        weight = float(strength) if isinstance(strength, int | float) and 0 < strength <= 2 else None
        weight = weight or recommended_weight(_str(version_description), _str(model_description))
    info.recommended_weight = weight or 1.0

    deadline = version.get("earlyAccessDeadline") or version.get("earlyAccessEndsAt")
    ts = _ts(deadline)
    now = now or datetime.now(UTC)
    # Epoch seconds: ToDatetime() is naive UTC, which .timestamp() would read as local time.
    if ts is not None and ts.seconds > now.timestamp():
        info.early_access_deadline.CopyFrom(ts)

    for v in model.get("modelVersions") or []:
        if not isinstance(v, dict):
            continue
        entry = civitai_pb2.CivitaiVersion(id=_int(v.get("id")), name=_str(v.get("name")), base_model=_str(v.get("baseModel")))
        published = _ts(v.get("publishedAt") or v.get("createdAt"))
        if published is not None:
            entry.published_at.CopyFrom(published)
        info.versions.append(entry)
    if not info.versions and version_id:
        info.versions.append(civitai_pb2.CivitaiVersion(id=version_id, name=info.version_name, base_model=base_model))

    for image in version.get("images") or []:
        if isinstance(image, dict) and image.get("url"):
            info.images.append(
                civitai_pb2.PreviewImage(
                    url=_str(image.get("url")),
                    width=_int(image.get("width")),
                    height=_int(image.get("height")),
                    nsfw_level=_int(image.get("nsfwLevel")),
                    type=_str(image.get("type") or "image"),
                )
            )
    return info


def find_version(model: dict[str, Any], version_id: int) -> dict[str, Any] | None:
    for v in model.get("modelVersions") or []:
        if isinstance(v, dict) and _int(v.get("id")) == version_id:
            return v
    return None
