"""Disk use of the library: bytes of present files per type and per root (the volume being one), each
one's filesystem free space, and the biggest files. One inode under two names is counted once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from metadata_svc.errors import InvalidPageSize
from metadata_svc.file_identity import FileId, stat_entries
from metadata_svc.library_roots import LibraryRoots
from metadata_svc.models import TYPES, ModelEntry
from metadata_svc.volume import Volume

DEFAULT_BIGGEST = 20
MAX_BIGGEST = 1_000


@dataclass
class Usage:
    bytes: int = 0
    model_count: int = 0


@dataclass(frozen=True)
class RootUsage:
    root_id: str  # "" the volume
    path: str  # "" the volume: a client is never told the server's volume path
    usage: Usage
    free_bytes: int
    filesystem_bytes: int


@dataclass(frozen=True)
class DiskUsage:
    by_type: dict[str, Usage]
    by_root: list[RootUsage]
    biggest: list[ModelEntry]
    total: Usage
    missing_count: int
    volume_free_bytes: int
    volume_total_bytes: int


def biggest_count(asked: int) -> int:
    if asked < 0 or asked > MAX_BIGGEST:
        raise InvalidPageSize(f"biggest must be 0..{MAX_BIGGEST}, not {asked}",
                              metadata={"biggest": asked, "limit": MAX_BIGGEST})
    return asked or DEFAULT_BIGGEST


def filesystem_space(path: Path) -> tuple[int, int]:
    """(free for an unprivileged user, size) of the filesystem holding `path`; (0, 0) when unreadable."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0, 0
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def disk_usage(volume: Volume, roots: LibraryRoots, entries: list[ModelEntry], biggest: int) -> DiskUsage:
    """Runs in a thread (a stat per entry, a statvfs per root)."""
    stats = stat_entries(volume, entries)
    by_type = {kind: Usage() for kind in TYPES}
    by_root: dict[str, Usage] = {"": Usage(), **{r.id: Usage() for r in roots}}
    total = Usage()
    seen: set[FileId] = set()
    present: list[tuple[int, ModelEntry]] = []
    missing = 0
    for e in entries:
        st = stats[e.filename]
        if st is None:
            missing += 1
            continue
        file_id, size = st
        counted = 0 if file_id in seen else size  # a second name of one inode takes no more space
        seen.add(file_id)
        for usage in (by_type.setdefault(e.type, Usage()), by_root.setdefault(e.root_id, Usage()), total):
            usage.bytes += counted
            usage.model_count += 1
        present.append((size, e))
    present.sort(key=lambda p: (-p[0], p[1].filename))
    root_rows = []
    volume_free, volume_size = filesystem_space(volume.root)
    for root_id, usage in by_root.items():
        if root_id:
            root = roots.find(root_id)
            if root is None:
                continue  # entries of a removed root are absent, counted as missing
            free, size = filesystem_space(root.path)
            root_rows.append(RootUsage(root_id, str(root.path), usage, free, size))
        else:
            root_rows.append(RootUsage("", "", usage, volume_free, volume_size))
    return DiskUsage(by_type, root_rows, [e for _, e in present[:biggest]], total, missing, volume_free,
                     volume_size)
