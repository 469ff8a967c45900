"""Model files of a worker that does not mount the shared volume: fetched from the registry by sha256
(ReadModelFile) into a node-local, content-addressed cache bounded in bytes.

A file lies at `<folder>/<sha256><ext>` (the extension from the registry's filename: the loaders tell
formats by it) and only once its bytes hash to that sha256: it is fetched to `<name>.part`, hashed as it
arrives, and renamed into place when the digest matches. A download cut midway keeps its `.part` and
resumes from its length (the prefix hashed again first); one whose bytes do not hash right is deleted,
and a resumed one is fetched once more from 0. A file already in place is hashed again before its first
use by this process, and again whenever its stat (inode, size, mtime) changes, so a corrupt copy is
refused and fetched anew.

Concurrent requests for one file share one fetch. The byte bound counts files in place, `.part` files
and the full size of fetches in progress; room is made by deleting the least recently used files that
are not in use. In use: handed out to an asyncio task (an RPC) that has not ended yet, so a job's files
stay until its call is over. A file that cannot fit is NODE_CACHE_FULL.

One process owns a folder (an flock on `<folder>/.lock`): `claim_folder` gives each worker on a node a
slot of its own under the configured folder, kept across restarts so a replacement worker finds its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inference_svc.errors import ModelFileUnverified, NodeCacheFull
from modelmanager.v1 import registry_pb2, registry_pb2_grpc
from service_kit import errors, get_logger
from service_kit.files import ExclusiveLock, LockHeld, fsync_dir, sha256_of
from service_kit.peer import Peer, PeerUnavailable

log = get_logger("inference_svc.node_cache")

HASH_BLOCK = 8 * 1024 * 1024
ATTEMPTS = 4  # per fetch, resuming after each cut
BACKOFF_S = 0.5  # doubled after each cut
MAX_SLOTS = 64

_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"\.[a-z0-9]{1,16}")
_NAME = re.compile(r"[0-9a-f]{64}(\.[a-z0-9]{1,16})?(\.part)?")
PART = ".part"


def claim_folder(base: Path) -> tuple[Path, ExclusiveLock]:
    """The first free slot `<base>/worker-<n>` and its lock (held while this process runs)."""
    for n in range(MAX_SLOTS):
        folder = base / f"worker-{n}"
        lock = ExclusiveLock(folder / ".lock", "inference worker's node cache")
        try:
            lock.acquire()
        except LockHeld:
            continue
        return folder, lock
    raise RuntimeError(f"all {MAX_SLOTS} node-cache slots under {base} are held")


@dataclass
class CacheStats:
    fetches: int = 0  # downloads completed
    fetched_bytes: int = 0  # bytes received from the registry
    resumed: int = 0  # downloads that started from a .part's length
    refused: int = 0  # local copies (in place or .part) whose bytes did not hash right


class _Download:
    def __init__(self, fd: int, have: int, digest: hashlib._Hash) -> None:
        self.fd = fd
        self.have = have
        self.digest = digest
        self.total: int | None = None


class NodeCache:
    def __init__(self, folder: Path, max_bytes: int, peer: Callable[[], Peer], *, lock: ExclusiveLock | None = None,
                 attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._peer = peer  # the registry's, made lazily on the serving loop
        self._lock = lock
        self._attempts = attempts
        self._backoff_s = backoff_s
        self.stats = CacheStats()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # on disk, least recently used first
        self._verified: dict[str, tuple[int, int, int]] = {}  # name -> (inode, size, mtime_ns) hashed right
        self._reserved: dict[str, int] = {}  # fetches in progress: their full size
        self._fetches: dict[str, asyncio.Future[Path]] = {}
        self._pins: Counter[str] = Counter()
        self._task_pins: dict[asyncio.Task[object], set[str]] = {}
        folder.mkdir(parents=True, exist_ok=True)
        self._scan()

    def _scan(self) -> None:
        found = []
        for entry in os.scandir(self.folder):
            if _NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                found.append((st.st_mtime_ns, entry.name, st.st_size))
        for _, name, size in sorted(found):
            self._sizes[name] = size

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()

    @property
    def used_bytes(self) -> int:
        return sum(self._sizes.values()) + sum(self._reserved.values())

    # ---- the one entry point -------------------------------------------------------------------

    async def get(self, sha256: str, filename: str, what: str) -> Path:
        """The local path of the file with this sha256 (fetched and verified first when needed), pinned
        until the calling task ends. `filename` is the registry's (its extension is kept); `what` names
        the model in errors."""
        sha = sha256.strip().lower()
        if not _SHA256.fullmatch(sha):
            raise ModelFileUnverified(f"{what}: the registry has no sha256 for its file yet (it is hashed in the "
                                      "background); try again shortly", metadata={"model": what})
        ext = Path(filename).suffix.lower()
        name = sha + (ext if _EXT.fullmatch(ext) else "")
        self._pin(name)
        fetch = self._fetches.get(name)
        if fetch is None:
            fetch = asyncio.ensure_future(self._obtain(name, sha, what))
            self._fetches[name] = fetch
            fetch.add_done_callback(lambda done: self._fetches.pop(name, None) if self._fetches.get(name) is done
                                    else None)
        # Shielded: one caller going away does not cancel the fetch the others wait on.
        path = await asyncio.shield(fetch)
        self._sizes.move_to_end(name)
        return path

    # ---- pins: a file handed out stays while the task that asked for it runs -------------------

    def _pin(self, name: str) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        held = self._task_pins.get(task)
        if held is None:
            held = self._task_pins[task] = set()
            task.add_done_callback(self._unpin_task)
        if name not in held:
            held.add(name)
            self._pins[name] += 1

    def _unpin_task(self, task: asyncio.Task[object]) -> None:
        for name in self._task_pins.pop(task, ()):
            self._pins[name] -= 1
            if self._pins[name] <= 0:
                del self._pins[name]

    def _busy(self, name: str) -> bool:
        final = name.removesuffix(PART)
        return final in self._pins or final in self._reserved

    # ---- fetch and verify ----------------------------------------------------------------------

    async def _obtain(self, name: str, sha: str, what: str) -> Path:
        path = self.folder / name
        if name in self._sizes and await self._verify(name, sha):
            return path
        return await self._download(name, sha, what)

    async def _verify(self, name: str, sha: str) -> bool:
        path = self.folder / name
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            self._sizes.pop(name, None)
            return False
        ident = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(name) == ident:
            return True
        if await asyncio.to_thread(sha256_of, path) == sha:
            self._verified[name] = ident
            return True
        log.warning("node_cache.corrupt_copy", file=name)
        self.stats.refused += 1
        self._drop(name)
        return False

    def _drop(self, name: str) -> None:
        self._sizes.pop(name, None)
        self._verified.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / name).unlink()

    def _make_room(self, name: str, size: int) -> None:
        if size > self.max_bytes:
            raise NodeCacheFull(f"the file ({size} bytes) is larger than the node cache ({self.max_bytes} bytes)",
                                metadata={"size": str(size), "max_bytes": str(self.max_bytes)})
        for victim in list(self._sizes):
            if self.used_bytes + size <= self.max_bytes:
                break
            if not self._busy(victim):
                log.info("node_cache.evicted", file=victim, bytes=self._sizes[victim])
                self._drop(victim)
        if self.used_bytes + size > self.max_bytes:
            raise NodeCacheFull(f"the node cache ({self.max_bytes} bytes) is held by files in use",
                                metadata={"size": str(size), "max_bytes": str(self.max_bytes)})
        self._reserved[name] = size

    async def _download(self, name: str, sha: str, what: str) -> Path:
        part = self.folder / (name + PART)
        self._sizes.pop(part.name, None)  # no longer evictable: it is being written
        try:
            return await self._download_part(name, part, sha, what)
        finally:
            self._reserved.pop(name, None)
            with contextlib.suppress(FileNotFoundError):
                left = os.stat(part).st_size
                if left:  # kept for a later resume, evictable again
                    self._sizes[part.name] = left
                else:
                    os.unlink(part)

    async def _download_part(self, name: str, part: Path, sha: str, what: str) -> Path:
        from_zero = False
        while True:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                have = os.fstat(fd).st_size
                digest = await asyncio.to_thread(_prefix_digest, part, have)
                if have:
                    self.stats.resumed += 1
                download = _Download(fd, have, digest)
                await self._fetch(download, name, sha, what)
                if download.digest.hexdigest() == sha:
                    await asyncio.to_thread(os.fsync, fd)
                    break
            finally:
                os.close(fd)
            log.warning("node_cache.hash_mismatch", file=name, resumed_from=have)
            self.stats.refused += 1
            os.unlink(part)
            if have == 0 or from_zero:  # fresh bytes from the registry that do not hash to the sha256
                raise ModelFileUnverified(f"{what}: the bytes the registry sent do not hash to its sha256",
                                          metadata={"model": what, "sha256": sha})
            from_zero = True  # the local prefix was wrong: once more, all of it
        path = self.folder / name
        os.replace(part, path)
        fsync_dir(self.folder)
        st = path.stat()
        self._verified[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._sizes[name] = st.st_size
        self.stats.fetches += 1
        log.info("node_cache.fetched", file=name, bytes=st.st_size)
        return path

    async def _fetch(self, download: _Download, name: str, sha: str, what: str) -> None:
        """Fill the .part to the file's size, resuming after each cut (up to `attempts` calls)."""
        peer = self._peer()
        stub = registry_pb2_grpc.ModelRegistryServiceStub(peer.channel)
        for attempt in range(self._attempts):
            try:
                await self._stream(peer, stub, download, name, sha)
            except PeerUnavailable:
                if attempt + 1 == self._attempts:
                    raise
                log.warning("node_cache.cut", file=name, have=download.have, attempt=attempt + 1)
                await asyncio.sleep(self._backoff_s * 2 ** attempt)
                continue
            except errors.OutOfRange:
                # INVALID_OFFSET: the .part is longer than the file; start over.
                os.ftruncate(download.fd, 0)
                download.have, download.digest, download.total = 0, hashlib.sha256(), None
                continue
            if download.total is not None and download.have == download.total:
                return
        raise ModelFileUnverified(f"{what}: its download did not complete", metadata={"model": what})

    async def _stream(self, peer: Peer, stub: registry_pb2_grpc.ModelRegistryServiceStub, download: _Download,
                      name: str, sha: str) -> None:
        call = stub.ReadModelFile(registry_pb2.ReadModelFileRequest(sha256=sha, offset=download.have))
        try:
            async for message in peer.stream(call):
                if download.total is None:
                    download.total = message.total_size
                    if name not in self._reserved:
                        self._make_room(name, message.total_size)
                if message.offset != download.have or message.total_size != download.total:
                    raise ModelFileUnverified("the registry's file changed during the download",
                                              metadata={"sha256": sha})
                chunk = message.chunk
                await asyncio.to_thread(_append, download, chunk)
                self.stats.fetched_bytes += len(chunk)
                if download.have > download.total:
                    raise ModelFileUnverified("the registry sent more bytes than the file has", metadata={"sha256": sha})
        finally:
            call.cancel()  # also when this loop raised: the stream is not left open


def _append(download: _Download, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        written = os.write(download.fd, view)
        view = view[written:]
    download.digest.update(chunk)
    download.have += len(chunk)


def _prefix_digest(path: Path, length: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    if length:
        with path.open("rb") as fh:
            left = length
            while left and (block := fh.read(min(HASH_BLOCK, left))):
                digest.update(block)
                left -= len(block)
    return digest
