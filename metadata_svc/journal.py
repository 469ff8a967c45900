"""`.metadata.journal.<n>`: the index's append-only change log (see index_store.py for how it is used).

One record per line, `<crc32 as 8 hex digits> <kind><payload>\\n`, the CRC over `<kind><payload>`:

- `P"filename":{entry}`   an entry put, its payload exactly the entry's line of `.metadata.json`
- `D"filename"`           an entry removed
- `A"name"`               the active checkpoint set

Each record holds a whole value, never a difference, so replaying a journal
over an index that already contains it changes nothing (what makes an
interrupted compaction harmless). A record is acknowledged only after it is
fsync'd, and a write that fails is cut off again, so a bad record can only
be the tail a crash tore; it and anything after it are ignored. A bad record
followed by a good one is not a torn tail but damage, and stops start-up.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service_kit.files import fsync_dir

JOURNAL_NAME = ".metadata.journal"

PUT, DELETE, ACTIVE = b"P", b"D", b"A"


@dataclass(frozen=True)
class Record:
    kind: bytes  # PUT, DELETE or ACTIVE
    name: str  # the filename (PUT, DELETE) or the active checkpoint (ACTIVE)
    value: object = None  # PUT: the entry's JSON object


class JournalDamaged(ValueError):
    """A bad record followed by good ones: not a torn tail."""


def put(line: bytes) -> bytes:
    return _frame(PUT + line)


def delete(filename: str) -> bytes:
    return _frame(DELETE + json.dumps(filename, ensure_ascii=False).encode())


def active(name: str) -> bytes:
    return _frame(ACTIVE + json.dumps(name, ensure_ascii=False).encode())


def _frame(payload: bytes) -> bytes:
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def journal_path(index: Path, generation: int) -> Path:
    return index.with_name(f"{JOURNAL_NAME}.{generation}")


def journal_files(index: Path) -> list[tuple[int, Path]]:
    """The journals beside `index`, oldest first."""
    found = []
    try:
        candidates = list(index.parent.glob(f"{JOURNAL_NAME}.*"))
    except OSError:
        return []
    for path in candidates:
        suffix = path.name[len(JOURNAL_NAME) + 1:]
        if suffix.isdigit() and path.is_file():
            found.append((int(suffix), path))
    return sorted(found)


def read_records(data: bytes) -> Iterator[Record]:
    """The records of a journal's bytes up to a torn tail; JournalDamaged for damage before the end."""
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or an unfinished record a crash cut off
    for i, raw in enumerate(lines):
        record = _parse(raw)
        if record is None:
            if any(_parse(later) is not None for later in lines[i + 1:]):
                raise JournalDamaged(f"record {i + 1} is damaged and good records follow it")
            return  # the torn tail of a write that was never acknowledged
        yield record


def _parse(raw: bytes) -> Record | None:
    if len(raw) < 10 or raw[8:9] != b" ":
        return None
    payload = raw[9:]
    try:
        if int(raw[:8], 16) != zlib.crc32(payload):
            return None
        kind, body = payload[:1], payload[1:]
        if kind == PUT:
            ((name, value),) = json.loads(b"{" + body + b"}").items()
            return Record(PUT, name, value)
        if kind in (DELETE, ACTIVE):
            name = json.loads(body)
            return Record(kind, name) if isinstance(name, str) else None
    except (ValueError, UnicodeDecodeError):
        return None
    return None


class JournalWriter:
    """Appends to one journal file; `append` returns once the bytes are on disk (call it in a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0  # bytes known good
        self.opened = False  # the file exists (it may hold 0 bytes)
        self.broken = False  # a failed write could not be cut off: append no more to this file
        self._fd: int | None = None

    def append(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self.opened = True
            self.size = os.fstat(self._fd).st_size
            fsync_dir(self.path.parent)  # the file's name must survive a power cut as well as its bytes
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fdatasync(self._fd)
        except OSError:
            self._cut_back()
            raise
        self.size += len(data)

    def _cut_back(self) -> None:
        """Take a failed write's bytes off again, so the next record does not follow garbage."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self.size)
            os.fdatasync(self._fd)
        except OSError:
            self.broken = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
