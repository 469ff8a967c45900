"""Rescan: files dropped onto the volume by hand get entries, files gone are reported; and the
background hasher that fills in the sha256 a rescan (or the migration) skipped to start fast."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from pathlib import Path

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
from metadata_svc.volume import Volume
from service_kit import errors, get_logger
from service_kit.files import sha256_of

log = get_logger("metadata_svc.registry")  # the parts of the registry log as one

HASH_BATCH = 16  # entries hashed per index rewrite


def _is_file(item: os.DirEntry[str]) -> bool:
    """Path.is_file() for a listed name: from the listing itself unless it is a link."""
    with contextlib.suppress(OSError):
        if not item.is_symlink():
            return item.is_file(follow_symlinks=False)
    return Path(item.path).is_file()


class Rescanner:
    def __init__(self, catalog: Catalog, volume: Volume, *, allow_pickle: bool) -> None:
        self._catalog = catalog
        self._volume = volume
        self._allow_pickle = allow_pickle
        self._hash_wanted = asyncio.Event()

    def scan(self) -> ScanResult:
        """Read-only pass over the volume (runs in a thread): new entries, missing filenames, skipped files.

        Each folder is listed once (os.scandir): new files are the names not in the catalog, and an entry
        is present when its name is listed as a plain file, so 100,000 entries cost one listing per folder
        instead of a stat and two lstat calls each; links and entries in subfolders are checked one by one."""
        catalog, volume = self._catalog, self._volume
        added: list[ModelEntry] = []
        skipped: list[SkippedFile] = []
        listed: dict[str, dict[str, os.DirEntry[str]] | None] = {}  # per type; None: check entries one by one
        for kind in TYPES:
            folder = volume.folder(kind)
            if not folder.is_dir():
                listed[kind] = {}
                continue
            with os.scandir(folder) as found:
                names = {item.name: item for item in found}
            listed[kind] = None if os.path.islink(folder) else names
            for name in sorted(name for name in names.keys() - catalog.names()
                               if looks_like_model_file(name) and not catalog.is_reserved(name)):
                path = folder / name
                if not _is_file(names[name]):
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
        missing = []
        for e in list(catalog.entries()):
            if e.root_id:
                continue
            # Present when listed as a plain file (no link) in a folder that is no link: Volume.present's
            # answer (on_volume's quick test) without a stat; anything else is asked of Volume.present.
            listing = listed[e.type] if not (e.folder or e.file_name) else None
            item = listing.get(e.filename) if listing is not None else None
            try:
                if item is not None and item.is_file(follow_symlinks=False):
                    continue
            except OSError:
                pass
            if not volume.present(volume.path_of(e)):
                missing.append(e.filename)
        return ScanResult(added, sorted(missing), skipped)

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
