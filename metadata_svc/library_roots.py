"""Library roots: folders of an existing library the registry indexes in place, and the rules for adding one.

The list is kept in `<volume>/.library-roots.json` (written atomically, like the index). Roots given by
the --library-root flag are added at every start and not stored, so dropping the flag drops the root.
A root's id comes from its path, so the entries of a flag root find it again after a restart.

A root is stored by its real path (symlinks resolved when it was added): what is confined to it is what
lies under that real folder, whatever links later appear on the way to it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from metadata_svc.errors import InvalidRootPath, RootAlreadyExists, RootNotAllowed, RootNotFound, RootOverlaps
from metadata_svc.models import now_iso
from service_kit import get_logger
from service_kit.files import write_atomic

log = get_logger("metadata_svc.registry")

ROOTS_NAME = ".library-roots.json"
VERSION = 1
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class LibraryRoot:
    id: str
    path: Path  # absolute and real
    write_back: bool = False
    added_at: str = ""
    from_flag: bool = False

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "path": str(self.path), "write_back": self.write_back, "added_at": self.added_at}


def root_id_of(path: Path, taken: Iterable[str] = ()) -> str:
    """"r" and 7 hex digits of the path's sha256; stable across restarts, bumped on the rare clash."""
    used = set(taken)
    salt = 0
    while True:
        digest = hashlib.sha256(f"{path}\0{salt}".encode("utf-8", "surrogateescape")).hexdigest()
        candidate = "r" + digest[:7]
        if candidate not in used:
            return candidate
        salt += 1


def checked_folder(raw: str, allowed: Iterable[Path]) -> Path:
    """The real path of a folder a client names, or why it cannot be a root (INVALID_ROOT_PATH,
    ROOT_NOT_ALLOWED). The allow-list is checked before the path is looked at, so a client learns
    nothing about folders outside it."""
    meta = {"path": raw[:256]}
    if not raw or len(raw) > MAX_PATH_CHARS or "\0" in raw or not os.path.isabs(raw):
        raise InvalidRootPath("the path must be an absolute folder path", metadata=meta)
    real = Path(os.path.realpath(raw))
    if not any(real.is_relative_to(folder) for folder in allowed):
        raise RootNotAllowed("the folder is not under one of the registry's --library-allow folders",
                             metadata=meta)
    if not real.is_dir():
        raise InvalidRootPath("no such folder (or not a folder)", metadata=meta)
    return real


def overlaps(a: Path, b: Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)


class LibraryRoots:
    """The roots, by id; `add` and `remove` write the stored list before they return."""

    def __init__(self, data_dir: Path, *, volume_dirs: Iterable[Path], allowed: Iterable[str]) -> None:
        self.path = data_dir / ROOTS_NAME
        self._volume_dirs = [Path(os.path.realpath(d)) for d in volume_dirs]
        self._allowed = [Path(os.path.realpath(os.path.expanduser(a))) for a in allowed if a]
        self._roots: dict[str, LibraryRoot] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # Not the index: losing the list loses no metadata (entries keep their root id). Say so loudly.
            log.error("library_roots.unreadable", path=str(self.path), error=str(exc))
            return
        for item in data.get("roots", []) if isinstance(data, dict) else []:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("path"), str):
                root = LibraryRoot(item["id"], Path(item["path"]), bool(item.get("write_back")),
                                   str(item.get("added_at") or ""))
                self._roots[root.id] = root

    def _save(self) -> None:
        stored = [r.to_json() for r in self._roots.values() if not r.from_flag]
        write_atomic(self.path, json.dumps({"version": VERSION, "roots": stored}, ensure_ascii=False,
                                           indent=1).encode())

    def __iter__(self) -> Iterator[LibraryRoot]:
        return iter(sorted(self._roots.values(), key=lambda r: str(r.path)))

    def __len__(self) -> int:
        return len(self._roots)

    def get(self, root_id: str) -> LibraryRoot:
        root = self._roots.get(root_id)
        if root is None:
            raise RootNotFound(f"no library root {root_id!r}", metadata={"root_id": root_id[:64]})
        return root

    def find(self, root_id: str) -> LibraryRoot | None:
        return self._roots.get(root_id)

    def by_path(self, real: Path) -> LibraryRoot | None:
        return next((r for r in self._roots.values() if r.path == real), None)

    def containing(self, path: Path) -> LibraryRoot | None:
        """The root a (lexical, absolute) path lies in."""
        return next((r for r in self._roots.values() if path.is_relative_to(r.path)), None)

    def allowed(self, real: Path) -> bool:
        return any(real.is_relative_to(folder) for folder in self._allowed)

    def check_new(self, raw: str) -> Path:
        """A folder a client asks to index or import: its real path, or the reason it is refused."""
        real = checked_folder(raw, self._allowed)
        self._check_overlaps(real, raw)
        return real

    def check_source(self, raw: str) -> Path:
        """A folder a client asks to link or copy into the volume: allowed, and not the volume itself."""
        real = checked_folder(raw, self._allowed)
        self._check_volume(real, raw)
        return real

    def _check_volume(self, real: Path, shown: str) -> None:
        if any(overlaps(real, d) for d in self._volume_dirs):
            raise RootOverlaps("the folder is inside or around the registry's own volume",
                               metadata={"path": shown[:256]})

    def _check_overlaps(self, real: Path, shown: str) -> None:
        meta = {"path": shown[:256]}
        self._check_volume(real, shown)
        existing = self.by_path(real)
        if existing is not None:
            raise RootAlreadyExists(f"the folder is already library root {existing.id}",
                                    metadata={**meta, "root_id": existing.id})
        other = next((r for r in self._roots.values() if overlaps(real, r.path)), None)
        if other is not None:
            raise RootOverlaps(f"the folder is inside or around library root {other.id}",
                               metadata={**meta, "root_id": other.id})

    def add(self, raw: str, *, write_back: bool = False) -> LibraryRoot:
        real = self.check_new(raw)
        root = LibraryRoot(root_id_of(real, self._roots), real, write_back, now_iso())
        self._roots[root.id] = root
        try:
            self._save()
        except OSError:
            del self._roots[root.id]
            raise
        log.info("library_root.added", root_id=root.id, path=str(real))
        return root

    def add_from_flag(self, raw: str) -> LibraryRoot | None:
        """A --library-root folder: always allowed; one that is not a folder is logged and left out."""
        real = Path(os.path.realpath(os.path.expanduser(raw)))
        if not real.is_dir():
            log.warning("library_root.flag_not_a_folder", path=raw)
            return None
        existing = self.by_path(real)
        if existing is not None:
            return existing
        try:
            self._check_overlaps(real, raw)
        except (RootOverlaps, RootAlreadyExists) as exc:
            log.warning("library_root.flag_refused", path=raw, error=exc.message)
            return None
        root = LibraryRoot(root_id_of(real, self._roots), real, False, now_iso(), from_flag=True)
        self._roots[root.id] = root
        return root

    def remove(self, root_id: str) -> LibraryRoot:
        root = self.get(root_id)
        del self._roots[root_id]
        try:
            self._save()
        except OSError:
            self._roots[root_id] = root
            raise
        log.info("library_root.removed", root_id=root_id, path=str(root.path))
        return root
