"""The files other tools write next to a model (`<stem>.safetensors`), read into one normalised `ModelInfo`,
and the A1111-style `<stem>.json` written back.

Sidecars (field names as those tools write them; see interop-formats):
- A1111 / Forge `<stem>.json`: the extra-networks "Edit user metadata" dialog (also Civitai Helper forks,
  sd-civitai-browser-plus): `activation text` (trigger words), `preferred weight` (0: not set),
  `description`, `notes`, `sd version` (SD1, SD2, SDXL, Unknown), `negative text`.
- Civitai Helper `<stem>.civitai.info`: CivitAI's model-version JSON verbatim; an empty file means
  "looked up, not on CivitAI".
- Stability Matrix `<stem>.cm-info.json`: ConnectedModelInfo (`ModelName`, `VersionName`, `TrainedWords`,
  `BaseModel`, `Tags`, `Hashes.SHA256`, user field `UserTitle`, ...).
- ComfyUI-Lora-Manager `<stem>.metadata.json`: `model_name`, `base_model`, `notes`, `tags`,
  `modelDescription`, `usage_tips` (a JSON *string* holding `strength`), `civitai` (the version JSON).
- Previews: `<stem>.preview.{png,jpg,jpeg,webp}`, then `<stem>.{png,jpg,jpeg,webp}` (the tools' lookup order).

Precedence, field by field (the first layer that has a value wins; `merge`):
  user edits  >  sidecars  >  CivitAI
and among the sidecars
  A1111 `.json` (the user's own edit dialog)  >  LoRA Manager `.metadata.json`  >
  Stability Matrix `.cm-info.json` (user edits over copies of CivitAI)  >  Civitai Helper `.civitai.info`
  (a verbatim copy of CivitAI).

Every sidecar is hostile input: a file over MAX_SIDECAR_BYTES, malformed JSON, a wrong type or a link out of
the library root is a `SidecarProblem` with a reason, never an exception; texts are bounded like
client input (limits.py); a path a sidecar names (LoRA Manager's `preview_url`) is never followed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from metadata_svc.limits import clip_items, clip_text
from metadata_svc.models import clean_words
from service_kit.files import real_path, resolves_inside, write_atomic

MAX_SIDECAR_BYTES = 1024 * 1024
# The registry refuses weights beyond this (registry.MAX_ABS_WEIGHT); a sidecar's are dropped instead.
MAX_ABS_WEIGHT = 10.0
MAX_OTHER_CHARS = {"version_name": 256, "sd_version": 32, "model_type": 64, "notes": 65_536,
                   "negative_text": 4_096, "preview_url": 2_048}
CIVITAI_SITE = "https://civitai.com"


class SidecarKind(StrEnum):
    A1111 = "a1111"  # <stem>.json
    LORA_MANAGER = "lora_manager"  # <stem>.metadata.json
    STABILITY_MATRIX = "stability_matrix"  # <stem>.cm-info.json
    CIVITAI_HELPER = "civitai_helper"  # <stem>.civitai.info
    PREVIEW = "preview"  # <stem>.preview.png, <stem>.png, ...


# Longest suffix first: `x.metadata.json` is LoRA Manager's, not A1111's for a model named `x.metadata`.
SIDECAR_SUFFIXES: tuple[tuple[str, SidecarKind], ...] = (
    (".cm-info.json", SidecarKind.STABILITY_MATRIX),
    (".metadata.json", SidecarKind.LORA_MANAGER),
    (".civitai.info", SidecarKind.CIVITAI_HELPER),
    (".json", SidecarKind.A1111),
)
# In precedence order (see the module docstring).
SIDECAR_PRECEDENCE = (SidecarKind.A1111, SidecarKind.LORA_MANAGER, SidecarKind.STABILITY_MATRIX,
                      SidecarKind.CIVITAI_HELPER)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# The tools' lookup order; LoRA Manager's `.preview.mp4` is a video, which we do not show.
PREVIEW_SUFFIXES = tuple(f".preview{s}" for s in IMAGE_SUFFIXES) + IMAGE_SUFFIXES


class SidecarReason(StrEnum):
    TOO_LARGE = "sidecar_too_large"
    MALFORMED = "sidecar_malformed"  # not JSON, or not a JSON object
    UNREADABLE = "sidecar_unreadable"
    NOT_A_REGULAR_FILE = "sidecar_not_a_regular_file"
    OUTSIDE_ROOT = "sidecar_outside_root"  # a symlink that leads out of the library root


@dataclass(frozen=True)
class SidecarProblem:
    name: str
    reason: SidecarReason
    detail: str


@dataclass(frozen=True)
class ModelInfo:
    """What the tools know about a model, normalised to the registry's fields. Empty values mean "not known"."""

    display_name: str = ""
    version_name: str = ""
    trigger_words: tuple[str, ...] = ()
    recommended_weight: float | None = None
    base_model: str = ""
    sd_version: str = ""  # A1111's: SD1, SD2, SDXL, Unknown
    description: str = ""
    notes: str = ""
    negative_text: str = ""
    tags: tuple[str, ...] = ()
    model_type: str = ""  # CivitAI's type: LORA, LoCon, Checkpoint, ...
    civitai_model_id: int = 0
    civitai_version_id: int = 0
    civitai_url: str = ""
    nsfw_level: int = 0  # CivitAI's bitmask: 1 PG, 2 PG13, 4 R, 8 X, 16 XXX, 32 Blocked
    # The file's SHA256 as the sidecar states it: a hint only (the CivitAI ids above are keyed by it, so a
    # mismatch with the real hash means the sidecar describes another file); never taken as the file's hash.
    sha256: str = ""
    preview_url: str = ""  # an https URL (CivitAI's image), never a local path
    not_on_civitai: bool = False  # Civitai Helper's empty .civitai.info: looked up, not found
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)  # field -> the layer it came from


INFO_FIELDS = tuple(f.name for f in dataclasses.fields(ModelInfo) if f.name != "sources")
_EMPTY = ModelInfo()


@dataclass(frozen=True)
class Sidecars:
    """Everything next to one model file."""

    info: ModelInfo  # the sidecars merged, by SIDECAR_PRECEDENCE
    found: tuple[tuple[SidecarKind, str], ...] = ()  # (kind, file name) of each sidecar read
    problems: tuple[SidecarProblem, ...] = ()
    preview: str = ""  # the name of the preview image next to the model, "" when none


# --------------------------------------------------------------------------- names


def sidecar_of(name: str) -> tuple[SidecarKind, str] | None:
    """(kind, model stem) when `name` is a sidecar's or a preview's name; by name only."""
    lower = name.lower()
    for suffix in PREVIEW_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return SidecarKind.PREVIEW, name[: -len(suffix)]
    for suffix, kind in SIDECAR_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return kind, name[: -len(suffix)]
    return None


def sidecar_name(stem: str, kind: SidecarKind) -> str:
    return stem + next(s for s, k in SIDECAR_SUFFIXES if k == kind)


def preview_names(stem: str) -> tuple[str, ...]:
    return tuple(stem + s for s in PREVIEW_SUFFIXES)


def stem_of(model_name: str) -> str:
    return model_name.rsplit(".", 1)[0] if "." in model_name else model_name


# --------------------------------------------------------------------------- reading


def read_sidecars(model_path: Path, *, root: Path | None = None, names: Collection[str] | None = None,
                  max_bytes: int = MAX_SIDECAR_BYTES) -> Sidecars:
    """Read every sidecar of the model at `model_path`. `root`: the library root nothing may be read outside
    of (symlinks are resolved). `names`: the names in the model's folder, when the caller listed it already
    (a scan), so absent sidecars cost no system call."""
    folder, stem = model_path.parent, stem_of(model_path.name)
    real_root = real_path(root) if root is not None else None
    layers: list[tuple[str, ModelInfo]] = []
    found: list[tuple[SidecarKind, str]] = []
    problems: list[SidecarProblem] = []
    for kind in SIDECAR_PRECEDENCE:
        name = sidecar_name(stem, kind)
        if names is not None and name not in names:
            continue
        raw = _read_bounded(folder / name, real_root, max_bytes, problems)
        if raw is None:
            continue
        info = _parse(kind, name, raw, problems)
        if info is not None:
            found.append((kind, name))
            layers.append((kind.value, info))
    preview = ""
    for name in preview_names(stem):
        if names is not None and name not in names:
            continue
        path = folder / name
        if (real_root is None or resolves_inside(path, real_root)) and path.is_file():
            preview = name
            break
    return Sidecars(merge(layers), tuple(found), tuple(problems), preview)


def _read_bounded(path: Path, real_root: Path | None, max_bytes: int, problems: list[SidecarProblem]) -> bytes | None:
    """The file's bytes, or None: absent (silently) or refused (a problem)."""
    name = path.name
    if real_root is not None and not resolves_inside(path, real_root):
        problems.append(SidecarProblem(name, SidecarReason.OUTSIDE_ROOT, f"{name}: a link out of the library root; "
                                       "not read"))
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(SidecarProblem(name, SidecarReason.UNREADABLE, f"{name}: {exc.strerror or exc}"))
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            problems.append(SidecarProblem(name, SidecarReason.NOT_A_REGULAR_FILE, f"{name}: not a regular file"))
            return None
        if st.st_size > max_bytes:
            problems.append(SidecarProblem(name, SidecarReason.TOO_LARGE, f"{name}: {st.st_size} bytes, over the "
                                           f"{max_bytes}-byte limit for a sidecar; not read"))
            return None
        try:
            raw = fh.read(max_bytes + 1)
        except OSError as exc:
            problems.append(SidecarProblem(name, SidecarReason.UNREADABLE, f"{name}: {exc.strerror or exc}"))
            return None
    if len(raw) > max_bytes:  # it grew since fstat
        problems.append(SidecarProblem(name, SidecarReason.TOO_LARGE, f"{name}: over the {max_bytes}-byte limit"))
        return None
    return raw


def _parse(kind: SidecarKind, name: str, raw: bytes, problems: list[SidecarProblem]) -> ModelInfo | None:
    if kind == SidecarKind.CIVITAI_HELPER and not raw.strip():
        return ModelInfo(not_on_civitai=True)
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # some Windows tools write a BOM
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        problems.append(SidecarProblem(name, SidecarReason.MALFORMED, f"{name}: not valid JSON ({exc})"))
        return None
    if not isinstance(data, dict):
        problems.append(SidecarProblem(name, SidecarReason.MALFORMED, f"{name}: not a JSON object"))
        return None
    parser = {SidecarKind.A1111: from_a1111, SidecarKind.LORA_MANAGER: from_lora_manager,
              SidecarKind.STABILITY_MATRIX: from_stability_matrix, SidecarKind.CIVITAI_HELPER: from_civitai_version}
    return parser[kind](data)


# --------------------------------------------------------------------------- the formats


def from_a1111(data: Mapping[str, Any]) -> ModelInfo:
    weight = _weight(data.get("preferred weight"))
    return _info(
        trigger_words=_split_activation(_text(data.get("activation text"))),
        recommended_weight=weight,
        description=_text(data.get("description")),
        notes=_text(data.get("notes")),
        negative_text=_text(data.get("negative text")),
        sd_version=_text(data.get("sd version")),
        sha256=_sha256(data.get("sha256")),  # sd-civitai-browser-plus adds it
    )


def from_civitai_version(data: Mapping[str, Any]) -> ModelInfo:
    """CivitAI's model-version JSON (`GET /api/v1/model-versions/{id}`, or one of a model's `modelVersions`)."""
    nested, listed = data.get("model"), data.get("images")
    model: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
    images: list[Any] = listed if isinstance(listed, list) else []
    model_id, version_id = _int(data.get("modelId")), _int(data.get("id"))
    first = next((i for i in images if isinstance(i, Mapping) and i.get("type", "image") == "image"), None)
    return _info(
        display_name=_text(model.get("name")),
        version_name=_text(data.get("name")),
        trigger_words=_words(data.get("trainedWords")),
        base_model=_text(data.get("baseModel")),
        description=_text(data.get("description")),
        model_type=_text(model.get("type")),
        civitai_model_id=model_id,
        civitai_version_id=version_id,
        civitai_url=_civitai_url(model_id, version_id),
        nsfw_level=_int(data.get("nsfwLevel")),
        sha256=_primary_sha256(data.get("files")),
        preview_url=_https(first.get("url")) if first is not None else "",
    )


def from_stability_matrix(data: Mapping[str, Any]) -> ModelInfo:
    """ConnectedModelInfo; .NET writes PascalCase names, some versions camelCase: both are read."""
    get = _case_insensitive(data)
    hashes = get("Hashes")
    model_id, version_id = _int(get("ModelId")), _int(get("VersionId"))
    return _info(
        display_name=_text(get("UserTitle")) or _text(get("ModelName")),
        version_name=_text(get("VersionName")),
        trigger_words=_words(get("TrainedWords")),
        base_model=_text(get("BaseModel")),
        description=_text(get("VersionDescription")) or _text(get("ModelDescription")),
        tags=_words(get("Tags")),
        model_type=_text(get("ModelType")),
        civitai_model_id=model_id if _text(get("Source")).lower() in ("", "civitai") else 0,
        civitai_version_id=version_id if _text(get("Source")).lower() in ("", "civitai") else 0,
        civitai_url=_civitai_url(model_id, version_id) if _text(get("Source")).lower() in ("", "civitai") else "",
        sha256=_sha256(_case_insensitive(hashes)("SHA256")) if isinstance(hashes, Mapping) else "",
        preview_url=_https(get("ThumbnailImageUrl")),
    )


def from_lora_manager(data: Mapping[str, Any]) -> ModelInfo:
    civitai = data.get("civitai")
    remote = from_civitai_version(civitai) if isinstance(civitai, Mapping) else _EMPTY
    tips: Any = data.get("usage_tips")
    if isinstance(tips, str):
        try:
            tips = json.loads(tips) if len(tips) <= 4096 else None
        except (ValueError, RecursionError):
            tips = None
    weight = _weight(tips.get("strength")) if isinstance(tips, Mapping) else None
    own = _info(
        display_name=_text(data.get("model_name")),
        base_model=_text(data.get("base_model")),
        notes=_text(data.get("notes")),
        tags=_words(data.get("tags")),
        description=_text(data.get("modelDescription")),
        recommended_weight=weight,
        nsfw_level=_int(data.get("preview_nsfw_level")),
        sha256=_sha256(data.get("sha256")),
        # preview_url there is a local path: never followed (previews are found by name next to the model).
    )
    # Its own fields first: the `civitai` object is the copy it fetched (its trainedWords include the user's).
    return merge([("", own), ("", remote)])


# --------------------------------------------------------------------------- merging


def merge(layers: Sequence[tuple[str, ModelInfo]]) -> ModelInfo:
    """Field by field, the first layer with a value wins; `sources` says which layer each value came from
    (a layer's own `sources` kept, so a merged sidecar layer still names the sidecar)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer, info in layers:
        for name in INFO_FIELDS:
            value = getattr(info, name)
            if name not in values and value != getattr(_EMPTY, name):
                values[name] = value
                origin = info.sources.get(name) or layer
                if origin:
                    sources[name] = origin
    return ModelInfo(**values, sources=sources)


def merged(*, user: ModelInfo | None = None, sidecars: ModelInfo | None = None,
           civitai: ModelInfo | None = None) -> ModelInfo:
    """The documented precedence: user edits > sidecars > CivitAI. `user` holds only the fields the user
    edited (the entry records which)."""
    return merge([(name, info) for name, info in (("user", user), ("sidecars", sidecars), ("civitai", civitai))
                  if info is not None])


# --------------------------------------------------------------------------- A1111 write-back

A1111_SD_VERSIONS = {"sdxl": "SDXL", "sd15": "SD1", "sd2": "SD2"}


def a1111_fields(info: ModelInfo, *, architecture: str = "") -> dict[str, Any]:
    """What we have, under A1111's names; only the fields we know (empty ones are not written)."""
    out: dict[str, Any] = {}
    if info.description:
        out["description"] = info.description
    sd_version = info.sd_version or A1111_SD_VERSIONS.get(architecture, "")
    if sd_version:
        out["sd version"] = sd_version
    if info.trigger_words:
        out["activation text"] = ", ".join(info.trigger_words)
    if info.recommended_weight is not None:
        out["preferred weight"] = info.recommended_weight
    if info.notes:
        out["notes"] = info.notes
    if info.negative_text:
        out["negative text"] = info.negative_text
    return out


class WriteBackRefused(Exception):
    """The existing `<stem>.json` is not ours to rewrite: unreadable, too large or not a JSON object."""

    def __init__(self, reason: SidecarReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def write_a1111_sidecar(model_path: Path, info: ModelInfo, *, root: Path | None = None, architecture: str = "",
                        max_bytes: int = MAX_SIDECAR_BYTES) -> dict[str, Any]:
    """Write `<stem>.json` next to the model, atomically, A1111-style (indent 4, UTF-8). An existing one is
    merged, not replaced: every field in it is kept, and ours are set only where we have a value. One we
    cannot read as a JSON object (hand-written, broken) is left alone: WriteBackRefused. Returns what was
    written."""
    path = model_path.parent / sidecar_name(stem_of(model_path.name), SidecarKind.A1111)
    real_root = real_path(root) if root is not None else None
    if real_root is not None and not resolves_inside(path.parent, real_root):
        raise WriteBackRefused(SidecarReason.OUTSIDE_ROOT, f"{path.name}: its folder is outside the library root")
    existing: dict[str, Any] = {}
    if path.is_symlink() or path.exists():
        problems: list[SidecarProblem] = []
        raw = _read_bounded(path, real_root, max_bytes, problems)
        if raw is None and problems:
            raise WriteBackRefused(problems[0].reason, problems[0].detail)
        if raw is not None and raw.strip():
            try:
                data = json.loads(raw.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise WriteBackRefused(SidecarReason.MALFORMED, f"{path.name}: not valid JSON ({exc}); "
                                       "left as it is") from None
            if not isinstance(data, dict):
                raise WriteBackRefused(SidecarReason.MALFORMED, f"{path.name}: not a JSON object; left as it is")
            existing = data
    written = {**existing, **a1111_fields(info, architecture=architecture)}
    if written != existing or not path.exists():
        # A symlinked sidecar is replaced by a file (rename replaces the link), never written through.
        write_atomic(path, json.dumps(written, indent=4, ensure_ascii=False).encode("utf-8"))
    return written


# --------------------------------------------------------------------------- value cleaning


def _info(**values: Any) -> ModelInfo:
    """A ModelInfo with every text bounded like client input."""
    for name in ("display_name", "base_model", "description", "civitai_url"):
        if name in values:
            values[name] = clip_text(name, values[name])
    for name, limit in MAX_OTHER_CHARS.items():
        if name in values:
            values[name] = values[name][:limit]
    for name in ("trigger_words", "tags"):
        if name in values:
            values[name] = tuple(clip_items(name, values[name]))
    return ModelInfo(**values)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return 0
    try:
        number = int(value)
    except ValueError:
        return 0
    return number if 0 < number < 1 << 53 else 0


def _weight(value: Any) -> float | None:
    """A finite weight within the registry's bounds; 0 is A1111's "not set"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value == 0 or abs(value) > MAX_ABS_WEIGHT:
        return None
    return float(value)


def _words(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return clean_words(v for v in value if isinstance(v, str))


def _split_activation(text: str) -> tuple[str, ...]:
    """A1111 appends its activation text to the prompt as written: comma-separated phrases (joined again
    with ", " this gives the same prompt text)."""
    return clean_words(text.replace("\n", ",").split(","))


def _sha256(value: Any) -> str:
    text = _text(value).lower()
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else ""


def _primary_sha256(files: Any) -> str:
    if not isinstance(files, list):
        return ""
    models = [f for f in files if isinstance(f, Mapping) and f.get("type", "Model") == "Model"]
    chosen = next((f for f in models if f.get("primary")), models[0] if models else None)
    hashes = chosen.get("hashes") if chosen is not None else None
    return _sha256(_case_insensitive(hashes)("SHA256")) if isinstance(hashes, Mapping) else ""


def _https(value: Any) -> str:
    text = _text(value)
    return text if text.startswith("https://") else ""


def _civitai_url(model_id: int, version_id: int) -> str:
    if not model_id:
        return ""
    return f"{CIVITAI_SITE}/models/{model_id}" + (f"?modelVersionId={version_id}" if version_id else "")


def _case_insensitive(data: Mapping[str, Any]) -> Callable[[str], Any]:
    lowered = {str(k).lower(): v for k, v in data.items()}
    return lambda key: lowered.get(key.lower())
