"""The hashes other tools name model files by, as A1111's infotext writes them.

AutoV2 (a checkpoint's "Model hash"): the first 10 hex of the file's sha256.
AutoV3 (a LoRA's entry in "Lora hashes", CivitAI's hashes.AutoV3): the first 12 hex of the sha256 of
a safetensors file's tensor data, i.e. the bytes after the 8-byte header length and the JSON header.

Each is computed once per file version (device, inode, size, modification time): a replaced file is
hashed again, an unchanged one never. A checkpoint is gigabytes, so its hash can be started ahead
(`start_sha256`) and run while the job loads and denoises.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from service_kit import get_logger
from service_kit.files import sha256_of

log = get_logger("inference_svc.model_hashes")

CHUNK = 4 * 1024 * 1024
MAX_CACHED = 4096


def autov2(sha256: str) -> str:
    return sha256[:10]


def autov3(tensor_sha256: str) -> str:
    return tensor_sha256[:12]


def tensor_data_sha256(path: Path) -> str:
    """sha256 of what follows a safetensors header (A1111's addnet_hash_safetensors)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path.name} is too short for a safetensors file")
        (header_len,) = struct.unpack("<Q", head)
        fh.seek(8 + header_len)
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


_Key = tuple[str, str, int, int, int, int]
_Compute = Callable[[Path], str]


class FileHashes:
    """Hashes of model files, cached per file version; safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: OrderedDict[_Key, str] = OrderedDict()
        self._running: dict[_Key, Future[str]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-hash")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def start_sha256(self, path: Path) -> Future[str]:
        """The file's sha256, computed in the background (or at once from the cache); "" for a folder
        or a file that cannot be read (the infotext then has no Model hash)."""
        return self._get("sha256", path, sha256_of, background=True)

    def lora_autov3(self, path: Path) -> str:
        """A LoRA file's AutoV3, or "" when the file cannot be read as safetensors. Computed in the
        calling thread: a LoRA is megabytes, and must not wait behind a checkpoint's hash."""
        if path.suffix.lower() != ".safetensors":
            return ""  # pickles have no header to skip: A1111 gives them no AutoV3 either
        return autov3(self._get("tensors", path, tensor_data_sha256, background=False).result())

    def _get(self, kind: str, path: Path, compute: _Compute, *, background: bool) -> Future[str]:
        key = _key(kind, path)
        if key is None:
            return _ready("")
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return _ready(self._done[key])
            running = self._running.get(key)
            if running is not None:
                return running
            future: Future[str] = Future()
            self._running[key] = future
        if background:
            self._pool.submit(self._fill, key, path, compute, future)
        else:
            self._fill(key, path, compute, future)
        return future

    def _fill(self, key: _Key, path: Path, compute: _Compute, future: Future[str]) -> None:
        try:
            value = compute(path)
        except (OSError, ValueError) as exc:
            log.warning("model_hash.failed", file=path.name, kind=key[0], error=str(exc)[:200])
            value = ""
        with self._lock:
            self._running.pop(key, None)
            if value:
                self._done[key] = value
                while len(self._done) > MAX_CACHED:
                    self._done.popitem(last=False)
        future.set_result(value)


def _key(kind: str, path: Path) -> _Key | None:
    """What identifies one version of a file; None for a folder or a file that is not there."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (kind, real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _ready(value: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(value)
    return future
