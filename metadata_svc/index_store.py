"""`.metadata.json` and its journal: loading, durable writes with group commit, compaction.

The registry keeps the index in memory; the durable copy is `.metadata.json`
plus the journal beside it (journal.py), replayed over the file at start.

Two ways to make a change durable, chosen per flush:

- Small index (under `journal_from_bytes`, 1 MiB by default, about 1,300
  entries): rewrite the whole file, temp file in the same folder, fsync,
  rename over the index, fsync the folder. This costs about what an append
  does at that size, and the file stays current for anyone reading it.
- Larger index: append the changed entries to `.metadata.journal.<n>` and
  fdatasync, O(1) in the size of the index. A background compaction later
  rewrites `.metadata.json` with everything durable so far and removes the
  journals it covers: when the journal reaches 1/8 of the index (at least
  64 KiB), `compact_idle` seconds (5 by default) after the last write, and
  at a clean stop. Meanwhile `.metadata.json` lags by what the journal holds.

Compaction and appends never touch the same file: it starts between two
flushes, moves appends to journal n+1 and writes the state the journals up to
n hold. A crash leaves at worst the new index with some of journals <= n
still there; they are removed oldest first, so what is left is a suffix whose
whole-value records replay to the index's own state. A full rewrite is only
used while there is no journal at all, so a journal is never replayed over
changes it does not know.

Group commit: every change awaits `commit()`. One flush at a time writes the
state as it is when the flush starts, which covers every change made before
it; changes made while a flush runs wait for the next one. So 200 concurrent
creates cost a handful of writes instead of 200, and no change is
acknowledged before it is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metadata_svc import journal
from metadata_svc.errors import CorruptIndexError, IndexWriteFailed
from metadata_svc.limits import clip_entry
from metadata_svc.models import ModelEntry
from service_kit import get_logger
from service_kit.config import DEFAULT_CHECKPOINT
from service_kit.files import ExclusiveLock, fsync_dir, write_atomic

log = get_logger("metadata_svc.index")

INDEX_NAME = ".metadata.json"
LOCK_NAME = ".metadata.lock"
VERSION = 1
# Measured here: rewriting a 1.2 MB index durably costs ~1.5 ms, an fsync'd append ~0.2 ms; 4 MB ~4.4 ms,
# 40 MB ~32 ms. Below this the whole rewrite keeps the file current for next to nothing.
JOURNAL_FROM_BYTES = 1024 * 1024
COMPACT_FRACTION = 8  # compact when the journal reaches 1/8 of the index: amortised O(1) per write
COMPACT_MIN_BYTES = 64 * 1024
COMPACT_IDLE_S = 5.0


@dataclass
class IndexState:
    active_checkpoint: str = DEFAULT_CHECKPOINT
    models: dict[str, ModelEntry] = field(default_factory=dict)


def load_index(path: Path) -> IndexState | None:
    """The stored index (the file with its journals replayed over it), None when there is neither,
    CorruptIndexError when it cannot be trusted. Reads only."""
    state = _load_file(path)
    journals = journal.journal_files(path)
    if state is None and not journals:
        return None
    state = state or IndexState()
    for _, journal_file in journals:
        _replay(journal_file, state)
    return state


def open_index(path: Path) -> IndexState | None:
    """`load_index`, then the journals a crash left compacted into the file (so start-up begins with
    none, and the store never rewrites the whole file over a journal it would replay)."""
    state = load_index(path)
    journals = [p for _, p in journal.journal_files(path)]
    if state is not None and journals:
        write_atomic(path, render(state.active_checkpoint, [e.json_line() for e in state.models.values()]))
        drop_journals(journals)
        log.info("index.journal_compacted", path=str(path), journals=len(journals), models=len(state.models))
    return state


def drop_journals(journals: Sequence[Path]) -> None:
    """Oldest first, each removal durable before the next: what a crash leaves is a suffix that replays
    to the index's own state, never an old journal without the newer ones that overrode it."""
    for path in journals:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)


def _load_file(path: Path) -> IndexState | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptIndexError(path, f"cannot read it: {exc}") from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptIndexError(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CorruptIndexError(path, "the top level is not a JSON object")
    version = data.get("version")
    if version != VERSION:
        raise CorruptIndexError(path, f"unsupported version {version!r}, expected {VERSION}")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise CorruptIndexError(path, "'models' is not an object")
    active = data.get("active_checkpoint") or DEFAULT_CHECKPOINT
    if not isinstance(active, str):
        raise CorruptIndexError(path, "'active_checkpoint' is not a string")
    lines = _file_lines(raw, data.get("active_checkpoint"), models)
    if lines is None:
        entries = {key: _entry(path, key, value) for key, value in models.items()}
    else:
        entries = {key: _entry(path, key, value, line)
                   for (key, value), line in zip(models.items(), lines, strict=True)}
    return IndexState(active_checkpoint=active, models=entries)


def _file_lines(raw: bytes, stored_active: object, models: Mapping[str, object]) -> list[bytes] | None:
    """Each model's own line of the file, when it is laid out as `render` writes it (one
    `"filename":{entry}` line per model, in the parsed order), so a load need not render 100,000 lines
    anew; None for any other layout (hand-formatted, another writer's), whose lines are rendered."""
    if not models or not isinstance(stored_active, str):
        return None
    try:
        head = _head(stored_active) + b"\n"
    except UnicodeEncodeError:
        return None
    if not raw.startswith(head) or not raw.endswith(b"\n}}\n"):
        return None
    # A raw newline only ever stands between JSON tokens (never inside a string), so every ",\n" here is
    # the separator render puts between two lines.
    lines = raw[len(head):-4].split(b",\n")
    if len(lines) != len(models):
        return None
    # Line i must be `"key i":{...}`. Names that need no escaping (the usual case: no quote, backslash or
    # control character, so no newline either) are checked in a few C-level passes over all of them.
    keys = "".join(models)
    if '"' in keys or "\\" in keys or not keys.isprintable():
        prefixes = [(json.dumps(key, ensure_ascii=False) + ":").encode("utf-8", "surrogatepass") for key in models]
    else:
        prefixes = ('"' + '":\n"'.join(models) + '":').encode().split(b"\n")
    if not (all(map(bytes.startswith, lines, prefixes)) and all(map(bytes.endswith, lines, itertools.repeat(b"}")))):
        return None
    return lines


def _replay(path: Path, state: IndexState) -> None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorruptIndexError(path, f"cannot read it: {exc}") from exc
    try:
        for record in journal.read_records(raw):
            if record.kind == journal.PUT:
                state.models[record.name] = _entry(path, record.name, record.value)
            elif record.kind == journal.DELETE:
                state.models.pop(record.name, None)
            else:
                state.active_checkpoint = record.name or DEFAULT_CHECKPOINT
    except journal.JournalDamaged as exc:
        raise CorruptIndexError(path, str(exc)) from None


def _entry(path: Path, key: str, value: object, line: bytes | None = None) -> ModelEntry:
    """The entry stored under `key`; `line`: the file's own line it was parsed from (see _file_lines)."""
    try:
        entry = ModelEntry.from_json(key, value)
    except ValueError as exc:
        raise CorruptIndexError(path, str(exc)) from None
    # Written before the limits (or by hand): bounded in memory, and so in the next rewrite.
    clipped = clip_entry(entry)
    if clipped is not entry:
        log.warning("index.entry_clipped", filename=key)
    elif line is not None:
        entry.keep_json_line(line)
    return clipped


def render(active_checkpoint: str, lines: Sequence[bytes]) -> bytes:
    """The index as JSON text, one `"filename": {entry}` line per model (see ModelEntry.json_line)."""
    head = _head(active_checkpoint)
    if not lines:
        return head + b"}}\n"
    return head + b"\n" + b",\n".join(lines) + b"\n}}\n"


def _head(active_checkpoint: str) -> bytes:
    return (f'{{"version":{VERSION},\n"active_checkpoint":{json.dumps(active_checkpoint, ensure_ascii=False)},\n'
            '"models":{').encode()


class VolumeLock(ExclusiveLock):
    """`<volume>/.metadata.lock`: one registry per volume (two writers would lose each other's changes)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / LOCK_NAME, "registry")


class IndexStore:
    """Durable copy of the in-memory index; `commit()` returns once the current state is on disk.

    `snapshot()` gives the whole state for a rewrite. With `lines` (the catalog's own live mapping of
    filename -> index line) and `active`, the store can journal: the catalog tells it which names
    changed (`changed`, `active_changed`) and a flush appends just those. Without them it always
    rewrites the whole file (the old store).
    """

    def __init__(self, path: Path, snapshot: Callable[[], tuple[str, list[bytes]]],
                 lines: Mapping[str, bytes] | None = None, active: Callable[[], str] | None = None) -> None:
        self.path = path
        self._snapshot = snapshot
        self._changed = 0  # bumped by every change
        self._durable = 0  # the last change known to be on disk
        self._flush: asyncio.Task[None] | None = None
        self.flushes = 0
        self.journal_from_bytes = JOURNAL_FROM_BYTES
        self.compact_idle = COMPACT_IDLE_S
        self.compactions = 0
        self._lines = lines
        self._active = active
        self._dirty: set[str] = set()  # names changed since the last flush began
        self._active_dirty = False
        # What is on disk (file + journals): compaction writes this, never a change not yet acknowledged.
        self._on_disk: dict[str, bytes] = dict(lines) if lines is not None else {}
        self._on_disk_bytes = sum(len(line) + 2 for line in self._on_disk.values())
        self._on_disk_active = active() if active is not None else DEFAULT_CHECKPOINT
        found = journal.journal_files(path)
        self._older: list[Path] = [p for _, p in found]  # journals a compaction has yet to remove
        self._generation = found[-1][0] + 1 if found else 1
        self._journal = journal.JournalWriter(journal.journal_path(path, self._generation))
        self._appending = False
        self._compaction: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    def configure(self, *, journal_from_bytes: int, compact_idle: float) -> None:
        self.journal_from_bytes = journal_from_bytes
        self.compact_idle = compact_idle

    # ------------------------------------------------------------------ changes

    def changed(self, filename: str) -> None:
        """The entry under `filename` was put or removed in memory (commit() follows)."""
        self._dirty.add(filename)

    def active_changed(self) -> None:
        self._active_dirty = True

    async def commit(self) -> None:
        """Call after changing the in-memory state; returns when that change is durable."""
        self._changed += 1
        mine = self._changed
        while self._durable < mine:
            if self._flush is None or self._flush.done():
                self._flush = asyncio.create_task(self._write_once())
            flush = self._flush
            try:
                # shield: a caller that goes away must not abort a write other callers wait for.
                await asyncio.shield(flush)
            except IndexWriteFailed:
                if self._durable < mine and flush.done():
                    raise

    async def _write_once(self) -> None:
        target = self._changed
        names, self._dirty = self._dirty, set()
        active_dirty, self._active_dirty = self._active_dirty, False
        # Taken now, in one go on the loop: every change made before this flush, consistently.
        changes = {name: self._lines.get(name) for name in names} if self._lines is not None else {}
        active = self._active() if self._active is not None else None
        use_journal = self._journaling()
        self._appending = use_journal
        try:
            if use_journal:
                records = [journal.put(line) if line is not None else journal.delete(name)
                           for name, line in changes.items()]
                if active_dirty and active is not None:
                    records.append(journal.active(active))
                if records:
                    await asyncio.to_thread(self._journal.append, b"".join(records))
            else:
                snap_active, snap_lines = self._snapshot()  # a copy of immutable lines: consistent and cheap
                await asyncio.to_thread(self._render_and_write, snap_active, snap_lines)
        except OSError as exc:
            self._dirty |= names  # whatever stands under them then (undone or changed again) goes next time
            self._active_dirty |= active_dirty
            if self._journal.broken:
                self._rotate()  # its tail may hold garbage: no record may follow it
            log.error("index.write_failed", path=str(self.path), error=str(exc))
            # The client is told the index's name and the errno's text, never a server path (logged above).
            raise IndexWriteFailed(f"could not write the registry index {self.path.name}: {_reason(exc)}",
                                   metadata={"path": self.path.name}) from exc
        finally:
            self._appending = False
        self._now_on_disk(changes, active if active_dirty or not use_journal else None)
        self._durable = max(self._durable, target)
        self.flushes += 1
        if use_journal:
            self._after_append()

    def _journaling(self) -> bool:
        if self._lines is None:
            return False
        # Once anything is journaled, only a compaction may write the whole file (see the module doc).
        if self._journal.size or self._older or self._compaction is not None:
            return True
        return self._on_disk_bytes >= self.journal_from_bytes

    def _now_on_disk(self, changes: Mapping[str, bytes | None], active: str | None) -> None:
        for name, line in changes.items():
            old = self._on_disk.pop(name, None) if line is None else self._on_disk.get(name)
            if line is not None:
                self._on_disk[name] = line
                self._on_disk_bytes += len(line) + 2
            if old is not None:
                self._on_disk_bytes -= len(old) + 2
        if active is not None:
            self._on_disk_active = active

    def _render_and_write(self, active: str, lines: list[bytes]) -> None:
        write_atomic(self.path, render(active, lines))

    def write_now(self, active: str, lines: list[bytes]) -> None:
        """Synchronous whole rewrite for start-up (migration, rescan) before the server runs; after
        open_index there is no journal it could contradict."""
        self._render_and_write(active, lines)
        if self._lines is not None:
            self._dirty.clear()
            self._active_dirty = False
            self._on_disk = dict(self._lines)
            self._on_disk_bytes = sum(len(line) + 2 for line in self._on_disk.values())
            if self._active is not None:
                self._on_disk_active = self._active()

    # ------------------------------------------------------------------ compaction

    def _after_append(self) -> None:
        big = self._journal.size >= max(COMPACT_MIN_BYTES, self._on_disk_bytes // COMPACT_FRACTION)
        # Below journal_from_bytes the file goes back to whole rewrites once the journal is gone.
        if big or self._on_disk_bytes < self.journal_from_bytes:
            self._maybe_compact()
        self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(self.compact_idle, self._maybe_compact)

    def _maybe_compact(self) -> None:
        """Start a compaction unless one runs or a flush is appending (it would straddle the rotation)."""
        if self._compaction is not None or self._appending:
            return
        if not (self._journal.size or self._older):
            return
        self._rotate()
        covered = list(self._older)
        active, lines = self._on_disk_active, list(self._on_disk.values())
        self._compaction = asyncio.create_task(self._compact(active, lines, covered), name="index-compaction")

    def _rotate(self) -> None:
        """New appends go to the next journal; this one waits for a compaction to remove it."""
        self._journal.close()
        if self._journal.opened:
            self._older.append(self._journal.path)
        self._generation += 1
        self._journal = journal.JournalWriter(journal.journal_path(self.path, self._generation))

    async def _compact(self, active: str, lines: list[bytes], covered: list[Path]) -> None:
        try:
            await asyncio.to_thread(self._write_and_drop, active, lines, covered)
        except OSError as exc:
            # The journals stay and are still replayed at start; the next compaction covers them too.
            log.error("index.compaction_failed", path=str(self.path), error=str(exc))
            if self._idle_timer is None or self._idle_timer.cancelled():
                self._arm_idle_timer()
            return
        finally:
            self._compaction = None
        self._older = [p for p in self._older if p not in covered]
        self.compactions += 1
        log.info("index.compacted", path=str(self.path), models=len(lines), journals=len(covered))
        if self._journal.size >= max(COMPACT_MIN_BYTES, self._on_disk_bytes // COMPACT_FRACTION):
            self._maybe_compact()

    def _write_and_drop(self, active: str, lines: list[bytes], covered: list[Path]) -> None:
        write_atomic(self.path, render(active, lines))
        drop_journals(covered)

    async def close(self) -> None:
        """At a clean stop: let the last flush and compaction end, then compact what is left, so the
        file is complete and no journal remains."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._flush is not None:
            with contextlib.suppress(IndexWriteFailed):
                await asyncio.shield(self._flush)
        for _ in range(2):  # the one running (covering older journals), then the rest
            if self._compaction is not None:
                await asyncio.shield(self._compaction)
            self._maybe_compact()
        if self._compaction is not None:
            await asyncio.shield(self._compaction)
        self._journal.close()


def _reason(exc: OSError) -> str:
    """The errno's text, without the file names str(exc) would add."""
    return exc.strerror or type(exc).__name__
