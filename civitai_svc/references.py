"""Parse anything a user pastes into a CivitAI reference, without network access.

Accepted (see `errors.ACCEPTED_FORMS`): page, download and API URLs on the
three colour domains (scheme and `www.` optional), a bare number (a model id,
as civitdl does), `v:{versionId}`, a sha256 (bare 64 hex, `sha256:`, or
`hash:` for the shorter AutoV1/V2/V3/CRC32 forms), and AIR URNs in the strict
civitai form the reference recommends. Fragments, trailing slashes, slugs and
tracking parameters are ignored; a `token=` query parameter is lifted out of
the URL (kept only as `Reference.token`, never echoed back). A download URL's
`type`/`format`/`size`/`fp` are kept (`Reference.file_filter`): CivitAI's own
links for a version's other files carry them instead of a `fileId`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlsplit

from civitai_svc.errors import InvalidReference

MAX_ID = 2_147_483_647  # CivitAI ids are Postgres int4 (1..2^31-1)

HOSTS = ("civitai.com", "civitai.red", "civitai.green")


class Kind(enum.Enum):
    MODEL = 1
    VERSION = 2
    HASH = 3


@dataclass(frozen=True)
class FileFilter:
    """Which file of a version a download URL asks for; empty fields ask nothing.

    CivitAI's API gives every file but the primary a `/api/download/models/{version}?type=&format=&size=&fp=`
    URL (no file id), so a pasted URL can name its file only by these four fields.
    """

    type: str = ""  # ModelFileType: "Model", "Pruned Model", "Training Data"...
    format: str = ""  # "SafeTensor", "PickleTensor"...
    size: str = ""  # "full" or "pruned"
    fp: str = ""  # "fp16", "fp32", "bf16"...

    def __bool__(self) -> bool:
        return any((self.type, self.format, self.size, self.fp))

    def __str__(self) -> str:
        named = (("type", self.type), ("format", self.format), ("size", self.size), ("fp", self.fp))
        return "&".join(f"{key}={value}" for key, value in named if value)


@dataclass(frozen=True)
class Reference:
    kind: Kind
    model_id: int = 0
    version_id: int = 0
    file_id: int = 0
    hash: str = ""  # uppercase hex, as the by-hash endpoint wants it
    host: str = ""
    original: str = ""
    token: str = ""  # from a pasted ?token=; never shown
    file_filter: FileFilter = FileFilter()  # from a download URL's ?type=&format=&size=&fp=


# Strict civitai AIR, `urn:air:{ecosystem}:{type}:civitai:{model}[@{version}][+{file}][.{format}]`: `urn:` and
# `air:` optional, ecosystem and type optional. Stricter than @civitai/client's lenient AIR regex, which takes any
# source (`foo:bar`) and lets a non-numeric version swallow the `.format`.
_AIR = re.compile(
    r"^(?:urn:)?(?:air:)?(?:[a-z0-9_\-/]+:)?(?:[a-z0-9_\-/]+:)?civitai:([0-9]+)(?:@([0-9]+))?(?:\+([0-9]+))?(?:\.[a-z0-9_-]+)?$",
    re.IGNORECASE,
)
_VERSION_SHORT = re.compile(r"^(?:v|version|mv):\s*([0-9]+)$", re.IGNORECASE)
_NUMBER = re.compile(r"^#?([0-9]+)$")
_SHA256 = re.compile(r"^(?:sha256[:=])?([0-9a-f]{64})$", re.IGNORECASE)
# AutoV1 (8), AutoV2 (10), AutoV3 (12), CRC32 (8), BLAKE3/SHA256 (64): only with an explicit prefix,
# because a 10-digit number is also a model id.
_HASH = re.compile(r"^(?:hash|autov[123]|crc32|blake3)[:=]([0-9a-f]{8,64})$", re.IGNORECASE)
_HOST_LIKE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\.)?civitai\.[a-z]+(?:[:/?#]|$)", re.IGNORECASE)


def _id(text: str | None, what: str, original: str) -> int:
    if text is None or not re.fullmatch(r"[0-9]+", text):
        raise InvalidReference(original, f"{what} is not a number")
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise InvalidReference(original, f"{what} {text} is out of range 1..{MAX_ID}")
    return value


def _first(query: dict[str, list[str]], *names: str) -> str | None:
    for name in names:
        for key, values in query.items():
            if key.lower() == name.lower() and values and values[0].strip():
                return values[0].strip()
    return None


def parse_reference(text: str) -> Reference:
    """The reference named by `text`; raises InvalidReference listing the accepted forms."""
    if not isinstance(text, str):
        raise InvalidReference(repr(text), "not a string")
    original = text.strip()
    if not original:
        raise InvalidReference(text, "empty")
    if len(original) > 4096:
        raise InvalidReference(original, "too long")
    if any(ord(c) < 32 or ord(c) == 127 for c in original):
        raise InvalidReference(original, "contains control characters")

    if m := _NUMBER.match(original):
        return Reference(Kind.MODEL, model_id=_id(m.group(1), "model id", original), original=original)
    if m := _VERSION_SHORT.match(original):
        return Reference(Kind.VERSION, version_id=_id(m.group(1), "version id", original), original=original)
    if m := _SHA256.match(original):
        return Reference(Kind.HASH, hash=m.group(1).upper(), original=original)
    if m := _HASH.match(original):
        return Reference(Kind.HASH, hash=m.group(1).upper(), original=original)
    if _HOST_LIKE.match(original):
        return _parse_url(original)
    if m := _AIR.match(original):
        model_id = _id(m.group(1), "model id", original)
        file_id = _id(m.group(3), "file id", original) if m.group(3) else 0
        if m.group(2):
            version_id = _id(m.group(2), "version id", original)
            return Reference(Kind.VERSION, model_id=model_id, version_id=version_id, file_id=file_id, original=original)
        return Reference(Kind.MODEL, model_id=model_id, file_id=file_id, original=original)
    if original.lower().startswith(("urn:", "air:")) or ":civitai:" in original.lower():
        raise InvalidReference(original, "not a civitai AIR of the form urn:air:{ecosystem}:{type}:civitai:{model}@{version}")
    raise InvalidReference(original, "not a URL, id, hash or AIR that this service knows")


def _parse_url(original: str) -> Reference:
    url = original if "://" in original else "https://" + original
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        raise InvalidReference(original, f"malformed URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidReference(original, f"unsupported scheme {parts.scheme!r}")
    bare_host = host.removeprefix("www.")
    if bare_host not in HOSTS:
        raise InvalidReference(original, f"host {host!r} is not one of {', '.join(HOSTS)}")
    query = parse_qs(parts.query, keep_blank_values=False)
    token = _first(query, "token") or ""
    # Never echo a pasted token back (ParseReference returns `original`).
    shown = re.sub(r"([?&]token=)[^&#]*", r"\1[REDACTED]", original, flags=re.IGNORECASE)
    segments = [s for s in parts.path.split("/") if s]
    lowered = [s.lower() for s in segments]
    base = Reference(Kind.MODEL, host=bare_host, original=shown, token=token)

    def version_query() -> int:
        raw = _first(query, "modelVersionId")
        return _id(raw, "modelVersionId", original) if raw is not None else 0

    def file_query() -> int:
        raw = _first(query, "fileId")
        return _id(raw, "fileId", original) if raw is not None else 0

    def filter_query() -> FileFilter:
        # CivitAI caps these at 64 characters; a longer value matches no file anyway.
        return FileFilter(*((_first(query, name) or "")[:64] for name in ("type", "format", "size", "fp")))

    match lowered:
        # /api/download/models/{versionId}[?fileId=...][&type=&format=&size=&fp=]
        case ["api", "download", "models", vid, *_]:
            return replace(base, kind=Kind.VERSION, version_id=_id(vid, "version id", original), file_id=file_query(),
                           file_filter=filter_query())
        # /api/v1/model-versions/by-hash/{hash}
        case ["api", "v1", "model-versions", "by-hash", h, *_]:
            if not re.fullmatch(r"[0-9a-f]{8,64}", h):
                raise InvalidReference(original, "hash is not hex")
            return replace(base, kind=Kind.HASH, hash=h.upper())
        # /api/v1/model-versions/{id} and /api/v1/model-versions/mini/{id}
        case ["api", "v1", "model-versions", "mini", vid, *_] | ["api", "v1", "model-versions", vid, *_]:
            return replace(base, kind=Kind.VERSION, version_id=_id(vid, "version id", original))
        case ["api", "v1", "models", mid, *_]:
            return replace(base, model_id=_id(mid, "model id", original))
        # /models/license/{versionId}
        case ["models", "license", vid, *_]:
            return replace(base, kind=Kind.VERSION, version_id=_id(vid, "version id", original))
        # /models/{id}/model-versions/{versionId}[/edit]
        case ["models", mid, "model-versions", vid, *_]:
            return replace(
                base,
                kind=Kind.VERSION,
                model_id=_id(mid, "model id", original),
                version_id=_id(vid, "version id", original),
            )
        # /models/{id}[/{slug}][?modelVersionId=]
        case ["models", mid, *_]:
            model_id = _id(mid, "model id", original)
            version_id = version_query()
            if version_id:
                return replace(base, kind=Kind.VERSION, model_id=model_id, version_id=version_id)
            return replace(base, model_id=model_id)
        case ["model-versions", vid, *_]:
            return replace(base, kind=Kind.VERSION, version_id=_id(vid, "version id", original))
    raise InvalidReference(original, f"the path {parts.path or '/'!r} does not name a model or version")
