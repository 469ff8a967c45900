"""Many files identified by sha256 at once: CivitAI's bulk by-hash lookup, its models, optional thumbnails.

CivitAI's `POST /api/v1/model-versions/by-hash` takes 100 SHA256s and answers the versions it knows
(misses are dropped, and nothing says which hash matched which version: the versions' files' SHA256s
do). The versions lack the model's tags, creator and description, so the models they belong to are
fetched too, 100 a call (`/models?ids=`), best-effort: a version alone still identifies the file.
Calls go one after another through the same client the downloads use (retries, 429 / Retry-After):
a library import must not hammer CivitAI's rate limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from civitai_svc import errors as E
from civitai_svc.api_client import BY_HASH_BATCH, CivitaiApi
from civitai_svc.metadata import build_info
from civitai_svc.previews import Preview, PreviewFetcher
from modelmanager.v1 import civitai_pb2
from service_kit.logs import get_logger

log = get_logger("civitai_svc.identify")

MAX_HASHES = 1000  # per IdentifyFiles call
MODELS_BATCH = 100  # /models?ids= takes at most this many
# Thumbnails in one reply, in bytes: the reply must stay under gRPC's 64 MiB message bound
# (service_kit.client), and 1,000 thumbnails of ~60 KB would not. Past it, previews are left out.
PREVIEW_BUDGET_BYTES = 40 * 1024 * 1024
_HEX = frozenset("0123456789abcdef")


def distinct_hashes(sha256s: Sequence[str]) -> list[str]:
    """The requested hashes, lowercase, each once, in request order; InvalidSha256 names the first bad one."""
    if len(sha256s) > MAX_HASHES:  # before any work on them
        raise E.TooManyItems(f"at most {MAX_HASHES} hashes a call; {len(sha256s)} given",
                             metadata={"max_items": MAX_HASHES, "items": len(sha256s)})
    out: dict[str, None] = {}
    for index, raw in enumerate(sha256s):
        value = raw.strip().lower()
        if len(value) != 64 or not set(value) <= _HEX:
            raise E.InvalidSha256(f"sha256s[{index}] is not a SHA-256 (64 hex digits)",
                                  metadata={"index": index, "sha256": raw[:80]})
        out.setdefault(value, None)
    return list(out)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def _files_by_sha256(version: dict[str, Any]) -> dict[str, int]:
    """sha256 (lowercase) -> file id, for the version's files that list one."""
    out: dict[str, int] = {}
    for f in version.get("files") or []:
        hashes = f.get("hashes") if isinstance(f, dict) else None
        if not isinstance(hashes, dict):
            continue
        for kind, value in hashes.items():
            if str(kind).upper() == "SHA256" and isinstance(value, str):
                try:
                    out.setdefault(value.lower(), int(f.get("id") or 0))
                except (TypeError, ValueError):
                    out.setdefault(value.lower(), 0)
    return out


def _model_id(version: dict[str, Any]) -> int:
    nested = version.get("model")
    value = version.get("modelId") or (nested.get("id") if isinstance(nested, dict) else None)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


class Identifier:
    def __init__(self, api: CivitaiApi, previews: PreviewFetcher, *,
                 preview_budget_bytes: int = PREVIEW_BUDGET_BYTES) -> None:
        self.api = api
        self.previews = previews
        self.preview_budget_bytes = preview_budget_bytes

    async def identify(self, sha256s: Sequence[str], *, with_previews: bool = False,
                       token: str | None = None) -> list[civitai_pb2.IdentifiedFile]:
        """One IdentifiedFile per distinct hash, in request order; found false for hashes CivitAI does not know."""
        hashes = distinct_hashes(sha256s)
        found: dict[str, tuple[dict[str, Any], int]] = {}  # sha256 -> (version, file id)
        for batch in _batches(hashes, BY_HASH_BATCH):
            wanted = set(batch)
            for version in await self.api.versions_by_hashes(list(batch), token):
                if not isinstance(version, dict):
                    continue
                for sha256, file_id in _files_by_sha256(version).items():
                    if sha256 in wanted:
                        found.setdefault(sha256, (version, file_id))
        models = await self._models({_model_id(v) for v, _ in found.values()} - {0}, token)
        infos = {sha256: build_info(models.get(_model_id(version)), version, file_id=file_id)
                 for sha256, (version, file_id) in found.items()}
        previews = await self._previews(infos.values()) if with_previews else {}

        reply = []
        budget, left_out = self.preview_budget_bytes, 0
        for sha256 in hashes:
            entry = civitai_pb2.IdentifiedFile(sha256=sha256, found=sha256 in infos)
            info = infos.get(sha256)
            if info is not None:
                entry.info.CopyFrom(info)
                preview = previews.get(info.version_id)
                if preview is not None and len(preview.thumbnail.data) > budget:
                    preview, left_out = None, left_out + 1
                if preview is not None:
                    budget -= len(preview.thumbnail.data)
                    entry.preview = preview.thumbnail.data
                    entry.preview_content_type = preview.thumbnail.media_type
                    entry.preview_image.CopyFrom(preview.image)
            reply.append(entry)
        if left_out:
            log.warning("identify.previews_left_out", count=left_out, budget_bytes=self.preview_budget_bytes)
        log.info("identify.done", hashes=len(hashes), found=len(infos), previews=len(previews) - left_out)
        return reply

    async def _models(self, model_ids: set[int], token: str | None) -> dict[int, dict[str, Any]]:
        """The models by id, as far as CivitAI answers (a model it hides, or a failed call, leaves a gap)."""
        out: dict[int, dict[str, Any]] = {}
        for batch in _batches(sorted(model_ids), MODELS_BATCH):
            try:
                items = await self.api.models_by_ids(list(batch), token)
            except E.errors.ServiceError as exc:
                log.warning("identify.models_failed", models=len(batch), reason=exc.reason, error=exc.message)
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("id"), int):
                    out[item["id"]] = item
        return out

    async def _previews(self, infos: Iterable[civitai_pb2.CivitaiModelInfo]) -> dict[int, Preview]:
        """Thumbnails by version id; each version fetched once (two files of one version share it)."""
        versions = {info.version_id: info for info in infos}
        results = await asyncio.gather(*(self.previews.preview_of(info) for info in versions.values()))
        return {vid: p for vid, p in zip(versions, results, strict=True) if p is not None}
