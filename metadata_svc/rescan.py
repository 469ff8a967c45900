"""Rescan: files dropped onto the volume by hand get entries, files gone are reported; and the
background hasher that fills in the sha256 a rescan (or the migration) skipped to start fast."""

from __future__ import annotations

import asyncio
import dataclasses
import os

from metadata_svc.catalog import Catalog
from metadata_svc.entries import new_entry
from metadata_svc.filenames import check_extension, looks_like_model_file, validate_filename
from metadata_svc.migration import builtin_entry, builtin_spec
from metadata_svc.models import (
    LORA,
    TYPES,
    WEIGHTS_ONLY_PICKLE_TYPES,
    ModelEntry,
    NewModel,
    RescanReport,
    ScanResult,
    SkippedFile,
)
from metadata_svc.volume import Volume, sha256_of
from service_kit import errors, get_logger

log = get_logger("metadata_svc.registry")  # the parts of the registry log as one

HASH_BATCH = 16  # entries hashed per index rewrite


class Rescanner:
    def __init__(self, catalog: Catalog, volume: Volume, *, allow_pickle: bool) -> None:
        self._catalog = catalog
        self._volume = volume
        self._allow_pickle = allow_pickle
        self._hash_wanted = asyncio.Event()

    def scan(self) -> ScanResult:
        """Read-only pass over the volume (runs in a thread): new entries, missing filenames, skipped files."""
        catalog, volume = self._catalog, self._volume
        added: list[ModelEntry] = []
        skipped: list[SkippedFile] = []
        for kind in TYPES:
            folder = volume.folder(kind)
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                name = path.name
                if not looks_like_model_file(name) or name in catalog or catalog.is_reserved(name):
                    continue
                if not path.is_file():
                    continue
                if not volume.on_volume(path):  # before anything reads it, built-in LoRAs included
                    log.warning("file.outside_volume", path=str(path), target=os.path.realpath(path))
                    skipped.append(SkippedFile(volume.relative(path),
                                               "OUTSIDE_VOLUME: a link to a file outside the volume"))
                    continue
                spec = builtin_spec(name) if kind == LORA else None
                if spec is not None:  # the old app's built-in LoRA, dropped in later: its known metadata
                    added.append(builtin_entry(path, spec))
                    continue
                try:
                    validate_filename(name)
                    fmt = check_extension(name, allow_pickle=self._allow_pickle or kind in WEIGHTS_ONLY_PICKLE_TYPES)
                    facts = volume.examine(path, fmt, kind, want_hash=False)
                except errors.ServiceError as exc:
                    skipped.append(SkippedFile(volume.relative(path), f"{exc.reason}: {exc.message}"))
                    continue
                except OSError as exc:
                    log.warning("rescan.unreadable", path=str(path), error=str(exc))
                    skipped.append(SkippedFile(volume.relative(path),
                                               f"UNREADABLE: {exc.strerror or type(exc).__name__}"))
                    continue
                added.append(new_entry(NewModel(filename=name, type=kind, source="local"), facts))
        # Library roots report their own missing files (their imports); this is the volume's rescan.
        missing = sorted(e.filename for e in list(catalog.entries())
                         if not e.root_id and not volume.present(volume.path_of(e)))
        return ScanResult(added, missing, skipped)

    def apply(self, found: ScanResult) -> list[ModelEntry]:
        """Put the scan's new entries in the catalog (not committed), those still new; returns them."""
        kept = []
        for entry in found.added:
            if entry.filename not in self._catalog and not self._catalog.is_reserved(entry.filename):
                self._catalog.put(entry)
                kept.append(entry)
        if kept:
            self._hash_wanted.set()
        return kept

    async def rescan(self) -> RescanReport:
        found = await asyncio.to_thread(self.scan)
        kept = self.apply(found)
        if kept:
            await self._catalog.store.commit()
        for skip in found.skipped:
            log.warning("rescan.skipped", path=skip.path, reason=skip.reason)
        return RescanReport(kept, found.missing, found.skipped)

    async def fill_missing_hashes(self) -> None:
        """Forever: hash entries registered without a sha256 (rescan and migration skip hashing to start fast)."""
        catalog, volume = self._catalog, self._volume
        self._hash_wanted.set()
        while True:
            await self._hash_wanted.wait()
            self._hash_wanted.clear()
            pending = 0
            # Root entries are hashed by their import (in parallel, with the hash cache), not here.
            for entry in [e for e in catalog.entries() if not e.sha256 and not e.root_id]:
                path = volume.path_of(entry)
                if not volume.on_volume(path):
                    continue  # a link out of the volume: never read (rescan reports it missing)
                try:
                    digest = await asyncio.to_thread(sha256_of, path)
                except OSError:
                    continue  # gone or unreadable: reported by rescan, retried on the next one
                if catalog.get(entry.filename) is entry:
                    catalog.put(dataclasses.replace(entry, sha256=digest))
                    pending += 1
                if pending >= HASH_BATCH:  # one index rewrite per batch, not per file
                    pending = await self._commit_quietly()
            if pending:
                await self._commit_quietly()

    async def _commit_quietly(self) -> int:
        try:
            await self._catalog.store.commit()
        except errors.ServiceError:
            log.warning("hash.commit_failed")  # the hashes stay in memory and go out with the next write
        return 0
