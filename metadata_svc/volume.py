"""The user-models volume on disk: where an entry's file lies, whether a path stays on the volume
(symlinks followed), how a client is told of a file, and what a file is (size, header, sha256).

Files of a library root (library_roots.py) count as "on the volume" when, links followed, they stay
inside their root; everything else outside the volume is still refused (OUTSIDE_VOLUME)."""

from __future__ import annotations

import os
from pathlib import Path

from metadata_svc import inspection as insp
from metadata_svc.errors import FileNotFound, OutsideVolume
from metadata_svc.library_roots import LibraryRoots
from metadata_svc.models import FOLDER_OF_TYPE, TYPES, FileFacts, ModelEntry
from service_kit import get_logger
from service_kit.config import DEFAULT_CHECKPOINT_FILE
from service_kit.files import real_path, resolves_inside, sha256_of

log = get_logger("metadata_svc.registry")  # the parts of the registry log as one



class Volume:
    """The user-models volume (`loras/`, `checkpoints/`, `embeddings/`, `vaes/`, `upscalers/`) and the models
    dir (the default checkpoint)."""

    def __init__(self, user_models_dir: Path, models_dir: Path, roots: LibraryRoots | None = None) -> None:
        self.root = user_models_dir.absolute()
        self.models_dir = models_dir.absolute()
        self._real_root = real_path(self.root)
        self._real_models_dir = real_path(self.models_dir)
        self.roots = roots
        if self.root.is_dir():  # the registry made it; its older folders come from migration.py
            for kind in TYPES:
                self.folder(kind).mkdir(exist_ok=True)

    def folder(self, kind: str) -> Path:
        return self.root / FOLDER_OF_TYPE[kind]

    def path_of(self, entry: ModelEntry) -> Path:
        if not entry.root_id:
            if not entry.folder and not entry.file_name:
                return self.folder(entry.type) / entry.filename
            return self.folder(entry.type) / entry.folder / entry.disk_name
        root = self.roots.find(entry.root_id) if self.roots is not None else None
        # A root no longer configured: a path that never exists, so the entry shows as absent.
        base = root.path if root is not None else self.root / ".roots-gone" / entry.root_id
        return base / entry.folder / entry.disk_name

    def default_checkpoint_path(self) -> Path:
        return self.models_dir / DEFAULT_CHECKPOINT_FILE

    def relative(self, path: Path) -> str:
        """How error messages name a file: relative to its volume, never a server path."""
        for root in (self.root, self.models_dir):
            if path.is_relative_to(root):
                return str(path.relative_to(root))
        library = self.roots.containing(path) if self.roots is not None else None
        if library is not None:
            return str(path.relative_to(library.path))
        return path.name

    def on_volume(self, path: Path) -> bool:
        """Whether `path`, symlinks followed, stays on the volume (the default checkpoint: the models dir)."""
        folder = path.parent
        if folder.parent in (self.root, self.models_dir) and not (os.path.islink(path) or os.path.islink(folder)):
            return True  # no link below the root (itself resolved at start): two lstat calls, not a realpath
        library = self.roots.containing(path) if self.roots is not None else None
        if library is not None:
            return resolves_inside(path, library.path)  # stored real: the file must stay inside it
        root = self._real_root if path.is_relative_to(self.root) else self._real_models_dir
        return resolves_inside(path, root)

    def check_on_volume(self, path: Path) -> None:
        if not self.on_volume(path):
            log.warning("file.outside_volume", path=str(path), target=os.path.realpath(path))
            name = self.relative(path)
            raise OutsideVolume(f"{name} is a link to a file outside the volume; it is never read",
                                metadata={"filename": path.name, "path": name})

    def present(self, path: Path) -> bool:
        """The file is there and may be read (an outside link counts as absent)."""
        return os.path.isfile(path) and self.on_volume(path)

    def examine(self, path: Path, fmt: str, kind: str, *, want_hash: bool) -> FileFacts:
        """Size, header inspection and (optionally) sha256 of a file in place; runs in a thread."""
        name = self.relative(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            others = [self.folder(k) / path.name for k in TYPES if k != kind]
            other = next((o for o in others if o.is_file()), None)
            hint = f"; there is one in {other.parent.name}/ (wrong type?)" if other is not None else ""
            raise FileNotFound(f"no file {name!r} on the volume{hint}",
                               metadata={"filename": path.name, "path": name}) from None
        if not path.is_file():
            raise FileNotFound(f"{name} is not a regular file", metadata={"filename": path.name, "path": name})
        self.check_on_volume(path)
        found = insp.inspect_claimed(path, fmt, kind)
        return FileFacts(size, found, sha256_of(path) if want_hash else "")
