"""ReadModelFile: a model file's bytes by its sha256, from an offset, for inference workers that do not
mount the volume (they keep a node-local cache, inference_svc/node_cache.py).

What may be read is decided here, never by the client: the sha256 must be an entry's, and the file read
is that entry's own location (the volume's folders or its library root), with the volume's link rule
(a link that leads out is never read). The bytes are not hashed again on the way out (that is gigabytes
per request); what is checked is that the file is still the one that was hashed: its size, and its
mtime when the entry keeps its file's identity (`file_key`, library files). A file that changes while
it is sent ends the stream FILE_CHANGED. The client hashes the whole file before it uses it.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from metadata_svc.catalog import Catalog
from metadata_svc.errors import FileChanged, FileNotFound, InvalidOffset, InvalidSha256, ModelNotFound
from metadata_svc.library_import import key_of
from metadata_svc.models import ModelEntry
from metadata_svc.volume import Volume
from service_kit import get_logger

log = get_logger("metadata_svc.registry")

CHUNK_BYTES = 1024 * 1024  # well under gRPC's 4 MiB message limit; Upload's chunk size too
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileChunk:
    data: bytes
    offset: int
    total_size: int


def checked_sha256(raw: str) -> str:
    sha = raw.strip().lower()
    if not _SHA256.fullmatch(sha):
        raise InvalidSha256("sha256 must be 64 hex digits", metadata={"sha256": raw[:80]})
    return sha


class FileReads:
    def __init__(self, catalog: Catalog, volume: Volume) -> None:
        self._catalog = catalog
        self._volume = volume

    def _source(self, sha: str) -> tuple[ModelEntry, Path]:
        """An entry with this sha256 whose file is present (links followed, on the volume or its root)."""
        # A linear pass: one per download (not per chunk), ~10 ms at 100,000 entries.
        found = [e for e in list(self._catalog.entries()) if e.sha256 == sha]
        if not found:
            raise ModelNotFound("no model in the registry has this sha256", metadata={"sha256": sha})
        for entry in sorted(found, key=lambda e: (bool(e.root_id), e.filename)):  # the volume's own first
            path = self._volume.path_of(entry)
            if self._volume.present(path):
                return entry, path
        raise FileNotFound("the models with this sha256 have no file present",
                           metadata={"sha256": sha, "filename": found[0].filename})

    def _open(self, sha: str, offset: int) -> tuple[int, ModelEntry, os.stat_result]:
        """(fd, entry, stat) of the file to send, checked to be the hashed one; runs in a thread."""
        entry, path = self._source(sha)
        # The real path, opened without following a last link: what was checked is what is read.
        fd = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            self._check_identity(entry, st)
            if offset < 0 or offset > st.st_size:
                raise InvalidOffset(f"offset {offset} is outside the file (0..{st.st_size})",
                                    metadata={"sha256": sha, "offset": str(offset), "total_size": str(st.st_size)})
        except BaseException:
            os.close(fd)
            raise
        return fd, entry, st

    def _check_identity(self, entry: ModelEntry, st: os.stat_result) -> None:
        key = key_of(entry)
        changed = (key is not None and (key.size != st.st_size or key.mtime_ns != st.st_mtime_ns)) or (
            key is None and entry.file_size_bytes and entry.file_size_bytes != st.st_size)
        if changed:
            name = self._volume.relative(self._volume.path_of(entry))
            log.warning("file_read.changed", filename=entry.filename, path=name)
            raise FileChanged(f"{name} changed since it was hashed; a rescan or re-import hashes it again",
                              metadata={"sha256": entry.sha256, "filename": entry.filename})

    async def read(self, raw_sha256: str, offset: int) -> AsyncIterator[FileChunk]:
        """The file's chunks from `offset`; one empty chunk when offset is its size."""
        sha = checked_sha256(raw_sha256)
        fd, entry, st = await asyncio.to_thread(self._open, sha, offset)
        try:
            total = st.st_size
            if offset == total:
                yield FileChunk(b"", offset, total)
                return
            while offset < total:
                data, now = await asyncio.to_thread(_read_at, fd, offset)
                if not data or (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                    log.warning("file_read.changed_midway", filename=entry.filename, offset=offset)
                    raise FileChanged(f"{entry.filename} changed while it was being sent",
                                      metadata={"sha256": sha, "filename": entry.filename})
                yield FileChunk(data, offset, total)
                offset += len(data)
        finally:
            os.close(fd)


def _read_at(fd: int, offset: int) -> tuple[bytes, os.stat_result]:
    return os.pread(fd, CHUNK_BYTES, offset), os.fstat(fd)
