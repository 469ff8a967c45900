"""The registry's domain façade: Create, Update, Delete, the active checkpoint, and the wiring of its parts
(catalog: the in-memory index; volume: the files; listing; prompt; rescan).

Reads are served from memory. A change is made to memory synchronously (so
check-then-act needs no lock on one event loop), then awaited durable through
the IndexStore's group commit. Slow work (hashing, header reads, deletes)
runs in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from metadata_svc import addressing, bulk_tags, entries, limits, prompt
from metadata_svc.catalog import Catalog
from metadata_svc.config import RegistrySettings
from metadata_svc.disk_usage import DiskUsage, biggest_count, disk_usage
from metadata_svc.duplicates import DuplicateReport, find_duplicates
from metadata_svc.errors import (
    ActiveCheckpoint,
    CheckpointNotFound,
    FileMissing,
    MissingType,
    ModelAlreadyExists,
    ModelBusy,
    NotACheckpoint,
    NotAVae,
    Sha256Mismatch,
    UploadInProgress,
    VaeNotFound,
)
from metadata_svc.filenames import check_extension, validate_filename
from metadata_svc.index_store import INDEX_NAME, IndexState, VolumeLock
from metadata_svc.library import Library
from metadata_svc.library_roots import LibraryRoots
from metadata_svc.listing import Listing
from metadata_svc.models import (
    CHECKPOINT,
    TYPES,
    VAE,
    WEIGHTS_ONLY_PICKLE_TYPES,
    ActiveCheckpointState,
    Claim,
    ComposedPrompt,
    FileFacts,
    ModelEntry,
    ModelFields,
    NewModel,
    Page,
    RescanReport,
)
from metadata_svc.rescan import Rescanner
from metadata_svc.volume import Volume
from service_kit import get_logger
from service_kit.config import DEFAULT_CHECKPOINT
from service_kit.files import fsync_dir

log = get_logger("metadata_svc.registry")


class Registry:
    """`wire_size(entry, path)`: the bytes an entry adds to a ListModels response (its page budget)."""

    def __init__(self, settings: RegistrySettings, state: IndexState,
                 wire_size: Callable[[ModelEntry, Path], int]) -> None:
        self.settings = settings
        data_dir = settings.user_models_dir.absolute()
        self.roots = LibraryRoots(data_dir, volume_dirs=(data_dir, settings.models_dir.absolute()),
                                  allowed=settings.library_allow)
        for path in settings.library_root:
            self.roots.add_from_flag(path)
        self.volume = Volume(settings.user_models_dir, settings.models_dir, self.roots)
        self.catalog = Catalog(state, self.volume.root / INDEX_NAME)
        self.store = self.catalog.store
        self.listing = Listing(self.catalog, lambda e: wire_size(e, self.volume.path_of(e)))
        self.rescanner = Rescanner(self.catalog, self.volume, allow_pickle=settings.allow_pickle)
        self.library = Library(self.catalog, self.volume, self.roots, hash_workers=settings.hash_workers,
                               get_entry=self.get)
        self.volume_lock: VolumeLock | None = None  # set by app.open_registry

    def __len__(self) -> int:
        return len(self.catalog)

    def get(self, filename: str) -> ModelEntry:
        """By key, or by a library file's `folder/file_name` (see addressing.py)."""
        return addressing.find_model(self.catalog, filename)

    def list(self, *, page_size: int, page_token: str, kind: str | None, base_model: str, query: str,
             root_id: str = "", folder: str = "") -> Page:
        return self.listing.page(page_size=page_size, page_token=page_token, kind=kind, base_model=base_model,
                                 query=query, root_id=root_id, folder=folder)

    def compose_prompt(self, text: str, selections: Sequence[tuple[str, float | None]]) -> ComposedPrompt:
        return prompt.compose_prompt(self.catalog, self.volume, text, selections)

    async def rescan(self) -> RescanReport:
        return await self.rescanner.rescan()

    async def fill_missing_hashes(self) -> None:
        await self.rescanner.fill_missing_hashes()

    # ------------------------------------------------------------------ new models

    @contextlib.contextmanager
    def claim(self, filename: str, kind: str) -> Iterator[Claim]:
        """Check a new model's name (valid, its type given, an accepted extension, not in use) and hold
        it while its file is examined or uploaded, so two callers cannot both create it."""
        validate_filename(filename)
        if kind not in TYPES:
            raise MissingType(f"{filename}: type is required (MODEL_TYPE_LORA, _CHECKPOINT, _EMBEDDING, _VAE or "
                              "_UPSCALER)", metadata={"filename": filename})
        # Embedding, VAE and upscaler pickles are read weights-only (never a full unpickle): accepted.
        fmt = check_extension(filename, allow_pickle=self.settings.allow_pickle or kind in WEIGHTS_ONLY_PICKLE_TYPES)
        if filename in self.catalog:
            raise ModelAlreadyExists(f"a model named {filename!r} already exists; nothing was overwritten",
                                     metadata={"filename": filename})
        if self.catalog.is_reserved(filename):
            # Not "exists": the name is free again as soon as that upload ends or fails.
            raise UploadInProgress(f"an upload of {filename!r} is in progress; try again when it has ended",
                                   metadata={"filename": filename})
        with self.catalog.reserve(filename):
            yield Claim(filename, kind, fmt, self.volume.folder(kind) / filename)

    async def create(self, new: NewModel) -> ModelEntry:
        """Register a file already on the volume."""
        filename = new.filename
        with self.claim(filename, new.type) as claim:
            limits.check_model_fields(new.fields, sha256=new.sha256)  # before hashing gigabytes, not after
            claimed_sha = new.sha256.strip().lower()
            limits.check_weight(new.fields.recommended_weight or 1.0, filename)
            # Hash even when the caller gives one: a cheap insurance that the index never lies
            # about a file (the caller may have hashed a different copy).
            facts = await asyncio.to_thread(self.volume.examine, claim.path, claim.format, claim.type,
                                            want_hash=True)
            if claimed_sha and claimed_sha != facts.sha256:
                raise Sha256Mismatch(
                    f"{filename}: the file's sha256 is {facts.sha256}, not the given {claimed_sha}",
                    metadata={"filename": filename, "expected": claimed_sha, "actual": facts.sha256},
                )
            entry = self._put_new(new, facts)
        await self.catalog.commit_added(entry)
        log.info("model.created", filename=filename, type=entry.type, source=entry.source, size=facts.size)
        return entry

    async def add(self, new: NewModel, facts: FileFacts) -> ModelEntry:
        """Register a file just put in place under a claim still held (see uploads.py)."""
        entry = self._put_new(new, facts)
        await self.catalog.commit_added(entry)
        return entry

    def _put_new(self, new: NewModel, facts: FileFacts) -> ModelEntry:
        entry = entries.new_entry(new, facts)
        self.catalog.put(entry)
        return entry

    # ------------------------------------------------------------------ update / delete

    def _get_for_change(self, filename: str) -> ModelEntry:
        """`get` for a change, refused while the entry is being deleted (see `_refuse_while_deleting`)."""
        entry = self.get(filename)
        self._refuse_while_deleting(filename, "filename")
        return entry

    def _refuse_while_deleting(self, filename: str, field: str) -> None:
        """An entry whose name is reserved is being deleted (Create and Upload reserve only new names):
        an Update or SetActiveCheckpoint racing the Delete could leave an entry or an active checkpoint
        without a file."""
        if self.catalog.is_reserved(filename) and filename in self.catalog:
            raise ModelBusy(f"{filename} is being deleted; try again", metadata={field: filename})

    async def update(self, filename: str, fields: ModelFields, mask: Sequence[str]) -> ModelEntry:
        current = self._get_for_change(filename)
        changed = entries.updated(current, fields, mask)
        if changed.default_vae and changed.default_vae != current.default_vae:
            self._check_vae(changed.default_vae)
        self.catalog.put(changed)  # no await since get(): nothing else changed the entry meanwhile
        await self.catalog.commit(lambda: self.catalog.restore(filename, changed, current))
        return changed

    def _check_vae(self, name: str) -> None:
        """A checkpoint's default VAE names a VAE entry (by its key)."""
        vae = self.catalog.get(name)
        if vae is None:
            raise VaeNotFound(f"no VAE {name!r}: default_vae is a VAE entry's filename",
                              metadata={"default_vae": name})
        if vae.type != VAE:
            raise NotAVae(f"{name} is a {vae.type}, not a VAE", metadata={"default_vae": name})

    async def delete(self, filename: str, keep_file: bool, delete_file: bool = False) -> ModelEntry:
        """An entry of a library root keeps its file unless `delete_file` (the library is the user's)."""
        entry = self._get_for_change(filename)
        filename = entry.filename
        if entry.root_id:
            keep_file = not delete_file
        if entry.type == CHECKPOINT and self.catalog.active == filename:
            raise ActiveCheckpoint(
                f"{filename} is the active checkpoint; set another one active before deleting it",
                metadata={"filename": filename},
            )
        with self.catalog.reserve(filename):  # Update and SetActiveCheckpoint refuse it from here on
            if not keep_file:
                # The file goes first: if the index write then fails, a retry finds the entry and no file.
                await asyncio.to_thread(_unlink_durably, self.volume.path_of(entry))
            # The background hasher may have replaced the entry (with its sha256) meanwhile: remove
            # whatever stands under the name, so no entry outlives its file.
            last = self.catalog.pop(filename) if filename in self.catalog else None
        await self.catalog.commit(lambda: self.catalog.restore(filename, None, last))
        log.info("model.deleted", filename=filename, kept_file=keep_file)
        return entry

    async def update_tags(self, filenames: Sequence[str], add: Sequence[str],
                          remove: Sequence[str]) -> builtins.list[ModelEntry]:  # `list` is a method here
        return await bulk_tags.update_tags(self.catalog, self._get_for_change, filenames, add, remove)

    # ------------------------------------------------------------------ library health (duplicates.py, disk_usage.py)

    async def duplicates(self) -> DuplicateReport:
        return await asyncio.to_thread(find_duplicates, self.volume, list(self.catalog.entries()))

    async def disk_usage(self, biggest: int) -> DiskUsage:
        count = biggest_count(biggest)
        return await asyncio.to_thread(disk_usage, self.volume, self.roots, list(self.catalog.entries()), count)

    # ------------------------------------------------------------------ active checkpoint

    def active_checkpoint(self) -> ActiveCheckpointState:
        name = self.catalog.active
        if name == DEFAULT_CHECKPOINT:
            path = self.volume.default_checkpoint_path()
            return ActiveCheckpointState(name, path, None, self.volume.present(path))
        entry = self.catalog.get(name)
        path = self.volume.path_of(entry) if entry is not None else self.volume.folder(CHECKPOINT) / name
        return ActiveCheckpointState(name, path, entry, self.volume.present(path))

    async def set_active_checkpoint(self, name: str) -> ActiveCheckpointState:
        name = name.strip()
        if name != DEFAULT_CHECKPOINT:
            validate_filename(name)
            self._refuse_while_deleting(name, "checkpoint")
            entry = self.catalog.get(name)
            if entry is None:
                raise CheckpointNotFound(
                    f"no checkpoint {name!r}: expected {DEFAULT_CHECKPOINT!r} or an installed checkpoint's filename",
                    metadata={"checkpoint": name},
                )
            if entry.type != CHECKPOINT:
                raise NotACheckpoint(f"{name} is a {entry.type}, not a checkpoint", metadata={"checkpoint": name})
            path = self.volume.path_of(entry)
            if not path.is_file():
                raise FileMissing(f"the file of checkpoint {name} is gone from checkpoints/",
                                  metadata={"checkpoint": name, "path": self.volume.relative(path)})
            self.volume.check_on_volume(path)
        catalog = self.catalog
        if name != catalog.active:
            previous, catalog.active = catalog.active, name
            await catalog.commit(lambda: setattr(catalog, "active", previous) if catalog.active == name else None)
            log.info("checkpoint.activated", checkpoint=name)
        return self.active_checkpoint()


def _unlink_durably(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
