"""Walks a library root (an A1111/Forge, ComfyUI, Stability Matrix or InvokeAI models folder) and says, file by
file, what each one is: a model we load, a model file we skip (and why), a sidecar or a preview of a model.

Rules:
- Nested folders are walked, in name order; hidden files and folders (`.git`, `.cache`, `.DS_Store`) are
  not (as registry.proto documents for roots).
- A symlink is followed only when its target lies inside the root. A linked *folder* inside the root is
  not descended (its files are found under their real folder, once), so links never make loops or
  duplicates; a linked file inside the root is reported under its own name, with its target's
  (dev, inode), like a hard link. Nothing outside the root is opened: the target of every opened file
  is checked again after the open (through /proc/self/fd), so a link swapped in mid-scan reads nothing.
- Content read: `.safetensors` headers, bounded (inspection.SCAN_MAX_HEADER_BYTES), and the tensors of
  small files whose header is no LoRA's, checkpoint's, embedding's or VAE's (spandrel tells upscalers).
  `.pt`/`.pth` (how embeddings and upscalers ship) are read with torch's weights-only unpickler only;
  `.ckpt`/`.bin` are decided by name and never opened. Everything else is decided by name and stat.
  The folders of other tools (A1111 `embeddings/`, `models/VAE`, `models/ESRGAN`; ComfyUI
  `models/embeddings`, `models/vae`, `models/upscale_models`) are walked like any other: a file's type
  comes from its content, never from its folder or name.
- A file that vanishes, cannot be read, or is odd (FIFO, undecodable name) is a skip reason on that
  file; the walk goes on. Only a root that is not a readable folder fails the scan.
- A `<stem>.json`, `.civitai.info`, `.cm-info.json`, `.metadata.json` or preview image is a sidecar
  when a model file of that stem is in the same folder; alone, it is "not a model".
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

from metadata_svc.file_hashes import FileKey
from metadata_svc.inspection import (
    MODEL_SUFFIXES,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    SCAN_MAX_HEADER_BYTES,
    WEIGHTS_ONLY_SUFFIXES,
    SkipReason,
    Verdict,
    examine_pickle_stream,
    examine_stream,
    is_weights_only_name,
    pickle_verdict,
)
from metadata_svc.sidecars import SidecarKind, sidecar_of, stem_of
from service_kit.files import real_path

MAX_DEPTH = 32  # folders below the root; deeper ones are reported, not walked
_PROC_FD = Path("/proc/self/fd")


class EntryKind(StrEnum):
    MODEL = "model"  # verdict.kind is one of models.TYPES
    SKIPPED = "skipped"  # skip says why (a model file we do not load, or not a model at all)
    SIDECAR = "sidecar"
    PREVIEW = "preview"


class ScannedFile(NamedTuple):
    """One file of a walk. A NamedTuple, not a dataclass: a rescan makes one per file, and a frozen
    dataclass's __init__ alone was a third of an unchanged rescan's walk."""

    path: str  # relative to the root, "/"-separated: "Lora/styles/ink.safetensors"
    folder: str  # its folder relative to the root, "" at the root
    name: str
    kind: EntryKind
    size: int = 0
    mtime_ns: int = 0
    dev: int = 0
    inode: int = 0
    # Where the content is, every link resolved (inside the root): what a hasher opens (`real`). "" when
    # the entry must not be read (outside the root, vanished, not a regular file). A str: a Path per
    # file is a third of a rescan's time.
    location: str = ""
    verdict: Verdict | None = None  # for model files (.safetensors and pickle names)
    skip: SkipReason | None = None
    detail: str = ""
    sidecar_kind: SidecarKind | None = None  # for sidecars and previews
    model_name: str = ""  # for sidecars and previews: the model file (in the same folder) they belong to

    @property
    def real(self) -> Path | None:
        return Path(self.location) if self.location else None

    @property
    def key(self) -> FileKey | None:
        return FileKey(self.dev, self.inode, self.size, self.mtime_ns) if self.location else None

    @property
    def token(self) -> str:
        """`key.token` without making the key: "" when the entry has none."""
        return f"{self.dev}:{self.inode}:{self.size}:{self.mtime_ns}" if self.location else ""


class RootNotUsable(Exception):
    """The root itself is not a folder we can read: the one failure of a whole scan."""


def scan_library(root: Path, *, known: Mapping[FileKey, Verdict] | None = None,
                 max_header_bytes: int = SCAN_MAX_HEADER_BYTES, max_depth: int = MAX_DEPTH) -> Iterator[ScannedFile]:
    """Every file under `root`, one ScannedFile each, folder by folder in name order (lazily: a file
    removed before the walk reaches it is VANISHED). `known`: verdicts of an earlier scan by FileKey; a
    file whose key is there is not opened again, so a rescan of an unchanged library reads nothing but
    its folders and stats."""
    real_root = real_path(root)
    try:
        st = os.stat(real_root)
    except OSError as exc:
        raise RootNotUsable(f"{root}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RootNotUsable(f"{root}: not a folder")
    try:
        os.scandir(real_root).close()
    except OSError as exc:
        raise RootNotUsable(f"{root}: {exc.strerror or exc}") from None
    # By plain tuple: a stat result gives one without making a FileKey per file.
    by_stat = {(k.dev, k.inode, k.size, k.mtime_ns): v for k, v in known.items()} if known else {}
    visited = {(st.st_dev, st.st_ino)}
    stack: list[tuple[Path, str, int]] = [(real_root, "", 0)]
    while stack:
        folder_path, folder, depth = stack.pop()
        subfolders: list[tuple[Path, str, int]] = []
        yield from _scan_folder(real_root, folder_path, folder, depth, visited, subfolders, by_stat,
                                max_header_bytes=max_header_bytes, max_depth=max_depth)
        stack.extend(reversed(subfolders))  # popped in name order


_by_name = attrgetter("name")
_S_IFMT = 0o170000  # the file-type bits of st_mode (stat.S_IFMT is a function)
_Known = Mapping[tuple[int, int, int, int], Verdict]  # (dev, inode, size, mtime_ns) -> verdict


def _scan_folder(real_root: Path, folder_path: Path, folder: str, depth: int, visited: set[tuple[int, int]],
                 subfolders: list[tuple[Path, str, int]], known: _Known, *,
                 max_header_bytes: int, max_depth: int) -> Iterator[ScannedFile]:
    prefix = f"{folder}/" if folder else ""

    def entry(name: str, kind: EntryKind = EntryKind.SKIPPED, **fields: Any) -> ScannedFile:
        return ScannedFile(path=prefix + name, folder=folder, name=name, kind=kind, **fields)

    try:
        with os.scandir(folder_path) as listing:
            entries = sorted(listing, key=_by_name)
    except FileNotFoundError:
        if folder:
            parent, _, name = folder.rpartition("/")
            yield ScannedFile(path=folder, folder=parent, name=name, kind=EntryKind.SKIPPED, skip=SkipReason.VANISHED,
                              detail=f"{folder}/: removed while the library was scanned")
        return
    except OSError as exc:
        parent, _, name = folder.rpartition("/")
        yield ScannedFile(path=folder, folder=parent, name=name, kind=EntryKind.SKIPPED, skip=SkipReason.UNREADABLE,
                          detail=f"{folder or '.'}/: cannot be listed ({exc.strerror or exc})")
        return
    models: dict[str, str] = {}  # model stem -> its file name, the first in name order
    for dirent in entries:
        if dirent.name.lower().endswith(MODEL_SUFFIXES):
            models.setdefault(stem_of(dirent.name), dirent.name)

    # The common cases (a known .safetensors, a sidecar, "not a model") make their ScannedFile
    # positionally: per file, keyword arguments cost more than the stat.
    for dirent in entries:
        name = dirent.name
        if name[0] == ".":
            continue  # hidden: VCS, caches, thumbnails, .DS_Store
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                yield entry(shown, skip=SkipReason.UNDECODABLE_NAME, detail=f"{shown}: the name is not valid UTF-8")
                continue
        try:
            if dirent.is_symlink():
                try:
                    target = Path(os.path.realpath(dirent.path, strict=True))
                except OSError:
                    yield entry(name, skip=SkipReason.SYMLINK_LOOP, detail=f"{name}: a link that does not resolve "
                                "(dangling, or a loop)")
                    continue
                if not target.is_relative_to(real_root):
                    # Not even stat'ed: nothing about a file outside the root is looked at.
                    yield entry(name, skip=SkipReason.SYMLINK_OUTSIDE_ROOT, detail=f"{name}: a link out of the "
                                "library root; not followed")
                    continue
                st = os.stat(target)
                if stat.S_ISDIR(st.st_mode):
                    yield entry(name, skip=SkipReason.LINKED_FOLDER, detail=f"{name}: a link to a folder inside "
                                "the root; its files are listed under their real folder")
                    continue
                real = str(target)
            else:
                st = dirent.stat(follow_symlinks=False)
                real = dirent.path
        except FileNotFoundError:
            yield entry(name, skip=SkipReason.VANISHED, detail=f"{name}: removed while the library was scanned")
            continue
        except OSError as exc:
            yield entry(name, skip=SkipReason.UNREADABLE, detail=f"{name}: {exc.strerror or exc}")
            continue

        file_type = st.st_mode & _S_IFMT
        if file_type == stat.S_IFDIR:
            rel = prefix + name
            if depth + 1 > max_depth:
                yield entry(name, skip=SkipReason.TOO_DEEP, detail=f"{rel}/: more than {max_depth} folders deep; "
                            "not walked")
            elif (st.st_dev, st.st_ino) in visited:
                yield entry(name, skip=SkipReason.SYMLINK_LOOP, detail=f"{rel}/: a folder already walked (a bind "
                            "mount loop?)")
            else:
                visited.add((st.st_dev, st.st_ino))
                subfolders.append((Path(real), rel, depth + 1))
            continue
        if file_type != stat.S_IFREG:
            yield entry(name, skip=SkipReason.NOT_A_REGULAR_FILE, detail=f"{name}: not a regular file")
            continue
        lower = name.lower()
        size, mtime_ns, dev, inode = st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino
        if lower.endswith(SAFETENSORS_SUFFIXES):  # the common case first (the suffix lists do not overlap)
            seen = known.get((dev, inode, size, mtime_ns))
            if seen is not None:
                kind = EntryKind.MODEL if seen.skip is None else EntryKind.SKIPPED
                # The same file, maybe under another name now (a rename keeps the key): details name this one.
                detail = f"{name}: {seen.detail.partition(': ')[2]}" if seen.detail else ""
                yield ScannedFile(prefix + name, folder, name, kind, size, mtime_ns, dev, inode, real, seen,
                                  seen.skip, detail)
            else:
                yield _model_entry(entry, name, real, real_root, max_header_bytes)
            continue
        if lower.endswith(WEIGHTS_ONLY_SUFFIXES):  # .pt/.pth: embeddings and upscalers ship so; weights-only
            yield _model_entry(entry, name, real, real_root, max_header_bytes)
            continue
        if lower.endswith(PICKLE_SUFFIXES):
            verdict = pickle_verdict(name)  # by name: never opened
            yield ScannedFile(prefix + name, folder, name, EntryKind.SKIPPED, size, mtime_ns, dev, inode, real,
                              verdict, verdict.skip, verdict.detail)
            continue
        side = sidecar_of(name)
        if side is not None and side[1] in models:
            kind = EntryKind.PREVIEW if side[0] == SidecarKind.PREVIEW else EntryKind.SIDECAR
            yield ScannedFile(prefix + name, folder, name, kind, size, mtime_ns, dev, inode, real, None, None, "",
                              side[0], models[side[1]])
            continue
        yield ScannedFile(prefix + name, folder, name, EntryKind.SKIPPED, size, mtime_ns, dev, inode, real, None,
                          SkipReason.NOT_A_MODEL, f"{name}: not a model file (.safetensors)")


def _model_entry(entry: Callable[..., ScannedFile], name: str, real: str, real_root: Path,
                 max_header_bytes: int) -> ScannedFile:
    """Open (never through a link, never outside the root), fstat, read the bounded header."""
    try:
        # O_NOFOLLOW: `real` has no link left in its last part, so one now means a swap mid-scan.
        # O_NONBLOCK: a FIFO swapped in must not hang the walk.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return entry(name, skip=SkipReason.VANISHED, detail=f"{name}: removed while the library was scanned")
    except OSError as exc:
        return entry(name, skip=SkipReason.UNREADABLE, detail=f"{name}: cannot be opened ({exc.strerror or exc})")
    try:
        if not _opened_inside(fd, real_root):
            return entry(name, skip=SkipReason.SYMLINK_OUTSIDE_ROOT, detail=f"{name}: resolves out of the library "
                         "root (changed while scanned); not read")
        st = os.fstat(fd)  # the version whose header is read
        if not stat.S_ISREG(st.st_mode):
            return entry(name, skip=SkipReason.NOT_A_REGULAR_FILE, detail=f"{name}: not a regular file")
        stats: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "dev": st.st_dev, "inode": st.st_ino}
        with os.fdopen(fd, "rb", closefd=False) as fh:
            if is_weights_only_name(name):
                verdict = examine_pickle_stream(fh, st.st_size, name)
            else:
                verdict = examine_stream(fh, st.st_size, name, max_header_bytes=max_header_bytes)
    finally:
        os.close(fd)
    kind = EntryKind.MODEL if verdict.loadable else EntryKind.SKIPPED
    return entry(name, kind, verdict=verdict, skip=verdict.skip, detail=verdict.detail, location=real, **stats)


def _opened_inside(fd: int, real_root: Path) -> bool:
    """Whether the open file `fd` lies inside the root, by what the kernel says it opened (Linux);
    where /proc is missing, the checks before the open stand alone."""
    try:
        opened = os.readlink(_PROC_FD / str(fd))
    except OSError:
        return True
    return Path(opened).is_relative_to(real_root)
