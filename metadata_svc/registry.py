"""The registry's domain logic: the in-memory index, its rules, and every operation the RPCs expose.

Reads are served from memory. A change is made to memory synchronously (so
check-then-act needs no lock on one event loop), then awaited durable through
the IndexStore's group commit. Slow work (hashing, header reads, deletes)
runs in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from metadata_svc import inspection as insp
from metadata_svc import limits
from metadata_svc.config import RegistrySettings
from metadata_svc.errors import (
    ActiveCheckpoint,
    AmbiguousLora,
    CheckpointNotFound,
    DuplicateLora,
    FileMissing,
    FileNotFound,
    InvalidPageSize,
    InvalidPageToken,
    InvalidUpdateMask,
    InvalidWeight,
    LoraNotFound,
    MissingType,
    ModelAlreadyExists,
    ModelBusy,
    ModelNotFound,
    NotACheckpoint,
    NotALora,
    OutsideVolume,
    Sha256Mismatch,
    UploadInProgress,
)
from metadata_svc.filenames import check_extension, looks_like_model_file, validate_filename
from metadata_svc.index_store import (
    INDEX_NAME,
    IndexState,
    IndexStore,
    VolumeLock,
)
from metadata_svc.migration import builtin_entry, builtin_spec
from metadata_svc.models import (
    CHECKPOINT,
    FOLDER_OF_TYPE,
    LORA,
    PROTO_TO_SOURCE,
    PROTO_TO_TYPE,
    Inspection,
    ModelEntry,
    clean_words,
    now_iso,
)
from metadata_svc.prompt import compose
from modelmanager.v1 import model_pb2
from service_kit import errors, get_logger
from service_kit.config import DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT_FILE
from service_kit.files import fsync_dir, real_path, resolves_inside

log = get_logger("metadata_svc.registry")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# A ListModels page stops growing at this many encoded bytes, well under gRPC's usual 4 MiB
# message limit (the largest bounded entry is under 1 MiB; see limits.py).
PAGE_BYTE_BUDGET = 2 * 1024 * 1024
MAX_ABS_WEIGHT = 10.0
HASH_BLOCK = 8 * 1024 * 1024
EDITABLE_FIELDS = ("display_name", "short_name", "trigger_words", "recommended_weight", "tags", "description",
                   "base_model")


@dataclass(frozen=True)
class FileFacts:
    size: int
    inspection: Inspection
    sha256: str


@dataclass(frozen=True)
class ComposedPrompt:
    prompt: str
    injected: list[str]
    loras: list[tuple[ModelEntry, Path, float]]


@dataclass(frozen=True)
class RescanReport:
    added: list[ModelEntry]
    missing: list[str]
    skipped: list[tuple[str, str]]


class ListOrder:
    """The entries in List's stable order, with parallel columns for fast filtering.

    Kept sorted by insertion (bisect) on every change instead of re-sorting
    10,000 entries after each write; filtering is list comprehensions over
    plain columns, several times faster than a Python predicate per entry.
    """

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        ordered = sorted(entries, key=ModelEntry.sort_key)
        self.entries = ordered
        self.keys = [e.sort_key() for e in ordered]
        self.types = [e.type for e in ordered]
        self.bases = [e.base_model.lower() for e in ordered]
        self.texts = [e.search_text() for e in ordered]

    def insert(self, entry: ModelEntry) -> None:
        key = entry.sort_key()
        i = bisect.bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.entries.insert(i, entry)
        self.types.insert(i, entry.type)
        self.bases.insert(i, entry.base_model.lower())
        self.texts.insert(i, entry.search_text())

    def remove(self, entry: ModelEntry) -> None:
        i = bisect.bisect_left(self.keys, entry.sort_key())
        if i < len(self.entries) and self.entries[i] is entry:
            for column in (self.keys, self.entries, self.types, self.bases, self.texts):
                del column[i]

    def matching(self, kind: str | None, base: str, terms: list[str]) -> list[int]:
        """Positions (ascending) of the entries that pass every filter."""
        hits: list[int] | range = range(len(self.entries))
        if kind:
            types = self.types
            hits = [i for i in hits if types[i] == kind]
        if base:
            bases = self.bases
            hits = [i for i in hits if bases[i] == base]
        texts = self.texts
        for term in terms:
            hits = [i for i in hits if term in texts[i]]
        return list(hits)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_weight(weight: float, what: str) -> float:
    if not math.isfinite(weight) or abs(weight) > MAX_ABS_WEIGHT:
        raise InvalidWeight(f"{what}: weight {weight} is not a finite number within ±{MAX_ABS_WEIGHT}",
                            metadata={"weight": weight})
    return weight


class Registry:
    def __init__(self, settings: RegistrySettings, state: IndexState) -> None:
        self.settings = settings
        self.root = settings.user_models_dir.absolute()
        self.models_dir = settings.models_dir.absolute()
        self._real_root = real_path(self.root)
        self._real_models_dir = real_path(self.models_dir)
        self._models: dict[str, ModelEntry] = state.models
        # Each entry's line of the index file, kept beside the entry so a rewrite is one C-level join.
        self._lines: dict[str, bytes] = {name: entry.json_line() for name, entry in self._models.items()}
        self._active = state.active_checkpoint
        self._reserved: set[str] = set()  # filenames being created or uploaded right now
        self._order: ListOrder | None = None  # built by the first List, then kept up to date
        # Page tokens are signed so a client cannot forge a position; they expire on restart.
        self._token_key = secrets.token_bytes(32)
        self.store = IndexStore(self.root / INDEX_NAME, self.snapshot)
        self._hash_wanted = asyncio.Event()
        self.volume_lock: VolumeLock | None = None  # set by app.open_registry

    # ------------------------------------------------------------------ state

    def snapshot(self) -> tuple[str, list[bytes]]:
        return self._active, list(self._lines.values())

    def _put(self, entry: ModelEntry) -> None:
        old = self._models.get(entry.filename)
        self._models[entry.filename] = entry
        self._lines[entry.filename] = entry.json_line()
        if self._order is not None:
            if old is not None:
                self._order.remove(old)
            self._order.insert(entry)

    def _pop(self, filename: str) -> ModelEntry:
        entry = self._models.pop(filename)
        del self._lines[filename]
        if self._order is not None:
            self._order.remove(entry)
        return entry

    def folder(self, kind: str) -> Path:
        return self.root / FOLDER_OF_TYPE[kind]

    def path_of(self, entry: ModelEntry) -> Path:
        return self.folder(entry.type) / entry.filename

    def default_checkpoint_path(self) -> Path:
        return self.models_dir / DEFAULT_CHECKPOINT_FILE

    def relative(self, path: Path) -> str:
        """How error messages name a file: relative to its volume, never a server path."""
        for root in (self.root, self.models_dir):
            if path.is_relative_to(root):
                return str(path.relative_to(root))
        return path.name

    def on_volume(self, path: Path) -> bool:
        """Whether `path`, symlinks followed, stays on the volume (the default checkpoint: the models dir)."""
        folder = path.parent
        if folder.parent in (self.root, self.models_dir) and not (os.path.islink(path) or os.path.islink(folder)):
            return True  # no link below the root (itself resolved at start): two lstat calls, not a realpath
        root = self._real_root if path.is_relative_to(self.root) else self._real_models_dir
        return resolves_inside(path, root)

    def check_on_volume(self, path: Path) -> None:
        if not self.on_volume(path):
            log.warning("file.outside_volume", path=str(path), target=os.path.realpath(path))
            name = self.relative(path)
            raise OutsideVolume(f"{name} is a link to a file outside the volume; it is never read",
                                metadata={"filename": path.name, "path": name})

    def present(self, path: Path) -> bool:
        """The file is there and may be read (an outside link counts as absent)."""
        return os.path.isfile(path) and self.on_volume(path)

    def to_proto(self, entry: ModelEntry) -> model_pb2.Model:
        path = self.path_of(entry)
        return entry.to_proto(path, self.present(path))

    def get(self, filename: str) -> ModelEntry:
        validate_filename(filename)
        entry = self._models.get(filename)
        if entry is None:
            raise ModelNotFound(f"no model {filename!r} in the registry", metadata={"filename": filename})
        return entry

    def _get_for_change(self, filename: str) -> ModelEntry:
        """`get` for a change, refused while the entry is being deleted (see `_refuse_while_deleting`)."""
        entry = self.get(filename)
        self._refuse_while_deleting(filename, "filename")
        return entry

    def _refuse_while_deleting(self, filename: str, field: str) -> None:
        """An entry whose name is reserved is being deleted (Create and Upload reserve only new names):
        an Update or SetActiveCheckpoint racing the Delete could leave an entry or an active checkpoint
        without a file."""
        if filename in self._reserved and filename in self._models:
            raise ModelBusy(f"{filename} is being deleted; try again", metadata={field: filename})

    def __len__(self) -> int:
        return len(self._models)

    # ------------------------------------------------------------------ list

    def list(
        self, *, page_size: int, page_token: str, kind: str | None, base_model: str, query: str
    ) -> tuple[list[ModelEntry], str, int]:
        if page_size < 0:
            raise InvalidPageSize(f"page_size {page_size} is negative", metadata={"page_size": page_size})
        limits.check_query(query, base_model)
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        base = base_model.strip().lower()
        terms = query.lower().split()
        fingerprint = [kind or "", base, terms]
        if self._order is None:
            self._order = ListOrder(self._models.values())
        order = self._order
        start = 0
        if page_token:
            start = bisect.bisect_right(order.keys, self._decode_token(page_token, fingerprint))
        if not (kind or base or terms):
            total = len(order.entries)
            page = order.entries[start:start + size]
            more = start + size < total
        else:
            hits = order.matching(kind, base, terms)
            total = len(hits)
            first = bisect.bisect_left(hits, start)
            page = [order.entries[i] for i in hits[first:first + size]]
            more = first + size < total
        fitted = self._fit(page)
        more = more or len(fitted) < len(page)
        page = fitted
        token = self._encode_token(page[-1].sort_key(), fingerprint) if more and page else ""
        return page, token, total

    def _fit(self, page: list[ModelEntry]) -> list[ModelEntry]:
        """The longest head of `page` within PAGE_BYTE_BUDGET (one entry at least, so paging moves on)."""
        used = 0
        for i, entry in enumerate(page):
            used += entry.wire_size(self.path_of(entry))
            if used > PAGE_BYTE_BUDGET and i > 0:
                return page[:i]
        return page

    def _encode_token(self, key: tuple[int, str, str], fingerprint: list[object]) -> str:
        payload = json.dumps([list(key), fingerprint], separators=(",", ":")).encode()
        mac = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def _decode_token(self, token: str, fingerprint: list[object]) -> tuple[int, str, str]:
        bad = InvalidPageToken("page_token is not one this server issued (or the registry restarted since)",
                               metadata={"page_token": token[:64]})
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise bad from None
        mac, payload = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]):
            raise bad
        key, issued_for = json.loads(payload)
        if issued_for != fingerprint:
            raise InvalidPageToken("page_token was issued for a different filter (type, base_model or query)",
                                   metadata={"page_token": token[:64]})
        return (int(key[0]), str(key[1]), str(key[2]))

    # ------------------------------------------------------------------ files

    def _examine(self, path: Path, fmt: str, kind: str, *, want_hash: bool) -> FileFacts:
        """Size, header inspection and (optionally) sha256 of a file in place; runs in a thread."""
        name = self.relative(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            other = self.folder(CHECKPOINT if kind == LORA else LORA) / path.name
            hint = f"; there is one in {other.parent.name}/ (wrong type?)" if other.is_file() else ""
            raise FileNotFound(f"no file {name!r} on the volume{hint}",
                               metadata={"filename": path.name, "path": name}) from None
        if not path.is_file():
            raise FileNotFound(f"{name} is not a regular file", metadata={"filename": path.name, "path": name})
        self.check_on_volume(path)
        if fmt == "safetensors":
            found = insp.inspect_file(path)
            insp.check_claim(found, kind, path.name)
        else:
            found = insp.pickle_inspection()
        return FileFacts(size, found, sha256_of(path) if want_hash else "")

    def check_new_name(self, filename: str, model_type: int) -> tuple[str, str]:
        """Validations shared by Create and Upload; returns (type, format)."""
        validate_filename(filename)
        kind = PROTO_TO_TYPE.get(model_type)
        if kind is None:
            raise MissingType(f"{filename}: type is required (MODEL_TYPE_LORA or MODEL_TYPE_CHECKPOINT)",
                              metadata={"filename": filename})
        fmt = check_extension(filename, allow_pickle=self.settings.allow_pickle)
        self._check_name_free(filename)
        return kind, fmt

    def _check_name_free(self, filename: str) -> None:
        if filename in self._models:
            raise ModelAlreadyExists(f"a model named {filename!r} already exists; nothing was overwritten",
                                     metadata={"filename": filename})
        if filename in self._reserved:
            # Not "exists": the name is free again as soon as that upload ends or fails.
            raise UploadInProgress(f"an upload of {filename!r} is in progress; try again when it has ended",
                                   metadata={"filename": filename})

    def reserve_name(self, filename: str) -> None:
        self._check_name_free(filename)
        self._reserved.add(filename)

    def release_name(self, filename: str) -> None:
        self._reserved.discard(filename)

    @contextlib.contextmanager
    def reserve(self, filename: str) -> Iterator[None]:
        """Hold a filename while its file is examined or uploaded, so two callers cannot both create it."""
        self._reserved.add(filename)
        try:
            yield
        finally:
            self._reserved.discard(filename)

    def entry_from(self, model: model_pb2.Model | None, *, filename: str, kind: str, source: str,
                    facts: FileFacts, fields: dict[str, object] | None = None) -> ModelEntry:
        f: dict[str, object] = dict(fields or {})
        if model is not None:
            f.update(
                display_name=model.display_name, short_name=model.short_name, trigger_words=model.trigger_words,
                recommended_weight=model.recommended_weight, base_model=model.base_model, tags=model.tags,
                description=model.description, civitai_model_id=model.civitai_model_id,
                civitai_version_id=model.civitai_version_id, civitai_url=model.civitai_url,
            )
        limits.check_fields(f)  # Create and Upload checked already; nothing unbounded gets in by another way
        weight = float(f.get("recommended_weight") or 1.0)  # type: ignore[arg-type]
        check_weight(weight, filename)
        base_model = str(f.get("base_model") or "").strip()
        return ModelEntry(
            filename=filename,
            type=kind,
            display_name=str(f.get("display_name") or "").strip() or Path(filename).stem,
            short_name=str(f.get("short_name") or "").strip(),
            source=source,
            trigger_words=clean_words(f.get("trigger_words") or ()),  # type: ignore[arg-type]
            recommended_weight=weight,
            base_model=base_model,
            tags=clean_words(f.get("tags") or ()),  # type: ignore[arg-type]
            description=str(f.get("description") or ""),
            file_size_bytes=facts.size,
            added_at=now_iso(),
            civitai_model_id=int(f.get("civitai_model_id") or 0) or None,  # type: ignore[call-overload]
            civitai_version_id=int(f.get("civitai_version_id") or 0) or None,  # type: ignore[call-overload]
            civitai_url=str(f.get("civitai_url") or ""),
            sha256=facts.sha256,
            inspection=facts.inspection,
        )

    # ------------------------------------------------------------------ create / update / delete

    async def create(self, model: model_pb2.Model) -> ModelEntry:
        filename = model.filename
        kind, fmt = self.check_new_name(filename, model.type)
        limits.check_fields(limits.fields_of(model))  # before hashing gigabytes, not after
        claimed_sha = model.sha256.strip().lower()
        check_weight(model.recommended_weight or 1.0, filename)
        path = self.folder(kind) / filename
        with self.reserve(filename):
            # Hash even when the caller gives one: a cheap insurance that the index never lies
            # about a file (the caller may have hashed a different copy).
            facts = await asyncio.to_thread(self._examine, path, fmt, kind, want_hash=True)
            if claimed_sha and claimed_sha != facts.sha256:
                raise Sha256Mismatch(
                    f"{filename}: the file's sha256 is {facts.sha256}, not the given {claimed_sha}",
                    metadata={"filename": filename, "expected": claimed_sha, "actual": facts.sha256},
                )
            source = PROTO_TO_SOURCE.get(model.source) or "local"
            entry = self.entry_from(model, filename=filename, kind=kind, source=source, facts=facts)
            self._put(entry)
        await self._commit_or_undo(entry)
        log.info("model.created", filename=filename, type=kind, source=source, size=facts.size)
        return entry

    async def add_uploaded(self, entry: ModelEntry) -> None:
        """Insert an entry whose file was just renamed into place (see uploads.py)."""
        self._put(entry)
        await self._commit_or_undo(entry)

    async def _commit_or_undo(self, added: ModelEntry) -> None:
        """Commit a new entry; if the index write fails, take it out again so the caller can retry."""
        await self._commit(lambda: self._restore(added.filename, added, None))

    async def _commit(self, undo: Callable[[], None]) -> None:
        """Make the change in memory durable; if the index write fails, undo it, so that what a
        client was told failed is not served meanwhile nor written by the next commit."""
        try:
            await self.store.commit()
        except errors.ServiceError:
            undo()
            raise

    def _restore(self, filename: str, changed: ModelEntry | None, previous: ModelEntry | None) -> None:
        """Put `previous` back (None: no entry) where `changed` still stands, i.e. nothing changed it since."""
        if self._models.get(filename) is not changed:
            return
        if previous is not None:
            self._put(previous)
        elif changed is not None:
            self._pop(filename)

    async def update(self, model: model_pb2.Model, mask_paths: Sequence[str]) -> ModelEntry:
        current = self._get_for_change(model.filename)
        paths = list(mask_paths)
        unknown = [p for p in paths if p not in EDITABLE_FIELDS]
        if unknown:
            raise InvalidUpdateMask(
                f"update_mask names fields that cannot be updated: {', '.join(unknown)}; "
                f"editable: {', '.join(EDITABLE_FIELDS)}",
                metadata={"fields": ",".join(unknown)},
            )
        if not paths:
            paths = [name for name in EDITABLE_FIELDS if _is_set(model, name)]
        limits.check_fields({name: getattr(model, name) for name in paths})
        changes: dict[str, object] = {}
        for name in paths:
            value = getattr(model, name)
            if name in ("trigger_words", "tags"):
                changes[name] = clean_words(value)
            elif name == "recommended_weight":
                changes[name] = check_weight(float(value) if value else 1.0, model.filename)
            elif name == "display_name":
                changes[name] = value.strip() or Path(current.filename).stem
            else:
                changes[name] = value.strip() if name != "description" else value
        updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
        self._put(updated)  # no await since get(): nothing else changed the entry meanwhile
        await self._commit(lambda: self._restore(updated.filename, updated, current))
        return updated

    async def delete(self, filename: str, keep_file: bool) -> ModelEntry:
        entry = self._get_for_change(filename)
        if entry.type == CHECKPOINT and self._active == filename:
            raise ActiveCheckpoint(
                f"{filename} is the active checkpoint; set another one active before deleting it",
                metadata={"filename": filename},
            )
        with self.reserve(filename):  # Update and SetActiveCheckpoint refuse it from here on
            if not keep_file:
                # The file goes first: if the index write then fails, a retry finds the entry and no file.
                await asyncio.to_thread(_unlink_durably, self.path_of(entry))
            # The background hasher may have replaced the entry (with its sha256) meanwhile: remove
            # whatever stands under the name, so no entry outlives its file.
            last = self._pop(filename) if filename in self._models else None
        await self._commit(lambda: self._restore(filename, None, last))
        log.info("model.deleted", filename=filename, kept_file=keep_file)
        return entry

    # ------------------------------------------------------------------ active checkpoint

    def active_checkpoint(self) -> tuple[str, Path, ModelEntry | None, bool]:
        name = self._active
        if name == DEFAULT_CHECKPOINT:
            path = self.default_checkpoint_path()
            return name, path, None, self.present(path)
        entry = self._models.get(name)
        path = self.folder(CHECKPOINT) / name
        return name, path, entry, self.present(path)

    async def set_active_checkpoint(self, name: str) -> tuple[str, Path, ModelEntry | None, bool]:
        name = name.strip()
        if name != DEFAULT_CHECKPOINT:
            validate_filename(name)
            self._refuse_while_deleting(name, "checkpoint")
            entry = self._models.get(name)
            if entry is None:
                raise CheckpointNotFound(
                    f"no checkpoint {name!r}: expected {DEFAULT_CHECKPOINT!r} or an installed checkpoint's filename",
                    metadata={"checkpoint": name},
                )
            if entry.type != CHECKPOINT:
                raise NotACheckpoint(f"{name} is a {entry.type}, not a checkpoint", metadata={"checkpoint": name})
            path = self.path_of(entry)
            if not path.is_file():
                raise FileMissing(f"the file of checkpoint {name} is gone from checkpoints/",
                                  metadata={"checkpoint": name, "path": self.relative(path)})
            self.check_on_volume(path)
        if name != self._active:
            previous, self._active = self._active, name
            await self._commit(lambda: setattr(self, "_active", previous) if self._active == name else None)
            log.info("checkpoint.activated", checkpoint=name)
        return self.active_checkpoint()

    # ------------------------------------------------------------------ prompt

    def resolve_lora(self, name: str) -> ModelEntry:
        wanted = name.strip()
        lowered = wanted.lower()
        entry = self._models.get(wanted)
        if entry is None:
            # Most specific first: filename, then its stem (A1111's `<lora:stem:w>`), then the names.
            by_file = [e for e in self._models.values() if e.filename.lower() == lowered]
            by_stem = by_file or [e for e in self._models.values() if Path(e.filename).stem.lower() == lowered]
            candidates = by_stem or [
                e for e in self._models.values() if lowered in (e.display_name.lower(), e.short_name.lower())
            ]
            loras = [e for e in candidates if e.type == LORA] or candidates
            if not loras:
                raise LoraNotFound(f"no LoRA named {name!r} (by filename, file stem, display name or short name)",
                                   metadata={"lora": name})
            if len(loras) > 1:
                names = ", ".join(sorted(e.filename for e in loras))
                raise AmbiguousLora(f"{name!r} names several LoRAs ({names}); use the filename",
                                    metadata={"lora": name, "filenames": names})
            entry = loras[0]
        if entry.type != LORA:
            raise NotALora(f"{entry.filename} is a {entry.type}, not a LoRA", metadata={"lora": name})
        return entry

    def compose_prompt(self, prompt: str, selections: Sequence[tuple[str, float | None]]) -> ComposedPrompt:
        resolved: list[tuple[ModelEntry, Path, float]] = []
        seen: set[str] = set()
        for name, weight in selections:
            entry = self.resolve_lora(name)
            if entry.filename in seen:
                raise DuplicateLora(f"LoRA {entry.filename} is selected twice",
                                    metadata={"lora": entry.filename})
            seen.add(entry.filename)
            path = self.path_of(entry)
            if not path.is_file():
                raise FileMissing(f"the file of LoRA {entry.filename} is gone from {path.parent.name}/",
                                  metadata={"lora": entry.filename, "path": self.relative(path)})
            self.check_on_volume(path)
            chosen = entry.recommended_weight if weight is None else check_weight(weight, entry.filename)
            resolved.append((entry, path, chosen))
        final, injected = compose(prompt, (e.trigger_words for e, _, _ in resolved))
        return ComposedPrompt(final, injected, resolved)

    # ------------------------------------------------------------------ rescan

    def scan(self) -> tuple[list[ModelEntry], list[str], list[tuple[str, str]]]:
        """Read-only pass over the volume (runs in a thread): new entries, missing filenames, skipped files."""
        added: list[ModelEntry] = []
        skipped: list[tuple[str, str]] = []
        for kind in (LORA, CHECKPOINT):
            folder = self.folder(kind)
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                name = path.name
                if not looks_like_model_file(name) or name in self._models or name in self._reserved:
                    continue
                if not path.is_file():
                    continue
                if not self.on_volume(path):  # before anything reads it, built-in LoRAs included
                    log.warning("file.outside_volume", path=str(path), target=os.path.realpath(path))
                    skipped.append((self.relative(path), "OUTSIDE_VOLUME: a link to a file outside the volume"))
                    continue
                spec = builtin_spec(name) if kind == LORA else None
                if spec is not None:  # the old app's built-in LoRA, dropped in later: its known metadata
                    added.append(builtin_entry(path, spec))
                    continue
                try:
                    validate_filename(name)
                    fmt = check_extension(name, allow_pickle=self.settings.allow_pickle)
                    facts = self._examine(path, fmt, kind, want_hash=False)
                except errors.ServiceError as exc:
                    skipped.append((self.relative(path), f"{exc.reason}: {exc.message}"))
                    continue
                except OSError as exc:
                    log.warning("rescan.unreadable", path=str(path), error=str(exc))
                    skipped.append((self.relative(path), f"UNREADABLE: {exc.strerror or type(exc).__name__}"))
                    continue
                added.append(self.entry_from(None, filename=name, kind=kind, source="local", facts=facts))
        missing = sorted(name for name, e in list(self._models.items()) if not self.present(self.path_of(e)))
        return added, missing, skipped

    def apply_scan(self, added: list[ModelEntry]) -> list[ModelEntry]:
        kept = []
        for entry in added:
            if entry.filename not in self._models and entry.filename not in self._reserved:
                self._put(entry)
                kept.append(entry)
        if kept:
            self._hash_wanted.set()
        return kept

    async def rescan(self) -> RescanReport:
        added, missing, skipped = await asyncio.to_thread(self.scan)
        kept = self.apply_scan(added)
        if kept:
            await self.store.commit()
        for path, reason in skipped:
            log.warning("rescan.skipped", path=path, reason=reason)
        return RescanReport(kept, missing, skipped)

    # ------------------------------------------------------------------ background hashing

    async def fill_missing_hashes(self) -> None:
        """Forever: hash entries registered without a sha256 (rescan and migration skip hashing to start fast)."""
        self._hash_wanted.set()
        while True:
            await self._hash_wanted.wait()
            self._hash_wanted.clear()
            pending = 0
            for entry in [e for e in self._models.values() if not e.sha256]:
                if not self.on_volume(self.path_of(entry)):
                    continue  # a link out of the volume: never read (rescan reports it missing)
                try:
                    digest = await asyncio.to_thread(sha256_of, self.path_of(entry))
                except OSError:
                    continue  # gone or unreadable: reported by rescan, retried on the next one
                if self._models.get(entry.filename) is entry:
                    self._put(dataclasses.replace(entry, sha256=digest))
                    pending += 1
                if pending >= 16:  # one index rewrite per batch, not per file
                    pending = await self._commit_quietly()
            if pending:
                await self._commit_quietly()

    async def _commit_quietly(self) -> int:
        try:
            await self.store.commit()
        except errors.ServiceError:
            log.warning("hash.commit_failed")  # the hashes stay in memory and go out with the next write
        return 0


def _is_set(model: model_pb2.Model, name: str) -> bool:
    value = getattr(model, name)
    return bool(len(value)) if not isinstance(value, float | int) else value != 0


def _unlink_durably(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
