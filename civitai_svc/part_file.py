"""The `.part` file a transfer writes: bytes hashed and written in order off the event loop, space reserved.

Its length is always the count of bytes written in order (the space is reserved with
FALLOC_FL_KEEP_SIZE, which leaves the length alone), so a later run continues from the length.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from civitai_svc import errors as E

# Linux fallocate(2), for FALLOC_FL_KEEP_SIZE (os.posix_fallocate would set the length to the full size,
# and then the length no longer tells how many bytes a stopped transfer had written). None elsewhere.
_FALLOC_FL_KEEP_SIZE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate64", None) or getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int


def reserve_space(fd: int, size: int) -> None:
    """Allocate `size` bytes for `fd` without changing its length. A full disk raises
    InsufficientDiskSpace; no fallocate (other systems, some filesystems): the writes allocate as they go."""
    if _fallocate is None or _fallocate(fd, _FALLOC_FL_KEEP_SIZE, 0, size) == 0:
        return
    if ctypes.get_errno() == errno.ENOSPC:
        raise E.InsufficientDiskSpace(f"not enough free disk space for {size} bytes", metadata={"needed_bytes": size})


class PartFile:
    """Hash and write blocks of chunks off the event loop, in order, two blocks in flight at most.

    Hashing and writing each get their own thread: both release the GIL, so a block is hashed
    while the previous one is written while the loop receives the next one. At most two blocks
    are in flight, which bounds memory.
    """

    def __init__(self, path: Path, block_size: int, *, keep: bool = False) -> None:
        """Open `path`, created or truncated; with `keep`, its bytes stay (`adopt()` goes on after them)."""
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | (0 if keep else os.O_TRUNC), 0o644)
        self._block_size = block_size
        self._hash_pool = ThreadPoolExecutor(1, thread_name_prefix="civitai-sha256")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="civitai-write")
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._inflight: deque[asyncio.Future[tuple[None, None]]] = deque()
        self.hasher = hashlib.sha256()
        self.offset = 0  # bytes handed over (written, in flight or buffered)

    def reserve(self, size: int) -> None:
        """Allocate the whole file up front: no block allocation per write, and the space is ours."""
        reserve_space(self._fd, size)

    async def adopt(self) -> None:
        """Continue after the bytes already in the file: hash them block by block in the hash thread
        (a cancel stops between blocks), then append after them."""
        loop = asyncio.get_running_loop()
        while read := await loop.run_in_executor(self._hash_pool, self._hash_at, self.offset):
            self.offset += read
        os.lseek(self._fd, self.offset, os.SEEK_SET)

    def _hash_at(self, offset: int) -> int:
        data = os.pread(self._fd, self._block_size, offset)
        self.hasher.update(data)
        return len(data)

    def add(self, chunk: bytes) -> bool:
        """Buffer a chunk; True when a block is full and `submit()` should be awaited."""
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self.offset += len(chunk)
        return self._buffered >= self._block_size

    @staticmethod
    def _hash(chunks: list[bytes], hasher: hashlib._Hash) -> None:
        for chunk in chunks:
            hasher.update(chunk)

    def _write(self, chunks: list[bytes]) -> None:
        pending: list[bytes | memoryview] = list(chunks)
        while pending:
            written = os.writev(self._fd, pending[:1024])  # IOV_MAX
            while written and pending:  # partial writes: drop what went out
                head = pending[0]
                if written >= len(head):
                    written -= len(head)
                    pending.pop(0)
                else:
                    pending[0] = memoryview(head)[written:]
                    written = 0

    async def submit(self) -> None:
        if not self._chunks:
            return
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        loop = asyncio.get_running_loop()
        hashed = loop.run_in_executor(self._hash_pool, self._hash, chunks, self.hasher)
        written = loop.run_in_executor(self._write_pool, self._write, chunks)
        self._inflight.append(asyncio.gather(hashed, written))
        while len(self._inflight) > 2:
            await self._wait_oldest()

    async def _wait_oldest(self) -> None:
        # Shielded: a cancel must not drop a queued write while later ones still run (a gap in the file);
        # the block stays in flight until flush() has seen it done.
        await asyncio.shield(self._inflight[0])
        self._inflight.popleft()

    async def flush(self) -> None:
        await self.submit()
        while self._inflight:
            await self._wait_oldest()

    async def restart(self) -> None:
        """Drop everything: the server ignored our Range, the file starts again from byte 0."""
        await self.flush()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self.hasher = hashlib.sha256()
        self.offset = 0

    def close(self) -> None:
        # Waits for a block being hashed/written (at most two), so the fd can be closed after.
        for pool in (self._hash_pool, self._write_pool):
            pool.shutdown(wait=True, cancel_futures=True)
        os.close(self._fd)
