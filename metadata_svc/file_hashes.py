"""SHA256 of model files in the background, in parallel, with a cache that survives restarts.

The hashes the ecosystem uses (see interop-formats):
- SHA256: the whole file. Our identity of a file: CivitAI by-hash lookups, duplicates, verification.
- AutoV2: the first 10 hex of SHA256 (A1111's "Model hash", CivitAI `hashes.AutoV2`).
- AutoV3: the first 12 hex of the sha256 of a safetensors file's bytes *after* its header (the 8-byte
  length and the JSON header skipped): A1111's LoRA shorthash ("Lora hashes" in infotext), CivitAI
  `hashes.AutoV3`. It does not change when only a header's metadata is edited.
AutoV1 (a sha256 of 64 KiB at offset 1 MiB) is obsolete and not computed.

`hash_files` runs a thread pool: hashlib releases the GIL while it digests a large buffer, and
unbuffered `readinto` releases it while it reads, so threads hash files truly in parallel (as many
as the disk keeps busy: a spinning disk wants 1, an SSD several). One pass over a file gives both
its SHA256 and, when asked, its tensor-data sha256.

`HashCache` remembers hashes by (device, inode, size, mtime_ns) in one JSON file written
atomically, so a rescan of an unchanged library reads no file content. A file rewritten in place
gets a new mtime; one replaced by another (rename over it) gets a new inode. A device number can
change across reboots on some filesystems (NFS, btrfs subvolumes, overlays): that costs a rehash,
never a wrong hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service_kit import get_logger
from service_kit.files import write_atomic

log = get_logger("metadata_svc.registry")

HASH_BLOCK = 8 * 1024 * 1024  # large reads: few syscalls, and hashlib drops the GIL for each
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))
# The cache is written again after this many newly hashed bytes, so an interrupted import of a
# large library keeps most of its work; and at the end of every run.
SAVE_EVERY_BYTES = 16 * 1024 ** 3
CACHE_VERSION = 1

_HEX64 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[int, int], None]  # (bytes done, bytes to do), from any worker thread


def autov2(sha256: str) -> str:
    return sha256[:10]


def autov3(tensor_sha256: str) -> str:
    return tensor_sha256[:12]


def header_tensor_sha256(metadata: Mapping[str, Any]) -> str:
    """The tensor-data sha256 a safetensors header claims, normalised to 64 lower-case hex, or "".

    kohya's trainers write `sshs_model_hash` (and `modelspec.hash_sha256`, "0x"-prefixed) as the sha256
    of the data after the header: AutoV3's input. They are free to read, and used only for what
    A1111 uses them for: the AutoV3 shown and searched before (or instead of) hashing the tensor data.
    They are never taken as the file's SHA256, nor for identity, CivitAI lookups or verification: a
    header holds whatever its writer put there (stale after an edit or a prune, or someone else's
    hash on purpose), and it is not even a hash of the whole file.
    """
    for key in ("sshs_model_hash", "modelspec.hash_sha256"):
        value = metadata.get(key)
        if isinstance(value, str):
            value = value.strip().lower().removeprefix("0x")
            if _HEX64.fullmatch(value):
                return value
    return ""


@dataclass(frozen=True)
class FileKey:
    """What identifies one version of one file without reading it."""

    dev: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    @property
    def token(self) -> str:
        return f"{self.dev}:{self.inode}:{self.size}:{self.mtime_ns}"


@dataclass(frozen=True)
class FileHashes:
    sha256: str
    tensor_sha256: str = ""  # of the data after a safetensors header; "" when not asked for or not safetensors

    @property
    def autov2(self) -> str:
        return autov2(self.sha256)

    @property
    def autov3(self) -> str:
        return autov3(self.tensor_sha256)


@dataclass(frozen=True)
class HashRequest:
    path: Path  # where the content is: the caller has confined it (library_scan's ScannedFile.real)
    key: FileKey | None = None  # as the scan saw it: a cache hit then needs not even a stat
    tensor_hash: bool = False  # also the tensor-data sha256 (AutoV3); for safetensors files


class HashError:
    """Why a file has no hash (stable codes)."""

    VANISHED = "vanished"
    UNREADABLE = "unreadable"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    CHANGED = "changed"  # written to while it was being hashed: hash it again later
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class HashResult:
    request: HashRequest
    hashes: FileHashes | None = None
    key: FileKey | None = None  # the file as it was hashed (may differ from request.key)
    cached: bool = False
    error: str = ""  # a HashError code when hashes is None
    detail: str = ""


class HashCancelled(Exception):
    """The run's cancel event was set."""


class FileChanged(Exception):
    """The file was written to while it was read: its hash would be of no version of it."""


class NotARegularFile(Exception):
    """A FIFO, socket or device where a model file was expected."""


class HashCache:
    """Hashes by FileKey, kept in one JSON file (`{"version", "entries": {"dev:ino:size:mtime_ns":
    {"sha256", "tensor_sha256"}}}`). Thread-safe. A missing or unreadable cache file is an empty cache."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._entries: dict[str, FileHashes] = self._load()
        self._dirty = False

    def _load(self) -> dict[str, FileHashes]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("hash_cache.unreadable", path=str(self.path), error=str(exc))
            return {}
        entries = data.get("entries") if isinstance(data, dict) and data.get("version") == CACHE_VERSION else None
        if not isinstance(entries, dict):
            return {}
        loaded = {}
        for token, item in entries.items():
            if not isinstance(item, dict):
                continue
            sha, tensor = item.get("sha256", ""), item.get("tensor_sha256", "")
            if isinstance(sha, str) and _HEX64.fullmatch(sha) and isinstance(tensor, str) and (
                    not tensor or _HEX64.fullmatch(tensor)):
                loaded[str(token)] = FileHashes(sha, tensor)
        return loaded

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: FileKey, *, tensor_hash: bool = False) -> FileHashes | None:
        with self._lock:
            found = self._entries.get(key.token)
        if found is None or (tensor_hash and not found.tensor_sha256):
            return None
        return found

    def put(self, key: FileKey, hashes: FileHashes) -> None:
        with self._lock:
            old = self._entries.get(key.token)
            if old is not None and not hashes.tensor_sha256 and old.sha256 == hashes.sha256:
                hashes = old  # keep a tensor hash computed earlier
            if old != hashes:
                self._entries[key.token] = hashes
                self._dirty = True

    def retain(self, keys: Iterable[FileKey]) -> int:
        """Forget every entry but those of `keys` (the files a full scan saw); returns how many went."""
        keep = {k.token for k in keys}
        with self._lock:
            gone = [t for t in self._entries if t not in keep]
            for token in gone:
                del self._entries[token]
            self._dirty = self._dirty or bool(gone)
        return len(gone)

    def save(self) -> None:
        """Write the cache atomically, if anything changed since the last save."""
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return
                entries = {t: {"sha256": h.sha256, "tensor_sha256": h.tensor_sha256} for t, h in self._entries.items()}
                self._dirty = False
            data = json.dumps({"version": CACHE_VERSION, "entries": entries}, separators=(",", ":")).encode()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.path, data)
            except BaseException:
                with self._lock:
                    self._dirty = True
                raise


def hash_file(path: Path, *, tensor_hash: bool = False, cancel: threading.Event | None = None,
              on_bytes: Callable[[int], None] | None = None,
              block_size: int = HASH_BLOCK) -> tuple[FileHashes, FileKey]:
    """The file's hashes and its key as hashed. Raises OSError (FileNotFoundError when it is gone),
    NotARegularFile, FileChanged (written to meanwhile), HashCancelled."""
    # O_NONBLOCK: a FIFO must not hang a worker; it is refused below.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        os.close(fd)
        raise NotARegularFile(f"{path.name}: not a regular file")
    with open(fd, "rb", buffering=0) as fh:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        whole = hashlib.sha256()
        tensors = hashlib.sha256() if tensor_hash else None
        data_offset = before.st_size + 1  # past the end: no tensor data (too short for a header)
        if tensors is not None:
            first = os.pread(fd, 8, 0)
            if len(first) == 8:
                data_offset = 8 + struct.unpack("<Q", first)[0]
        buf = bytearray(block_size)
        view = memoryview(buf)
        pos = 0
        while True:
            if cancel is not None and cancel.is_set():
                raise HashCancelled
            n = fh.readinto(view)
            if not n:
                break
            chunk = view[:n]
            whole.update(chunk)
            if tensors is not None and pos + n > data_offset:
                tensors.update(chunk[max(0, data_offset - pos):])
            pos += n
            if on_bytes is not None:
                on_bytes(n)
        after = os.fstat(fd)
    key = FileKey.of(after)
    if key != FileKey.of(before) or pos != after.st_size:
        raise FileChanged
    # A file too short for its header length has no tensor data, so no AutoV3.
    tensor_hex = tensors.hexdigest() if tensors is not None and data_offset <= after.st_size else ""
    return FileHashes(whole.hexdigest(), tensor_hex), key


def hash_files(requests: Iterable[HashRequest], *, cache: HashCache | None = None, workers: int = DEFAULT_WORKERS,
               progress: Progress | None = None, cancel: threading.Event | None = None,
               block_size: int = HASH_BLOCK, save_every_bytes: int = SAVE_EVERY_BYTES) -> list[HashResult]:
    """Hash every requested file (cache hits read nothing), `workers` files at a time; results in request
    order. Blocking: callers run it in a thread (asyncio.to_thread) to have it in the background.
    `progress(done, total)`: bytes read so far and the size of the files that were to be hashed when the run
    started. `cancel` set: the files not finished get CANCELLED, and the call returns soon after."""
    todo = list(requests)
    results: list[HashResult | None] = [None] * len(todo)
    pending: list[tuple[int, HashRequest]] = []
    total = 0
    for i, request in enumerate(todo):
        key = request.key
        if key is None:
            try:
                key = FileKey.of(os.stat(request.path))
            except FileNotFoundError:
                results[i] = HashResult(request, error=HashError.VANISHED, detail=f"{request.path.name}: gone")
                continue
            except OSError as exc:
                results[i] = HashResult(request, error=HashError.UNREADABLE,
                                        detail=f"{request.path.name}: {exc.strerror or exc}")
                continue
        hit = cache.get(key, tensor_hash=request.tensor_hash) if cache is not None else None
        if hit is not None:
            results[i] = HashResult(request, hashes=hit, key=key, cached=True)
        else:
            pending.append((i, request))
            total += key.size

    lock = threading.Lock()
    done = 0
    unsaved = 0

    def count(n: int) -> None:
        nonlocal done, unsaved
        with lock:
            done += n
            unsaved += n
            if progress is not None:
                progress(done, total)

    def one(request: HashRequest) -> HashResult:
        nonlocal unsaved
        name = request.path.name
        try:
            hashes, key = hash_file(request.path, tensor_hash=request.tensor_hash, cancel=cancel, on_bytes=count,
                                    block_size=block_size)
        except HashCancelled:
            return HashResult(request, error=HashError.CANCELLED, detail=f"{name}: cancelled")
        except FileChanged:
            return HashResult(request, error=HashError.CHANGED, detail=f"{name}: changed while it was hashed")
        except FileNotFoundError:
            return HashResult(request, error=HashError.VANISHED, detail=f"{name}: gone")
        except NotARegularFile as exc:
            return HashResult(request, error=HashError.NOT_A_REGULAR_FILE, detail=str(exc))
        except OSError as exc:
            return HashResult(request, error=HashError.UNREADABLE, detail=f"{name}: {exc.strerror or exc}")
        if cache is not None:
            cache.put(key, hashes)
            with lock:
                flush = unsaved >= save_every_bytes
                if flush:
                    unsaved = 0
            if flush:
                cache.save()
        return HashResult(request, hashes=hashes, key=key)

    def guarded(request: HashRequest) -> HashResult:
        if cancel is not None and cancel.is_set():
            return HashResult(request, error=HashError.CANCELLED, detail=f"{request.path.name}: cancelled")
        return one(request)

    try:
        if pending:
            with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="hash") as pool:
                for (i, _), result in zip(pending, pool.map(guarded, [r for _, r in pending]), strict=True):
                    results[i] = result
    finally:
        if cache is not None:
            cache.save()
    return [r for r in results if r is not None]
