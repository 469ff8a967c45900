"""Duplicates: entries with the same sha256 (one file under several names or roots), and entries that
are one inode under two names (found even before they are hashed); what a clean-up would free."""

from __future__ import annotations

from dataclasses import dataclass

from metadata_svc.file_identity import FileId, stat_entries
from metadata_svc.models import ModelEntry
from metadata_svc.volume import Volume


@dataclass(frozen=True)
class DuplicateGroup:
    sha256: str  # "" for a group found by inode only
    size_bytes: int
    # (entry, file number): entries with one number are one file on disk; 0 for an absent file.
    entries: tuple[tuple[ModelEntry, int], ...]
    reclaimable_bytes: int


@dataclass(frozen=True)
class DuplicateReport:
    groups: tuple[DuplicateGroup, ...]
    reclaimable_bytes: int
    unhashed: int


def find_duplicates(volume: Volume, entries: list[ModelEntry]) -> DuplicateReport:
    """Runs in a thread (it stats every entry's file)."""
    stats = stat_entries(volume, entries)
    # Union of "same sha256" and "same inode": a key per entry, an inode's key taken from its hashed entry.
    sha_of_inode: dict[FileId, str] = {}
    for e in entries:
        st = stats[e.filename]
        if e.sha256 and st is not None:
            sha_of_inode.setdefault(st[0], e.sha256)
    members: dict[str, list[ModelEntry]] = {}
    for e in entries:
        st = stats[e.filename]
        key = e.sha256 or (sha_of_inode.get(st[0], "") if st is not None else "")
        if not key and st is not None:
            key = f"inode:{st[0][0]}:{st[0][1]}"
        if key:
            members.setdefault(key, []).append(e)
    groups = []
    for key, group in members.items():
        if len(group) < 2:
            continue
        numbers: dict[FileId, int] = {}
        listed = []
        size = 0
        for e in sorted(group, key=lambda x: (x.root_id, x.filename)):
            st = stats[e.filename]
            number = 0
            if st is not None:
                number = numbers.setdefault(st[0], len(numbers) + 1)
                size = max(size, st[1])
            listed.append((e, number))
        size = size or max(e.file_size_bytes for e in group)
        reclaimable = max(0, len(numbers) - 1) * size
        sha = "" if key.startswith("inode:") else key
        groups.append(DuplicateGroup(sha, size, tuple(listed), reclaimable))
    groups.sort(key=lambda g: (-g.reclaimable_bytes, -g.size_bytes, g.sha256, g.entries[0][0].filename))
    unhashed = sum(1 for e in entries if not e.sha256)
    return DuplicateReport(tuple(groups), sum(g.reclaimable_bytes for g in groups), unhashed)
