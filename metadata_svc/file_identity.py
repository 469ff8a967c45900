"""Which file on disk an entry is: (device, inode, size) of its present file, links followed; shared by
the duplicates and disk-use reports so two names of one inode count as one file."""

from __future__ import annotations

import os
from collections.abc import Iterable

from metadata_svc.models import ModelEntry
from metadata_svc.volume import Volume

FileId = tuple[int, int]


def stat_entries(volume: Volume, entries: Iterable[ModelEntry]) -> dict[str, tuple[FileId, int] | None]:
    """filename -> ((st_dev, st_ino), st_size), or None for an absent file (or a link off the volume).
    Runs in a thread: one stat (plus the volume's link check) per entry."""
    out: dict[str, tuple[FileId, int] | None] = {}
    for entry in entries:
        path = volume.path_of(entry)
        try:
            if not volume.present(path):
                out[entry.filename] = None
                continue
            st = os.stat(path)
        except OSError:
            out[entry.filename] = None
            continue
        out[entry.filename] = ((st.st_dev, st.st_ino), st.st_size)
    return out
