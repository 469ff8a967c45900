"""Durable file writes and volume locks shared by the services that keep state on the volume.

A reader or a crash sees either the old file or the new one, never a mix:
temp file in the same folder (`{name}.XXXX.tmp`, so leftovers are easy to
find), fsync, rename over the target, fsync the folder so the rename itself
survives a power cut.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over `path`, fsync the folder."""
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (creations, renames, removals) durable."""
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LockHeld(Exception):
    """Another process holds the lock; two of them on one volume would undo each other's work."""


class ExclusiveLock:
    """An exclusive flock on `path`, held while a service runs (the kernel drops it when the process
    dies, so a crash never leaves the volume locked)."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(
                f"another {self.holder} is using {self.path.parent} (it holds {self.path}); stop it first"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


# A model file is read only when its real location lies where it should: a symlink
# `checkpoints/x.safetensors -> /etc/...` (or a linked folder) would otherwise make the registry hash
# and inspect, and the inference service load, any file the server can read.


def real_path(path: Path) -> Path:
    """`path` with every symlink resolved (a volume mounted through a link is still the volume)."""
    return Path(os.path.realpath(path))


def resolves_inside(path: Path, root: Path) -> bool:
    """Whether `path`, every symlink followed, lies under `root` (a `real_path`). A path that does
    not exist resolves to itself, so a missing file is inside where its name is."""
    try:
        real = os.path.realpath(path, strict=False)
    except (OSError, ValueError):  # a symlink loop on some Pythons, a NUL byte
        return False
    return Path(real).is_relative_to(root)


# Large reads: hashlib releases the GIL per block, so other threads run while a file is hashed.
HASH_BLOCK = 8 * 1024 * 1024


def sha256_of(path: Path) -> str:
    """Lowercase hex SHA-256 of a file's bytes (read in HASH_BLOCK blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
