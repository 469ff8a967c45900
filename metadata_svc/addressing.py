"""Addressing: the unique, stable key a library file gets, and how a name a client gives finds an entry.

The rule (documented in registry.proto above AddLibraryRoot):
- a file gets its own file name as key, unless another entry already holds it; then
  `<stem>~<8 hex>.<ext>`, the hex digits from the root id and the file's path in it (stable: the same
  file in the same place always asks for the same key). The key is kept when the file moves.
- a lookup takes the key, or a root entry's `folder/file_name`; ComposePrompt and LoRA selection also
  the key without its extension, the display name and the short name (prompt.resolve_lora).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from metadata_svc.catalog import Catalog
from metadata_svc.errors import AmbiguousLora, InvalidFilename, ModelNotFound
from metadata_svc.filenames import validate_filename
from metadata_svc.models import ModelEntry


def key_for(catalog: Catalog, file_name: str, root_id: str, rel_path: str, taken: Iterable[str] = ()) -> str:
    """A free key for a new entry of `file_name` (at `rel_path` in root `root_id`)."""
    busy = set(taken)

    def free(name: str) -> bool:
        return name not in catalog and not catalog.is_reserved(name) and name not in busy

    if free(file_name):
        return file_name
    stem, dot, ext = file_name.rpartition(".")
    if not dot:
        stem, ext = file_name, ""
    salt = 0
    while True:
        digest = hashlib.sha256(f"{root_id}/{rel_path}\0{salt}".encode("utf-8", "surrogateescape")).hexdigest()
        candidate = f"{stem}~{digest[:8]}" + (f".{ext}" if dot else "")
        if len(candidate.encode()) > 255:  # keep the key a valid file name: shorten the stem
            room = 255 - len(candidate.encode()) + len(stem.encode())
            candidate = f"{stem.encode()[:max(1, room)].decode('utf-8', 'ignore')}~{digest[:8]}" + (
                f".{ext}" if dot else "")
        if free(candidate):
            return candidate
        salt += 1


def by_rel_path(catalog: Catalog, rel_path: str) -> list[ModelEntry]:
    """Entries whose `folder/file_name` is `rel_path` (case-insensitive), in any root or the volume's folders."""
    wanted = rel_path.strip().lower()
    return [e for e in catalog.entries() if (e.root_id or e.folder or e.file_name) and e.rel_path.lower() == wanted]


def find_model(catalog: Catalog, name: str) -> ModelEntry:
    """GetModel's lookup: the key, else a `folder/file_name` (AMBIGUOUS_LORA when it fits several)."""
    if "/" not in name:
        validate_filename(name)
        entry = catalog.get(name)
        if entry is not None:
            return entry
    else:
        parts = name.split("/")
        try:
            for part in parts:
                validate_filename(part)
        except InvalidFilename as exc:
            raise InvalidFilename(f"{name!r}: {exc.message}", metadata={"filename": name}) from None
    found = by_rel_path(catalog, name)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(sorted(e.filename for e in found))
        raise AmbiguousLora(f"{name!r} names several models ({names}); use the filename",
                            metadata={"filename": name, "filenames": names})
    if "/" in name:
        # Not a key (those have no separator) and no library file's path: refused as a filename.
        raise InvalidFilename(f"filename {name!r} contains a path separator and names no library file",
                              metadata={"filename": name})
    raise ModelNotFound(f"no model {name!r} in the registry", metadata={"filename": name})
