"""Identification on CivitAI: entries' hashes looked up in bulk through the CivitAI service's IdentifyFiles,
and what it found applied to the entries.

Precedence, field by field: user edits (Model.user_edited_fields) > sidecars of other tools
(ModelEntry.sidecar_fields) > CivitAI. A hash CivitAI does not know is remembered (NOT_FOUND with the
time it was asked) and asked again only after RETRY_NOT_FOUND or when forced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from metadata_svc import limits
from metadata_svc.catalog import Catalog
from metadata_svc.models import (
    LOOKUP_FAILED,
    LOOKUP_FOUND,
    LOOKUP_NOT_FOUND,
    ModelEntry,
    PreviewInfo,
    clean_words,
    now_iso,
)
from metadata_svc.previews import PreviewRefused, PreviewStore, make_thumbnail
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc
from service_kit import errors, get_logger
from service_kit.peer import Peer, PeerUnavailable

log = get_logger("metadata_svc.registry")

RETRY_NOT_FOUND = timedelta(days=1)
BATCH = 500  # hashes per IdentifyFiles call (the service takes up to 1,000)
# Civitai fields an identification may fill (Model field names).
FILLED = ("display_name", "base_model", "trigger_words", "tags", "description", "recommended_weight",
          "civitai_model_id", "civitai_version_id", "civitai_url", "civitai_version_name", "nsfw_level")


@dataclass
class Outcome:
    identified: int = 0
    not_found: int = 0
    failed: int = 0
    note: str = ""  # why identification was skipped or partial


def due(entry: ModelEntry, *, force: bool, now: datetime | None = None) -> bool:
    """Whether an import should ask CivitAI about this entry."""
    if not entry.sha256:
        return False
    if force:
        return True
    if entry.civitai_lookup == LOOKUP_FOUND:
        return False
    if entry.civitai_lookup == LOOKUP_NOT_FOUND and entry.civitai_checked_at:
        try:
            checked = datetime.fromisoformat(entry.civitai_checked_at)
        except ValueError:
            return True
        if checked.tzinfo is None:
            checked = checked.replace(tzinfo=UTC)
        return (now or datetime.now(UTC)) - checked >= RETRY_NOT_FOUND
    return True


def _protected(entry: ModelEntry) -> set[str]:
    return {*entry.user_edited_fields, *entry.sidecar_fields}


def civitai_values(info: civitai_pb2.CivitaiModelInfo, nsfw_level: int) -> dict[str, Any]:
    """CivitAI's answer as entry values, bounded like client input; empty ones left out."""
    values: dict[str, Any] = {
        "display_name": limits.clip_text("display_name", info.name.strip()),
        "base_model": limits.clip_text("base_model", info.base_model.strip()),
        "trigger_words": clean_words(limits.clip_items("trigger_words", info.trigger_words)),
        "tags": clean_words(limits.clip_items("tags", info.tags)),
        "description": limits.clip_text("description", info.description),
        "civitai_model_id": info.model_id or None,
        "civitai_version_id": info.version_id or None,
        "civitai_url": limits.clip_text("civitai_url", info.civitai_url),
        "civitai_version_name": info.version_name.strip()[:256],
        "nsfw_level": nsfw_level,
    }
    weight = info.recommended_weight
    if weight and abs(weight) <= limits.MAX_ABS_WEIGHT and weight == weight:
        values["recommended_weight"] = float(weight)
    return {k: v for k, v in values.items() if v}


def apply_found(entry: ModelEntry, values: dict[str, Any], preview: PreviewInfo | None) -> ModelEntry:
    protected = _protected(entry)
    changes = {k: v for k, v in values.items() if k not in protected}
    if preview is not None and (entry.preview is None or entry.preview.source == "civitai"):
        changes["preview"] = preview
    return dataclasses.replace(entry, **changes, civitai_lookup=LOOKUP_FOUND, civitai_checked_at=now_iso())


def apply_not_found(entry: ModelEntry) -> ModelEntry:
    return dataclasses.replace(entry, civitai_lookup=LOOKUP_NOT_FOUND, civitai_checked_at=now_iso())


def apply_failed(entry: ModelEntry) -> ModelEntry:
    return dataclasses.replace(entry, civitai_lookup=LOOKUP_FAILED, civitai_checked_at=now_iso())


def store_thumbnail(store: PreviewStore, data: bytes, *, nsfw_level: int, source: str) -> PreviewInfo:
    """Validate and re-encode an image (never stored as it came), keep it by its own sha256. Runs in a thread;
    raises PreviewRefused."""
    thumb = make_thumbnail(data)
    digest = hashlib.sha256(thumb.data).hexdigest()
    store.put(digest, thumb)
    return PreviewInfo(digest, thumb.media_type, thumb.width, thumb.height, nsfw_level, source)


class Identifier:
    """Looks entries up through the CivitAI service (`peer`; None: not configured) and applies the answers."""

    def __init__(self, catalog: Catalog, peer: Peer | None, previews: PreviewStore) -> None:
        self._catalog = catalog
        self._peer = peer
        self._previews = previews
        self._stub = civitai_pb2_grpc.CivitaiServiceStub(peer.channel) if peer is not None else None

    async def lookup(self, sha256s: Sequence[str]) -> dict[str, civitai_pb2.IdentifiedFile]:
        """IdentifyFiles in batches; PeerUnavailable or the service's own error propagate."""
        if self._peer is None or self._stub is None:
            raise PeerUnavailable("civitai", grpc.StatusCode.UNAVAILABLE)
        found: dict[str, civitai_pb2.IdentifiedFile] = {}
        unique = list(dict.fromkeys(s.lower() for s in sha256s))
        for start in range(0, len(unique), BATCH):
            request = civitai_pb2.IdentifyFilesRequest(sha256s=unique[start:start + BATCH], with_previews=True)
            reply = await self._peer.call(self._stub.IdentifyFiles, request, deadline=600.0)
            for item in reply.files:
                found[item.sha256.lower()] = item
        return found

    async def identify(self, filenames: Sequence[str], *, strict: bool = False) -> Outcome:
        """Look up the entries named and apply the answers (not committed). With `strict`, a CivitAI
        service that fails is an error (RefreshFromCivitai); otherwise the outcome's note says so and the
        entries are left as they were (the import goes on)."""
        outcome = Outcome()
        wanted = [e for e in (self._catalog.get(n) for n in filenames) if e is not None and e.sha256]
        if not wanted:
            return outcome
        try:
            answers = await self.lookup([e.sha256 for e in wanted])
        except PeerUnavailable:
            if strict:
                raise
            outcome.note = "CivitAI service unavailable; files stay pending until the next import"
            return outcome
        except errors.ServiceError as exc:
            if strict:
                raise
            outcome.note = f"identification failed: {exc.reason}: {exc.message}"
            outcome.failed = len(wanted)
            for entry in wanted:
                self._replace(entry, apply_failed)
            return outcome
        for entry in wanted:
            answer = answers.get(entry.sha256)
            if answer is None:
                outcome.failed += 1
                self._replace(entry, apply_failed)
            elif not answer.found:
                outcome.not_found += 1
                self._replace(entry, apply_not_found)
            else:
                outcome.identified += 1
                preview = await self._preview_of(answer)
                level = answer.preview_image.nsfw_level or (answer.info.images[0].nsfw_level
                                                           if answer.info.images else 0)
                values = civitai_values(answer.info, level)
                self._replace(entry, lambda e, v=values, p=preview: apply_found(e, v, p))
        return outcome

    def _replace(self, entry: ModelEntry, change: Any) -> None:
        current = self._catalog.get(entry.filename)
        if current is not None and current.sha256 == entry.sha256:  # still the same file
            self._catalog.put(change(current))

    async def _preview_of(self, answer: civitai_pb2.IdentifiedFile) -> PreviewInfo | None:
        if not answer.preview:
            return None
        try:
            return await asyncio.to_thread(store_thumbnail, self._previews, answer.preview,
                                           nsfw_level=answer.preview_image.nsfw_level, source="civitai")
        except (PreviewRefused, OSError) as exc:
            log.warning("preview.refused", source="civitai", error=str(exc))
            return None
