"""The registry's library side: roots (add, list, remove), import jobs (start, get, watch, list, cancel),
refreshes from CivitAI and model previews. The façade (registry.py) holds one of these."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from metadata_svc import identify
from metadata_svc.catalog import Catalog
from metadata_svc.errors import (
    ActiveCheckpoint,
    CivitaiUnavailable,
    ImageTooLarge,
    IndexWriteFailed,
    InvalidImage,
    InvalidImportMode,
    MissingSelector,
    ModelNotFound,
    PreviewNotFound,
    TooManyItems,
)
from metadata_svc.file_hashes import HashCache
from metadata_svc.identify import Identifier
from metadata_svc.import_jobs import ImportJob, ImportJobs, ImportMode, new_job_id
from metadata_svc.library_import import LibraryImporter
from metadata_svc.library_roots import LibraryRoot, LibraryRoots
from metadata_svc.models import CHECKPOINT, LOOKUP_NOT_FOUND, ModelEntry, PreviewInfo
from metadata_svc.previews import PreviewReason, PreviewRefused, PreviewStore, Thumbnail
from metadata_svc.volume import Volume
from service_kit import get_logger
from service_kit.peer import Peer, PeerUnavailable

log = get_logger("metadata_svc.registry")

HASH_CACHE_NAME = ".hash-cache.json"
DATA_DIR = ".registry"  # previews live under <volume>/.registry/previews/
MAX_REFRESH = 1000
MAX_PREVIEW_UPLOAD = 16 * 1024 * 1024
PREVIEW_SOURCES = ("civitai", "sidecar", "upload")


@dataclass(frozen=True)
class RootView:
    root: LibraryRoot
    model_count: int


class Library:
    def __init__(self, catalog: Catalog, volume: Volume, roots: LibraryRoots, *, hash_workers: int,
                 get_entry: Callable[[str], ModelEntry]) -> None:
        self._catalog = catalog
        self._volume = volume
        self.roots = roots
        self._get = get_entry
        self.previews = PreviewStore(volume.root / DATA_DIR)
        self.hash_cache = HashCache(volume.root / HASH_CACHE_NAME)
        self.identifier = Identifier(catalog, None, self.previews)
        self.jobs = ImportJobs()
        self._hash_workers = hash_workers
        self._importer = self._make_importer()

    def _make_importer(self) -> LibraryImporter:
        return LibraryImporter(self._catalog, self._volume, self.roots, self.hash_cache, self.previews,
                               self.identifier, hash_workers=self._hash_workers)

    def connect_civitai(self, peer: Peer) -> None:
        """The CivitAI service identification goes through (made on the event loop, see app.py)."""
        self.identifier = Identifier(self._catalog, peer, self.previews)
        self._importer = self._make_importer()

    # ------------------------------------------------------------------ roots

    def _count(self, root_id: str) -> int:
        return sum(1 for e in self._catalog.entries() if e.root_id == root_id)

    def view(self, root: LibraryRoot) -> RootView:
        return RootView(root, self._count(root.id))

    def add_root(self, path: str, *, write_back: bool) -> RootView:
        try:
            return self.view(self.roots.add(path, write_back=write_back))
        except OSError as exc:
            raise IndexWriteFailed(f"could not write the library roots list: {exc.strerror or exc}",
                                   metadata={"path": self.roots.path.name}) from exc

    def list_roots(self) -> list[RootView]:
        return [self.view(r) for r in self.roots]

    async def remove_root(self, root_id: str) -> tuple[LibraryRoot, int]:
        root = self.roots.get(root_id)
        members = [e for e in self._catalog.entries() if e.root_id == root_id]
        if any(e.type == CHECKPOINT and e.filename == self._catalog.active for e in members):
            raise ActiveCheckpoint(f"the active checkpoint {self._catalog.active} is in this root; set another "
                                   "one active first", metadata={"root_id": root_id})
        running = self.jobs.running_for(root.path)
        if running is not None:
            self.jobs.cancel(running.id)
        try:
            self.roots.remove(root_id)
        except OSError as exc:
            raise IndexWriteFailed(f"could not write the library roots list: {exc.strerror or exc}",
                                   metadata={"path": self.roots.path.name}) from exc
        for entry in members:
            if entry.filename in self._catalog:
                self._catalog.pop(entry.filename)
        await self._catalog.store.commit()
        return root, len(members)

    # ------------------------------------------------------------------ imports

    def start_import(self, *, path: str, root_id: str, mode: str, no_identify: bool, write_back: bool,
                     force_identify: bool) -> ImportJob:
        if not path and not root_id:
            raise MissingSelector("give a folder (path) or a library root (root_id) to import",
                                  metadata={"field": "selector"})
        try:
            chosen = ImportMode(mode or ImportMode.IN_PLACE)
        except ValueError:
            raise InvalidImportMode(f"unknown import mode {mode!r}", metadata={"mode": mode}) from None
        if root_id:
            if chosen != ImportMode.IN_PLACE:
                raise InvalidImportMode("a library root is indexed in place; link or copy takes a path",
                                        metadata={"mode": chosen.value})
            root = self.roots.get(root_id)
            job = ImportJob(new_job_id(), root.id, root.path, chosen)
        elif chosen == ImportMode.IN_PLACE:
            root = self._root_for_path(path, write_back)
            job = ImportJob(new_job_id(), root.id, root.path, chosen)
        else:
            job = ImportJob(new_job_id(), "", self.roots.check_source(path), chosen)
        job.no_identify, job.force_identify = no_identify, force_identify
        self.jobs.start(job, self._importer.run)
        log.info("import.started", job_id=job.id, root_id=job.root_id, mode=chosen.value)
        return job

    def _root_for_path(self, path: str, write_back: bool) -> LibraryRoot:
        """The root at `path` (a rescan), else a new root there (checked like AddLibraryRoot)."""
        if os.path.isabs(path) and "\0" not in path:
            existing = self.roots.by_path(Path(os.path.realpath(path)))
            if existing is not None:
                return existing
        return self.add_root(path, write_back=write_back).root

    def watch(self, job_id: str) -> AsyncIterator[ImportJob]:
        return self.jobs.watch(job_id)

    # ------------------------------------------------------------------ CivitAI refresh

    async def refresh(self, filenames: Sequence[str], *, force: bool) -> list[ModelEntry]:
        if len(filenames) > MAX_REFRESH:
            raise TooManyItems(f"at most {MAX_REFRESH} filenames per refresh", metadata={
                "field": "filenames", "limit": MAX_REFRESH, "count": len(filenames)})
        entries = [self._get(name) for name in filenames]
        # An explicit refresh asks again about everything but a recent NOT_FOUND (unless forced).
        keys = [e.filename for e in entries
                if force or e.civitai_lookup != LOOKUP_NOT_FOUND or identify.due(e, force=False)]
        try:
            await self.identifier.identify(keys, strict=True)
        except PeerUnavailable as exc:
            raise CivitaiUnavailable("the CivitAI service did not answer; try again later",
                                     metadata={"service": "civitai"}) from exc
        await self._catalog.store.commit()
        return [self._catalog.get(e.filename) or e for e in entries]

    # ------------------------------------------------------------------ previews

    def get_preview(self, filename: str) -> tuple[Thumbnail, PreviewInfo]:
        entry = self._get(filename)
        info = entry.preview
        thumb = self.previews.get(info.sha256) if info is not None else None
        if info is None or thumb is None:
            raise PreviewNotFound(f"{entry.filename} has no preview", metadata={"filename": entry.filename})
        return thumb, info

    async def set_preview(self, filename: str, image: bytes, *, nsfw_level: int, source: str) -> PreviewInfo:
        entry = self._get(filename)
        if len(image) > MAX_PREVIEW_UPLOAD:
            raise ImageTooLarge(f"the image is over {MAX_PREVIEW_UPLOAD} bytes",
                                metadata={"limit": MAX_PREVIEW_UPLOAD, "size": len(image)})
        kind = source if source in PREVIEW_SOURCES else "upload"
        level = nsfw_level if 0 <= nsfw_level <= 63 else 0
        try:
            info = await asyncio.to_thread(identify.store_thumbnail, self.previews, image, nsfw_level=level,
                                           source=kind)
        except PreviewRefused as exc:
            if exc.reason in (PreviewReason.TOO_LARGE, PreviewReason.TOO_MANY_PIXELS):
                raise ImageTooLarge(f"the image is too large: {exc.detail}", metadata={"filename": filename}) from None
            raise InvalidImage(f"not a PNG, JPEG or WebP image we can read: {exc.detail}",
                               metadata={"filename": filename}) from None
        current = self._catalog.get(entry.filename)
        if current is None:
            raise ModelNotFound(f"no model {filename!r} in the registry", metadata={"filename": filename})
        changed = dataclasses.replace(current, preview=info)
        self._catalog.put(changed)
        await self._catalog.commit(lambda: self._catalog.restore(current.filename, changed, current))
        return info

    async def close(self) -> None:
        await self.jobs.close()
        await asyncio.to_thread(self.hash_cache.save)
