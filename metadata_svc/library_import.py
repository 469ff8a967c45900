"""The work of one import job: scan a folder, register what loads (listed at once, chunk by chunk), merge
other tools' sidecars, hash in the background, find moved files again by hash, identify on CivitAI.

In place (a library root): entries keep their path in the root. Link / copy: each file is hard-linked
(a copy across file systems) or copied into the volume's `loras/` or `checkpoints/`, its subfolder kept.

A rescan of an unchanged root opens no file: the scan is given the verdicts of the entries it knows (by
FileKey) and the hashes come from the hash cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from metadata_svc import identify, limits
from metadata_svc.addressing import key_for
from metadata_svc.catalog import Catalog
from metadata_svc.file_hashes import FileKey, HashCache, HashRequest, hash_files
from metadata_svc.filenames import validate_filename
from metadata_svc.identify import Identifier
from metadata_svc.import_jobs import Cancelled, ImportJob, ImportMode, ImportState
from metadata_svc.inspection import SkipReason, Verdict
from metadata_svc.library_roots import LibraryRoots
from metadata_svc.library_scan import EntryKind, ScannedFile, scan_library
from metadata_svc.models import FOLDER_OF_TYPE, LOOKUP_PENDING, ModelEntry, PreviewInfo, clean_words, now_iso
from metadata_svc.previews import MAX_INPUT_BYTES, PreviewRefused, PreviewStore
from metadata_svc.sidecars import (
    ModelInfo,
    SidecarKind,
    WriteBackRefused,
    preview_names,
    read_sidecars,
    stem_of,
    write_a1111_sidecar,
)
from metadata_svc.volume import Volume
from service_kit import errors, get_logger
from service_kit.files import resolves_inside, write_atomic

log = get_logger("metadata_svc.registry")

CHUNK = 256  # new model files per step: read (sidecars, previews), registered and committed together
# Files per step in all: the ones already known cost a stat and a dict look-up, so an unchanged rescan is one
# step (one thread hop, one registration pass) per this many files rather than per CHUNK.
CHUNK_FILES = 4096
# A CivitAI copy among the sidecars: its fields stay CivitAI's (a refresh may change them).
CIVITAI_COPIES = {SidecarKind.CIVITAI_HELPER.value}


@dataclass
class Found:
    """One scanned model file, with what was read next to it (new files only)."""

    file: ScannedFile
    info: ModelInfo | None = None
    preview: PreviewInfo | None = None
    placed: Path | None = None  # link/copy: where the file now is in the volume
    problem: str = ""  # link/copy: why it could not be placed


def parse_key(token: str) -> FileKey | None:
    try:
        dev, ino, size, mtime = (int(p) for p in token.split(":"))
    except ValueError:
        return None
    return FileKey(dev, ino, size, mtime)


def key_of(entry: ModelEntry) -> FileKey | None:
    """The entry's FileKey, parsed once per entry (entries never change in place)."""
    return entry.cached("file_key", lambda: parse_key(entry.file_key)) if entry.file_key else None


def _known_verdict(entry: ModelEntry) -> Verdict:
    """What a rescan makes of the entry's file while its FileKey is unchanged (made once per entry)."""
    return entry.cached("known_verdict", lambda: Verdict(kind=entry.type, inspection=entry.inspection))


def _sidecar_values(info: ModelInfo) -> tuple[dict[str, object], tuple[str, ...]]:
    """A sidecar merge as entry values, and the fields that count as the sidecars' (not CivitAI copies)."""
    values: dict[str, object] = {
        "display_name": info.display_name,
        "trigger_words": clean_words(info.trigger_words),
        "base_model": info.base_model,
        "tags": clean_words(info.tags),
        "description": info.description,
        "notes": info.notes,
        "civitai_model_id": info.civitai_model_id or None,
        "civitai_version_id": info.civitai_version_id or None,
        "civitai_url": info.civitai_url,
        "civitai_version_name": info.version_name,
        "nsfw_level": info.nsfw_level,
    }
    if info.recommended_weight is not None:
        values["recommended_weight"] = limits.check_weight(info.recommended_weight, "sidecar")
    names = {"version_name": "civitai_version_name"}
    set_values = {k: v for k, v in values.items() if v}
    owned = tuple(sorted(names.get(f, f) for f, layer in info.sources.items()
                         if layer not in CIVITAI_COPIES and names.get(f, f) in set_values))
    return set_values, owned


class LibraryImporter:
    def __init__(self, catalog: Catalog, volume: Volume, roots: LibraryRoots, cache: HashCache,
                 previews: PreviewStore, identifier: Identifier, *, hash_workers: int) -> None:
        self._catalog = catalog
        self._volume = volume
        self._roots = roots
        self._cache = cache
        self._previews = previews
        self._identifier = identifier
        self._hash_workers = hash_workers
        # (root_id, catalog version) -> the entries by path and their verdicts by FileKey, as _known builds
        # them: while the catalog is unchanged (rescan after rescan of an unchanged root) they are the same.
        self._known_cache: tuple[tuple[str, int], dict[str, ModelEntry], dict[FileKey, Verdict]] | None = None

    # ------------------------------------------------------------------ the job

    async def run(self, job: ImportJob) -> None:
        self._step(job, ImportState.SCANNING)
        touched = await self._scan(job)
        self._check(job)
        self._step(job, ImportState.HASHING)
        await self._hash(job, touched)
        self._check(job)
        if job.root_id:  # only entries the scan did not see can be absent: no stat for the others
            seen = set(touched)
            job.missing = sum(1 for e in list(self._catalog.entries()) if e.root_id == job.root_id
                              and e.filename not in seen and not self._volume.present(self._volume.path_of(e)))
        if job.no_identify:
            job.identify_note = "identification skipped (no_identify)"
        else:
            self._step(job, ImportState.IDENTIFYING)
            before = self._catalog.version
            now = datetime.now(UTC)
            if job.root_id:
                wanted = [e.filename for e in list(self._catalog.entries()) if e.root_id == job.root_id
                          and identify.due(e, force=job.force_identify, now=now)]
            else:
                wanted = [k for k in touched if (e := self._catalog.get(k)) is not None
                          and identify.due(e, force=job.force_identify, now=now)]
            outcome = await self._identifier.identify(wanted)
            job.identified, job.not_on_civitai, job.identify_failed = (
                outcome.identified, outcome.not_found, outcome.failed)
            job.identify_note = outcome.note
            await self._commit(before)
        if job.root_id and job.files_hashed:  # the cache grew: it keeps only files some entry stands for
            file_keys = [k for e in list(self._catalog.entries()) if (k := key_of(e)) is not None]
            await asyncio.to_thread(self._retain, file_keys)
        root = self._roots.find(job.root_id) if job.root_id else None
        if root is not None and root.write_back:
            await asyncio.to_thread(self._write_back, self._entry_keys(job, touched), root.path)

    async def _commit(self, since: int) -> None:
        """Make the changes since catalog version `since` durable; none (an unchanged rescan): no write."""
        if self._catalog.version != since:
            await self._catalog.store.commit()

    def _retain(self, keys: list[FileKey]) -> None:
        if self._cache.retain(keys):
            self._cache.save()

    def _step(self, job: ImportJob, state: ImportState) -> None:
        job.state = state
        job.touch()

    def _check(self, job: ImportJob) -> None:
        if job.cancel.is_set():
            raise Cancelled

    def _entry_keys(self, job: ImportJob, touched: list[str]) -> list[str]:
        if job.root_id:
            return [e.filename for e in list(self._catalog.entries()) if e.root_id == job.root_id]
        return [k for k in touched if k in self._catalog]

    # ------------------------------------------------------------------ scan and register

    def _known(self, job: ImportJob) -> tuple[dict[str, ModelEntry], dict[FileKey, Verdict]]:
        """The entries the job may find again, by path (in the root, or in the volume), and the verdicts of
        their files by FileKey. `existing` is the caller's to change."""
        mark = (job.root_id, self._catalog.version)
        if self._known_cache is not None and self._known_cache[0] == mark:
            return dict(self._known_cache[1]), self._known_cache[2]
        if job.root_id:
            existing = {e.rel_path: e for e in self._catalog.entries() if e.root_id == job.root_id}
        else:
            existing = {f"{FOLDER_OF_TYPE[e.type]}/{e.rel_path}": e for e in self._catalog.entries() if not e.root_id}
        known: dict[FileKey, Verdict] = {}
        for entry in existing.values():
            key = key_of(entry)
            if key is not None and entry.inspection is not None:
                known[key] = _known_verdict(entry)
        self._known_cache = (mark, existing, known)
        return dict(existing), known

    async def _scan(self, job: ImportJob) -> list[str]:
        existing, known = self._known(job)
        files = scan_library(job.path, known=known)
        touched: list[str] = []
        while True:
            chunk = await asyncio.to_thread(self._read_chunk, job, files, existing)
            if chunk is None:
                break
            before = self._catalog.version
            self._register(job, chunk, existing, touched)
            job.touch()
            await self._commit(before)
            self._check(job)
        return touched

    def _read_chunk(self, job: ImportJob, files: Iterator[ScannedFile],
                    existing: dict[str, ModelEntry]) -> list[Found | ScannedFile] | None:
        """The next files of the scan (in a thread); for a new model file its sidecars and preview are read
        (and, for link/copy, the file is placed in the volume): a Found. Every other file, a model already
        listed at its path included, stays a ScannedFile. None at the end."""
        out: list[Found | ScannedFile] = []
        new = 0
        in_place = job.mode == ImportMode.IN_PLACE
        cancel = job.cancel
        for scanned in files:
            if cancel.is_set():
                break
            if scanned.kind != EntryKind.MODEL or scanned.verdict is None or (in_place and scanned.path in existing):
                out.append(scanned)
            else:
                out.append(self._read_new(job, scanned) if in_place else self._place(job, scanned, existing))
                new += 1
            if new >= CHUNK or len(out) >= CHUNK_FILES:
                break
        return out or None

    def _read_new(self, job: ImportJob, scanned: ScannedFile) -> Found:
        real = scanned.real
        if real is None:
            return Found(scanned)
        sidecars = read_sidecars(real.parent / scanned.name, root=job.path)
        preview = None
        if sidecars.preview:
            preview = self._sidecar_preview(real.parent / sidecars.preview, job.path)
        return Found(scanned, sidecars.info, preview)

    def _sidecar_preview(self, path: Path, root: Path) -> PreviewInfo | None:
        if not resolves_inside(path, root):
            return None
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_INPUT_BYTES + 1)
            return identify.store_thumbnail(self._previews, data, nsfw_level=0, source="sidecar")
        except (OSError, PreviewRefused) as exc:
            log.warning("preview.refused", source="sidecar", file=path.name, error=str(exc))
            return None

    def _place(self, job: ImportJob, scanned: ScannedFile, existing: dict[str, ModelEntry]) -> Found:
        """Link/copy mode: put the file into the volume (never over another file)."""
        assert scanned.verdict is not None and scanned.real is not None
        kind = scanned.verdict.kind
        rel = f"{FOLDER_OF_TYPE[kind]}/{scanned.path}"
        target = self._volume.root / rel
        if rel in existing:
            return Found(scanned, placed=target)
        found = self._read_new(job, scanned)
        found.placed = target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                if os.path.samefile(target, scanned.real):
                    return found
                found.problem = f"ALREADY_EXISTS: a different file is already at {rel}"
                return found
            temp = target.parent / f".import-{secrets.token_hex(6)}.part"
            try:
                if job.mode == ImportMode.LINK:
                    try:
                        os.link(scanned.real, temp, follow_symlinks=False)
                    except OSError:  # another file system, or links not allowed: a copy
                        shutil.copyfile(scanned.real, temp, follow_symlinks=False)
                else:
                    shutil.copyfile(scanned.real, temp, follow_symlinks=False)
                os.link(temp, target)  # fails, rather than overwrites, when a file appeared meanwhile
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            found.problem = f"UNREADABLE: could not place the file in {rel}: {exc.strerror or exc}"
        return found

    def _register(self, job: ImportJob, chunk: list[Found | ScannedFile], existing: dict[str, ModelEntry],
                  touched: list[str]) -> None:
        catalog = self._catalog
        job.files_seen += len(chunk)
        for item in chunk:
            if isinstance(item, ScannedFile):
                if item.kind != EntryKind.MODEL or item.verdict is None:
                    if item.kind == EntryKind.SKIPPED and item.skip not in (SkipReason.NOT_A_MODEL, None):
                        job.skip(item.path, f"{item.skip.upper()}: {item.detail}")
                    continue
                scanned, found = item, None  # in place, at a path already listed
            else:
                scanned, found = item.file, item
            job.models_found += 1
            if found is not None and found.problem:
                job.skip(scanned.path, found.problem)
                continue
            verdict = scanned.verdict
            assert verdict is not None
            where = f"{FOLDER_OF_TYPE[verdict.kind]}/{scanned.path}" if not job.root_id else scanned.path
            current = existing.get(where)
            if current is not None and (current := catalog.get(current.filename)) is not None:
                token = scanned.token
                if current.file_key != token:  # changed on disk since: facts again, hashed again
                    catalog.put(dataclasses.replace(current, file_key=token, file_size_bytes=scanned.size,
                                                    inspection=verdict.inspection or current.inspection,
                                                    sha256="", autov3=""))
                job.already_known += 1
                touched.append(current.filename)
                continue
            if found is None:  # listed when the scan began, deleted since: registered again (without sidecars)
                found = Found(scanned)
            key = scanned.key
            moved = self._moved_here(job, scanned, key)
            if moved is not None:
                job.already_known += 1
                touched.append(moved)
                continue
            try:
                validate_filename(scanned.name)
            except errors.ServiceError as exc:
                job.skip(scanned.path, f"{exc.reason}: {exc.message}")
                continue
            entry = self._new_entry(job, found, verdict)
            catalog.put(entry)
            existing[where] = entry
            job.registered += 1
            job.new_keys.add(entry.filename)
            touched.append(entry.filename)

    def _new_entry(self, job: ImportJob, item: Found, verdict: Verdict) -> ModelEntry:
        scanned = item.file
        key = key_for(self._catalog, scanned.name, job.root_id, scanned.path)
        cached = self._cache.get(scanned.key, tensor_hash=True) if scanned.key is not None else None
        entry = ModelEntry(
            filename=key, type=verdict.kind, display_name=Path(scanned.name).stem, source="local",
            file_size_bytes=scanned.size, added_at=now_iso(), inspection=verdict.inspection,
            root_id=job.root_id, folder=scanned.folder,
            file_name=scanned.name if scanned.name != key or scanned.folder or job.root_id else "",
            file_key=scanned.key.token if scanned.key is not None else "",
            sha256=cached.sha256 if cached else "", autov3=cached.autov3 if cached else "",
            civitai_lookup=LOOKUP_PENDING, preview=item.preview,
        )
        if item.info is not None:
            values, owned = _sidecar_values(item.info)
            entry = limits.clip_entry(dataclasses.replace(entry, **values, sidecar_fields=owned))  # type: ignore[arg-type]
        return entry

    def _moved_here(self, job: ImportJob, scanned: ScannedFile, key: FileKey | None) -> str | None:
        """An entry of this root whose file is gone and whose hash (from the cache: nothing read) is this
        file's: it moved here. Its key and metadata are kept; returns the key."""
        if not job.root_id or key is None:
            return None
        cached = self._cache.get(key)
        if cached is None:
            return None
        return self._move_entry(job, cached.sha256, scanned.folder, scanned.name, key.token, scanned.size)

    def _move_entry(self, job: ImportJob, sha256: str, folder: str, name: str, token: str, size: int) -> str | None:
        for entry in list(self._catalog.entries()):
            if entry.root_id == job.root_id and entry.sha256 == sha256 and entry.rel_path != (
                    f"{folder}/{name}" if folder else name) and not self._volume.present(self._volume.path_of(entry)):
                self._catalog.put(dataclasses.replace(entry, folder=folder, file_name=name, file_key=token,
                                                      file_size_bytes=size))
                log.info("library.moved", filename=entry.filename, to=f"{folder}/{name}" if folder else name)
                return entry.filename
        return None

    # ------------------------------------------------------------------ hashing

    async def _hash(self, job: ImportJob, touched: list[str]) -> None:
        todo: list[tuple[str, HashRequest]] = []
        for name in dict.fromkeys(touched):
            entry = self._catalog.get(name)
            if entry is None or entry.sha256:
                continue
            path = self._volume.path_of(entry)
            if not self._volume.on_volume(path):  # links resolved: inside its root or the volume
                continue
            todo.append((name, HashRequest(path, key_of(entry),
                                           tensor_hash=entry.disk_name.lower().endswith(".safetensors"))))
        if not todo:
            return
        job.files_to_hash = len(todo)
        job.bytes_to_hash = sum(r.key.size if r.key else 0 for _, r in todo)
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int) -> None:
            def update() -> None:
                job.bytes_hashed = done
                job.touch()
            loop.call_soon_threadsafe(update)

        results = await asyncio.to_thread(hash_files, [r for _, r in todo], cache=self._cache,
                                          workers=self._hash_workers, progress=progress, cancel=job.cancel)
        for (name, _), result in zip(todo, results, strict=True):
            entry = self._catalog.get(name)
            if result.hashes is None or entry is None:
                continue
            job.files_hashed += 1
            token = result.key.token if result.key is not None else entry.file_key
            hashed = dataclasses.replace(entry, sha256=result.hashes.sha256, autov3=result.hashes.autov3,
                                         file_key=token)
            self._catalog.put(hashed)
            if name in job.new_keys and job.root_id:
                self._merge_if_moved(job, hashed)
        job.bytes_hashed = max(job.bytes_hashed, job.bytes_to_hash) if not job.cancel.is_set() else job.bytes_hashed
        job.touch()
        await self._catalog.store.commit()

    def _merge_if_moved(self, job: ImportJob, new: ModelEntry) -> None:
        """A file registered by this scan as new whose hash is an absent entry's: the old entry moves here
        (keeping its key and metadata) and the new one goes."""
        for old in list(self._catalog.entries()):
            if (old.filename != new.filename and old.root_id == new.root_id and old.sha256 == new.sha256
                    and not self._volume.present(self._volume.path_of(old))):
                self._catalog.pop(new.filename)
                job.new_keys.discard(new.filename)
                self._catalog.put(dataclasses.replace(old, folder=new.folder, file_name=new.disk_name,
                                                      file_key=new.file_key, file_size_bytes=new.file_size_bytes,
                                                      autov3=new.autov3, preview=old.preview or new.preview))
                job.registered -= 1
                job.already_known += 1
                return

    # ------------------------------------------------------------------ write-back

    def _write_back(self, keys: list[str], root: Path) -> None:
        """A1111-style `<stem>.json` (an existing one keeps its fields) and `<stem>.preview.png` (only where no
        preview image is next to the file) for the root's entries; runs in a thread."""
        for key in keys:
            entry = self._catalog.get(key)
            if entry is None:
                continue
            path = self._volume.path_of(entry)
            if not self._volume.present(path):
                continue
            info = ModelInfo(trigger_words=entry.trigger_words, description=entry.description, notes=entry.notes,
                             recommended_weight=entry.recommended_weight if entry.recommended_weight != 1.0 else None)
            try:
                write_a1111_sidecar(path, info, root=root,
                                    architecture=entry.inspection.architecture if entry.inspection else "")
            except (WriteBackRefused, OSError) as exc:  # a sidecar we may not rewrite is left as it is
                log.warning("write_back.refused", filename=key, error=str(exc))
            if entry.preview is not None:
                self._write_preview(path, entry.preview.sha256)

    def _write_preview(self, model_path: Path, sha256: str) -> None:
        stem = stem_of(model_path.name)
        if any((model_path.parent / name).exists() or (model_path.parent / name).is_symlink()
               for name in preview_names(stem)):
            return  # the user's (or another tool's) preview stays
        thumb = self._previews.get(sha256)
        if thumb is None:
            return
        out = io.BytesIO()
        with Image.open(io.BytesIO(thumb.data), formats=("WEBP",)) as image:
            image.save(out, "PNG")
        try:
            write_atomic(model_path.parent / f"{stem}.preview.png", out.getvalue())
        except OSError as exc:
            log.warning("write_back.refused", file=model_path.name, error=str(exc))
