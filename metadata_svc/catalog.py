"""The in-memory index: entries by filename, the active checkpoint, the names in use right now, and
the durable copy on disk (IndexStore) every change is committed to.

A change is made here synchronously (so check-then-act needs no lock on one
event loop), then awaited durable through the store's group commit; when the
write fails the change is undone, so what a client was told failed is neither
served meanwhile nor written by the next commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, KeysView, ValuesView
from pathlib import Path

from metadata_svc.index_store import IndexState, IndexStore
from metadata_svc.models import ModelEntry
from service_kit import errors

# Told of every change: (the entry replaced or removed, the entry put); None for none.
Listener = Callable[[ModelEntry | None, ModelEntry | None], None]


class Catalog:
    def __init__(self, state: IndexState, index_path: Path) -> None:
        self._models: dict[str, ModelEntry] = state.models
        # Each entry's line of the index file, kept beside the entry so a rewrite is one C-level join.
        self._lines: dict[str, bytes] = {name: entry.json_line() for name, entry in self._models.items()}
        self._active = state.active_checkpoint
        self._reserved: set[str] = set()  # filenames being created, uploaded or deleted right now
        self._listeners: list[Listener] = []
        self.version = 0  # bumped by every change: a caller can tell whether it has anything to commit
        # The store journals just the names changed (put/pop/active tell it which) once the index is large.
        self.store = IndexStore(index_path, self.snapshot, self._lines, lambda: self._active)

    @property
    def active(self) -> str:
        return self._active

    @active.setter
    def active(self, name: str) -> None:
        self._active = name
        self.store.active_changed()

    def snapshot(self) -> tuple[str, list[bytes]]:
        return self.active, list(self._lines.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, filename: str) -> bool:
        return filename in self._models

    def get(self, filename: str) -> ModelEntry | None:
        return self._models.get(filename)

    def names(self) -> KeysView[str]:
        """The filenames registered (a set-like view: `listed - catalog.names()` is the new ones, in C)."""
        return self._models.keys()

    def entries(self) -> ValuesView[ModelEntry]:
        return self._models.values()

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ------------------------------------------------------------------ changes

    def put(self, entry: ModelEntry) -> None:
        old = self._models.get(entry.filename)
        self._models[entry.filename] = entry
        self._lines[entry.filename] = entry.json_line()
        self.store.changed(entry.filename)
        self.version += 1
        for listener in self._listeners:
            listener(old, entry)

    def pop(self, filename: str) -> ModelEntry:
        entry = self._models.pop(filename)
        del self._lines[filename]
        self.store.changed(filename)
        self.version += 1
        for listener in self._listeners:
            listener(entry, None)
        return entry

    async def commit(self, undo: Callable[[], None]) -> None:
        """Make the change in memory durable; if the index write fails, undo it and raise."""
        try:
            await self.store.commit()
        except errors.ServiceError:
            undo()
            raise

    async def commit_added(self, added: ModelEntry) -> None:
        """Commit a new entry; if the index write fails, take it out again so the caller can retry."""
        await self.commit(lambda: self.restore(added.filename, added, None))

    def restore(self, filename: str, changed: ModelEntry | None, previous: ModelEntry | None) -> None:
        """Put `previous` back (None: no entry) where `changed` still stands, i.e. nothing changed it since."""
        if self._models.get(filename) is not changed:
            return
        if previous is not None:
            self.put(previous)
        elif changed is not None:
            self.pop(filename)

    # ------------------------------------------------------------------ reservations

    def is_reserved(self, filename: str) -> bool:
        return filename in self._reserved

    @contextlib.contextmanager
    def reserve(self, filename: str) -> Iterator[None]:
        """Hold a filename while its file is examined, uploaded or deleted, so two callers cannot
        both create it and nothing else changes an entry being deleted."""
        self._reserved.add(filename)
        try:
            yield
        finally:
            self._reserved.discard(filename)
