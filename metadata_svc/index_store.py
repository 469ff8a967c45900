"""`.metadata.json`: loading, and durable atomic rewrites with group commit.

The registry keeps the index in memory; this file is its durable copy. A
write is a whole new file: temp file in the same folder, fsync, rename over
the index, fsync the folder, so a reader or a crash sees either the old or
the new index, never half of one.

Group commit: every change awaits `commit()`. One flush at a time writes the
state as it is when the flush starts, which covers every change made before
it; changes made while a flush runs wait for the next one. So 200 concurrent
creates cost a handful of rewrites instead of 200, and no change is
acknowledged before it is on disk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metadata_svc.errors import CorruptIndexError, IndexWriteFailed
from metadata_svc.limits import clip_entry
from metadata_svc.models import ModelEntry
from service_kit import get_logger
from service_kit.config import DEFAULT_CHECKPOINT
from service_kit.files import ExclusiveLock, write_atomic

log = get_logger("metadata_svc.index")

INDEX_NAME = ".metadata.json"
LOCK_NAME = ".metadata.lock"
VERSION = 1


@dataclass
class IndexState:
    active_checkpoint: str = DEFAULT_CHECKPOINT
    models: dict[str, ModelEntry] = field(default_factory=dict)


def load_index(path: Path) -> IndexState | None:
    """The stored index, None when there is none, CorruptIndexError when it cannot be trusted."""
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
    entries: dict[str, ModelEntry] = {}
    for key, value in models.items():
        try:
            entry = ModelEntry.from_json(key, value)
        except ValueError as exc:
            raise CorruptIndexError(path, str(exc)) from None
        # Written before the limits (or by hand): bounded in memory, and so in the next rewrite.
        entries[key] = clip_entry(entry)
        if entries[key] is not entry:
            log.warning("index.entry_clipped", filename=key)
    return IndexState(active_checkpoint=active, models=entries)


def render(active_checkpoint: str, lines: Sequence[bytes]) -> bytes:
    """The index as JSON text, one `"filename": {entry}` line per model (see ModelEntry.json_line)."""
    head = (f'{{"version":{VERSION},\n"active_checkpoint":{json.dumps(active_checkpoint, ensure_ascii=False)},\n'
            '"models":{').encode()
    if not lines:
        return head + b"}}\n"
    return head + b"\n" + b",\n".join(lines) + b"\n}}\n"


class VolumeLock(ExclusiveLock):
    """`<volume>/.metadata.lock`: one registry per volume (two writers would lose each other's changes)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / LOCK_NAME, "registry")


class IndexStore:
    """Durable copy of the in-memory index; `commit()` returns once the current state is on disk."""

    def __init__(self, path: Path, snapshot: Callable[[], tuple[str, list[bytes]]]) -> None:
        self.path = path
        self._snapshot = snapshot
        self._changed = 0  # bumped by every change
        self._durable = 0  # the last change known to be on disk
        self._flush: asyncio.Task[None] | None = None
        self.flushes = 0

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
        active, lines = self._snapshot()  # a copy of immutable lines: consistent and cheap
        try:
            await asyncio.to_thread(self._render_and_write, active, lines)
        except OSError as exc:
            log.error("index.write_failed", path=str(self.path), error=str(exc))
            # The client is told the index's name and the errno's text, never a server path (logged above).
            raise IndexWriteFailed(f"could not write the registry index {self.path.name}: {_reason(exc)}",
                                   metadata={"path": self.path.name}) from exc
        self._durable = max(self._durable, target)
        self.flushes += 1

    def _render_and_write(self, active: str, lines: list[bytes]) -> None:
        write_atomic(self.path, render(active, lines))

    def write_now(self, active: str, lines: list[bytes]) -> None:
        """Synchronous write for start-up (migration, rescan) before the server runs."""
        self._render_and_write(active, lines)


def _reason(exc: OSError) -> str:
    """The errno's text, without the file names str(exc) would add."""
    return exc.strerror or type(exc).__name__
