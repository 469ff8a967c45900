"""Updates of installed CivitAI models: the bulk check, "ignore this version", and replacing an entry.

- The check asks CivitAI's `/models?ids=` for 100 models a call, one call at a
  time (the API client retries 429/5xx with Retry-After), so 2,000 installed
  models cost 20 calls; `modelVersions[0]` is the latest.
- Ignored versions are the user's choice, kept in one small JSON file on the
  volume (`.civitai-ignored-updates.json`, written whole and atomically like
  the job journal), read once at start.
- A download with `replaces` carries the old entry's edits to the new entry
  once it is registered, then deletes the old one if asked. Every failure
  there leaves the old entry as it was: an update never loses a model.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from civitai_svc import errors as E
from civitai_svc.api_client import MODELS_BATCH, CivitaiApi, parse_time
from civitai_svc.catalog import Catalog
from civitai_svc.metadata import find_version
from civitai_svc.references import Kind, Reference
from civitai_svc.registry_client import RegistryClient
from metadata_svc.entries import EDITABLE_FIELDS
from metadata_svc.limits import clip_model
from metadata_svc.models import clean_words
from modelmanager.v1 import civitai_pb2, model_pb2
from service_kit.files import write_atomic
from service_kit.logs import get_logger

log = get_logger("civitai_svc.updates")

IGNORED_FILE = ".civitai-ignored-updates.json"
MAX_IGNORED = 10_000  # versions; the whole set is read at each check and rewritten at each change
MAX_FILENAMES = 10_000  # per CheckUpdates
# Edits made before the registry recorded them: these are carried when they differ from CivitAI's values.
COMPARED_FIELDS = ("trigger_words", "recommended_weight", "tags")
_VERSION = 1


# ---------------------------------------------------------------------- ignored versions


class IgnoredUpdates:
    """{model id: ignored version ids}, durable. Changes are serialized; each is on disk before it returns."""

    def __init__(self, user_models_dir: Path) -> None:
        self.path = Path(user_models_dir) / IGNORED_FILE
        self._ignored: dict[int, set[int]] = self._load()
        self._lock = asyncio.Lock()

    def versions(self, model_id: int) -> frozenset[int]:
        return frozenset(self._ignored.get(model_id, ()))

    async def ignore(self, model_id: int, version_id: int) -> list[int]:
        _check_ids(model_id, version_id)
        async with self._lock:
            current = self._ignored.get(model_id, set())
            if version_id not in current:
                if sum(len(v) for v in self._ignored.values()) >= MAX_IGNORED:
                    raise E.TooManyIgnored(f"at most {MAX_IGNORED} versions can be ignored; unignore some first",
                                           metadata={"limit": MAX_IGNORED})
                await self._write({**self._ignored, model_id: current | {version_id}})
        return sorted(self._ignored.get(model_id, ()))

    async def unignore(self, model_id: int, version_id: int) -> list[int]:
        _check_ids(model_id, version_id)
        async with self._lock:
            current = self._ignored.get(model_id, set())
            if version_id in current:
                changed = {**self._ignored, model_id: current - {version_id}}
                await self._write({k: v for k, v in changed.items() if v})
        return sorted(self._ignored.get(model_id, ()))

    async def _write(self, ignored: dict[int, set[int]]) -> None:
        """On disk first, then in memory: a failed write changes nothing."""
        data = {"version": _VERSION, "ignored": {str(k): sorted(v) for k, v in sorted(ignored.items())}}
        try:
            await asyncio.to_thread(write_atomic, self.path, (json.dumps(data, indent=1) + "\n").encode())
        except OSError as exc:
            log.error("updates.ignored_write_failed", path=str(self.path), error=str(exc))
            raise E.VolumeWriteFailed(f"cannot save the ignored updates: {exc.strerror or type(exc).__name__}",
                                      metadata={"file": IGNORED_FILE}) from None
        self._ignored = ignored

    def _load(self) -> dict[int, set[int]]:
        """The stored set; a file that cannot be read is logged and moved aside, never fatal."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("updates.ignored_unreadable", path=str(self.path), error=str(exc))
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("ignored"), dict):
                raise ValueError(f"not a version {_VERSION} file")
            loaded = {int(k): {int(v) for v in vs if int(v) > 0} for k, vs in data["ignored"].items() if int(k) > 0}
        except (ValueError, TypeError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            log.warning("updates.ignored_corrupt", path=str(self.path), why=str(exc), moved_to=str(aside))
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return {}
        return {k: v for k, v in loaded.items() if v}


def _check_ids(model_id: int, version_id: int) -> None:
    if model_id <= 0 or version_id <= 0:
        raise E.InvalidId("model_id and version_id must be positive CivitAI ids",
                          metadata={"model_id": model_id, "version_id": version_id})


# ---------------------------------------------------------------------- the check


class UpdateChecker:
    def __init__(self, api: CivitaiApi, registry: RegistryClient, ignored: IgnoredUpdates) -> None:
        self.api = api
        self.registry = registry
        self.ignored = ignored

    async def installed(self, filenames: Iterable[str]) -> list[model_pb2.Model]:
        """The entries to check: the named ones (one pass over the registry), or every CivitAI entry."""
        wanted = list(dict.fromkeys(filenames))
        if len(wanted) > MAX_FILENAMES:
            raise E.TooManyItems(f"at most {MAX_FILENAMES} filenames a check", metadata={"limit": MAX_FILENAMES})
        if not wanted:
            return await self.registry.civitai_models()
        names = set(wanted)
        found = {m.filename: m async for m in self.registry.iter_models() if m.filename in names}
        missing = [name for name in wanted if name not in found]
        if missing:
            raise E.ModelNotFound(f"no installed model {missing[0]!r}", metadata={"filename": missing[0][:256]})
        return [found[name] for name in wanted]

    async def check(self, request: civitai_pb2.CheckUpdatesRequest) -> civitai_pb2.CheckUpdatesResponse:
        installed = await self.installed(request.filenames)
        token = request.token or None
        model_ids = list(dict.fromkeys(m.civitai_model_id for m in installed if m.civitai_model_id > 0))
        answers: dict[int, dict[str, Any]] = {}
        failure: E.errors.ServiceError | None = None
        batches = [model_ids[i : i + MODELS_BATCH] for i in range(0, len(model_ids), MODELS_BATCH)]
        for batch in batches:  # one at a time: CivitAI rate-limits bursts
            try:
                items = await self.api.models_by_ids(batch, token, fresh=True)
            except E.errors.ServiceError as exc:
                log.warning("updates.batch_failed", models=len(batch), reason=exc.reason, error=exc.message)
                failure = exc
                continue
            asked = set(batch)
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("id"), int) and item["id"] in asked:
                    answers[item["id"]] = item
        if failure is not None and not answers:
            raise failure
        now = datetime.now(UTC)
        return civitai_pb2.CheckUpdatesResponse(
            updates=[self._update(m, answers.get(m.civitai_model_id), now) for m in installed])

    def _update(self, model: model_pb2.Model, data: dict[str, Any] | None, now: datetime) -> civitai_pb2.ModelUpdate:
        update = civitai_pb2.ModelUpdate(
            filename=model.filename, model_id=model.civitai_model_id, installed_version_id=model.civitai_version_id,
            installed_version_name=model.civitai_version_name, civitai_url=model.civitai_url,
        )
        versions = [v for v in (data or {}).get("modelVersions") or [] if isinstance(v, dict)]
        if not versions:
            return update
        update.checked = True
        latest = versions[0]  # newest first
        update.latest_version_id = _int(latest.get("id"))
        update.latest_version_name = str(latest.get("name") or "")
        update.latest_base_model = str(latest.get("baseModel") or "")
        _set_time(update.latest_published_at, latest.get("publishedAt") or latest.get("createdAt"))
        mine = find_version(data or {}, model.civitai_version_id)
        if mine is not None:
            update.installed_version_name = str(mine.get("name") or "")
        update.update_available = bool(update.latest_version_id) and update.latest_version_id != model.civitai_version_id
        deadline = parse_time(latest.get("earlyAccessDeadline") or latest.get("earlyAccessEndsAt"))
        if deadline is not None and deadline > now:
            update.early_access = True
            update.early_access_deadline.FromDatetime(deadline)
        elif str(latest.get("availability") or "") == "EarlyAccess" and deadline is None:
            update.early_access = True  # CivitAI says so without a date
        update.ignored = update.latest_version_id in self.ignored.versions(model.civitai_model_id)
        return update


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _set_time(ts: Timestamp, value: object) -> None:
    parsed = parse_time(value)
    if parsed is not None:
        ts.FromDatetime(parsed)


# ---------------------------------------------------------------------- replacing an entry


@dataclass
class Replaced:
    """What a replacement did: the new entry (with the edits carried), the fields carried, whether the old
    entry went, and why not when something was left undone."""

    model: model_pb2.Model
    carried: list[str] = field(default_factory=list)
    deleted: bool = False
    note: str = ""


async def check_replaces(registry: RegistryClient, filename: str, info: civitai_pb2.CivitaiModelInfo) -> None:
    """StartDownload's `replaces`: an installed entry of the same CivitAI model, not this very version."""
    old = await registry.find_model(filename)
    if old is None:
        raise E.ModelNotFound(f"no installed model {filename[:256]!r} to replace", metadata={"filename": filename[:256]})
    if old.civitai_model_id != info.model_id or old.civitai_version_id == info.version_id:
        raise E.NotSameModel(
            f"{old.filename} is not an older version of CivitAI model {info.model_id} ({info.name})",
            metadata={"filename": old.filename, "model_id": info.model_id, "version_id": info.version_id})


class Replacer:
    def __init__(self, catalog: Catalog, registry: RegistryClient) -> None:
        self.catalog = catalog
        self.registry = registry

    async def replace(self, old_filename: str, new: model_pb2.Model, *, delete: bool,
                      token: str | None) -> Replaced:
        """Carry `old_filename`'s edits to `new` (registered), then delete the old entry when asked. Never
        raises a service error: what could not be done is the note, and the old entry stays."""
        try:
            old = await self.registry.find_model(old_filename, wait=True)
        except E.errors.ServiceError as exc:
            return Replaced(new, note=f"the entry to replace could not be read ({exc.reason}); it was kept")
        if old is None:
            return Replaced(new, note=f"{old_filename} is no longer installed; nothing was carried")
        fields = await self.edited_fields(old, token)
        result = Replaced(new)
        if fields:
            carried = model_pb2.Model(filename=new.filename)
            for name in fields:
                value = getattr(old, name)
                if isinstance(value, str | float | int):
                    setattr(carried, name, value)
                else:
                    getattr(carried, name).extend(value)
            try:
                result.model = await self.registry.update_model(carried, fields, wait=True)
            except E.errors.ServiceError as exc:
                log.warning("update.edits_not_carried", old=old.filename, new=new.filename, reason=exc.reason,
                            error=exc.message)
                result.note = (f"the edits of {old.filename} could not be carried ({exc.reason}: {exc.message}); "
                               "it was kept")
                return result
            result.carried = fields
        if delete:
            try:
                await self.registry.delete_model(old.filename, delete_file=True, wait=True)
                result.deleted = True
            except E.errors.ServiceError as exc:
                log.warning("update.old_not_deleted", old=old.filename, reason=exc.reason, error=exc.message)
                result.note = f"{old.filename} was kept: the registry did not delete it ({exc.reason}: {exc.message})"
        log.info("update.replaced", old=old.filename, new=new.filename, carried=",".join(result.carried),
                 deleted=result.deleted)
        return result

    async def edited_fields(self, old: model_pb2.Model, token: str | None) -> list[str]:
        """The old entry's fields that are the user's: those it records as edited, and the compared ones whose
        value is not what CivitAI gives for its version (all of them when that cannot be asked)."""
        edited = {f for f in old.user_edited_fields if f in EDITABLE_FIELDS}
        baseline = await self._civitai_values(old, token)
        for name in COMPARED_FIELDS:
            if baseline is None or _differs(name, getattr(old, name), getattr(baseline, name)):
                edited.add(name)
        return [f for f in EDITABLE_FIELDS if f in edited]

    async def _civitai_values(self, old: model_pb2.Model, token: str | None) -> model_pb2.Model | None:
        """What the installer would have written for the old version, or None when CivitAI cannot say."""
        if not old.civitai_version_id:
            return None
        try:
            info = await self.catalog.lookup(Reference(Kind.VERSION, version_id=old.civitai_version_id), token)
        except E.errors.ServiceError as exc:
            log.info("update.old_version_unknown", version_id=old.civitai_version_id, reason=exc.reason)
            return None
        values = model_pb2.Model(trigger_words=list(info.trigger_words), tags=list(info.tags),
                                 recommended_weight=info.recommended_weight or 1.0)
        clip_model(values)
        return values


def _differs(name: str, mine: Any, civitai: Any) -> bool:
    if name == "recommended_weight":
        return abs(float(mine or 1.0) - float(civitai or 1.0)) > 1e-9
    return [w.lower() for w in clean_words(mine)] != [w.lower() for w in clean_words(civitai)]
