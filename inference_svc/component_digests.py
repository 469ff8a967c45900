"""Per-component digests of a single-file checkpoint's tensor bytes, so identical components are not read twice.

Many SDXL fine-tunes ship the stock text encoders and VAE: when the pipeline
being swapped holds a component whose digest equals the new file's, the
in-place swap skips it (only the UNet's bytes are read). A digest is the
sha256 of each tensor's name, dtype, shape and bytes, in name order, for the
tensors under one component's LDM prefix.

Computed once per file version (device, inode, size, modification time) in a
background thread after the file's first load, not on the request path: at
~1.2 GB/s, hashing inline would cost about as much as the copy itself. Until
a file's digests are known, a swap to it reads every component.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from inference_svc.checkpoint_loader import read_header_and_length
from inference_svc.weight_swap import COMPONENT_PREFIXES, component_of
from service_kit import get_logger

log = get_logger("inference_svc.component_digests")

FileIdentity = tuple[int, int, int, int]
CHUNK = 8 * 1024 * 1024
MAX_CACHED = 4096


def file_identity(path: Path) -> FileIdentity:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def compute_digests(path: Path) -> dict[str, str]:
    """component -> hex sha256 of its tensors; raises CheckpointLoadFailed / OSError for a bad file."""
    tensors, _, header_len = read_header_and_length(path)
    by_component: dict[str, list[str]] = {}
    for key in sorted(k for k, v in tensors.items() if isinstance(v, dict)):
        component = component_of(key)
        if component is not None:
            by_component.setdefault(component, []).append(key)
    digests = {}
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        for component in COMPONENT_PREFIXES:
            digest = hashlib.sha256()
            for key in by_component.get(component, []):
                info = tensors[key]
                start, end = (int(x) for x in info["data_offsets"])
                digest.update(f"{key}|{info['dtype']}|{info['shape']}|".encode())
                f.seek(8 + header_len + start)
                left = end - start
                while left:
                    n = f.readinto(view[: min(left, CHUNK)])
                    if not n:
                        raise OSError(f"{path.name} ends inside tensor {key}")
                    digest.update(view[:n])  # hashlib releases the GIL on large buffers
                    left -= n
            digests[component] = digest.hexdigest()
    return digests


class ComponentDigests:
    """Digests by file version, computed in one background thread; safe to use from any thread."""

    def __init__(self) -> None:
        self._known: OrderedDict[FileIdentity, dict[str, str]] = OrderedDict()
        self._pending: dict[FileIdentity, Future[dict[str, str] | None]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="component-digests")

    def known(self, identity: FileIdentity) -> dict[str, str] | None:
        with self._lock:
            return self._known.get(identity)

    def start(self, path: Path) -> Future[dict[str, str] | None]:
        """The digests of `path`'s current version, computed in the background unless known or under way."""
        try:
            identity = file_identity(path)
        except OSError:
            done: Future[dict[str, str] | None] = Future()
            done.set_result(None)
            return done
        with self._lock:
            if identity in self._known:
                done = Future()
                done.set_result(self._known[identity])
                return done
            pending = self._pending.get(identity)
            if pending is None:
                pending = self._executor.submit(self._compute, path, identity)
                self._pending[identity] = pending
            return pending

    def wait(self, path: Path) -> dict[str, str] | None:
        return self.start(path).result()

    def _compute(self, path: Path, identity: FileIdentity) -> dict[str, str] | None:
        try:
            digests = compute_digests(path)
            if file_identity(path) != identity:
                digests = {}  # replaced while hashed: what was read belongs to no version
        except Exception as exc:  # a file that went away or broke: no digests, swaps read everything
            log.warning("digests.failed", path=str(path), error=str(exc)[:200])
            digests = {}
        with self._lock:
            self._pending.pop(identity, None)
            if digests:
                self._known[identity] = digests
                while len(self._known) > MAX_CACHED:
                    self._known.popitem(last=False)
        return digests or None


def shared_components(resident: dict[str, str] | None, incoming: dict[str, str] | None) -> frozenset[str]:
    """Components whose bytes are the same in both files (none when either is not known yet)."""
    if not resident or not incoming:
        return frozenset()
    return frozenset(c for c in COMPONENT_PREFIXES if c in resident and resident[c] == incoming.get(c))
