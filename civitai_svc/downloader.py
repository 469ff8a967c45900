"""One file transfer: resolve the download URL, stream to a `.part` file, hash in the same pass, resume.

Why it is built this way:
- The download endpoint is asked for a fresh signed URL at the start and again
  after every dropped connection (signed storage URLs expire: about 24 h on R2,
  about 1 h on B2, so a resumed download cannot reuse the old one). The
  token goes to that endpoint only, never to the storage host.
- Bytes are hashed and written in one pass. The event loop only collects the
  socket's chunks; every `block_size` bytes the chunks go to two worker threads,
  one updating the sha256 and one `writev`ing them (both release the GIL),
  while the loop keeps receiving. At most two blocks are in flight, which
  bounds memory (2 x 16 MiB).
- After a cut, the bytes already received are flushed (TCP delivered them in
  order, so the hash state stays valid) and the transfer goes on with
  `Range: bytes=N-`. 206 appends; a 200 means the server ignored the range, so
  the file restarts from zero; 416 at the known total means it was complete.
- The first bytes are checked: an HTML page or a JSON error is never saved as a model.
- The `.part` file's length is always the count of bytes written in order (the
  space is reserved with FALLOC_FL_KEEP_SIZE, which does not change the length),
  and a cancelled transfer writes what it received before it stops. So a later
  run (after a restart, even after a crash) continues from the file's length:
  it hashes those bytes first, then goes on with Range like after a cut.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import errno
import hashlib
import os
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import httpx

from civitai_svc import errors as E
from civitai_svc.api_client import CivitaiApi, Redirect, parse_retry_after
from service_kit.logs import get_logger

log = get_logger("civitai_svc.downloader")

BLOCK_SIZE = 16 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_HTML_START = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")
_TEXT_TYPES = ("text/html", "application/json", "text/plain", "application/xml", "text/xml")

# Linux fallocate(2), for FALLOC_FL_KEEP_SIZE (os.posix_fallocate would set the length to the full size,
# and then the length no longer tells how many bytes a stopped transfer had written). None elsewhere.
_FALLOC_FL_KEEP_SIZE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate64", None) or getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int


@dataclass
class TransferResult:
    sha256: str  # lowercase hex
    size: int
    filename: str  # from Content-Disposition (or the signed URL); "" when none was sent
    resumes: int
    bytes_transferred: int


# done, total (0 if unknown), transferred, resumes
ProgressCallback = Callable[[int, int, int, int], None]


class _Stalled(Exception):
    """A transfer attempt ended without progress; the loop decides whether to try again."""


class _BlockWriter:
    """Hash and write blocks of chunks off the event loop, in order, two blocks in flight at most.

    Hashing and writing each get their own thread: both release the GIL, so a block is hashed
    while the previous one is written while the loop receives the next one.
    """

    def __init__(self, fd: int, block_size: int) -> None:
        self._fd = fd
        self._block_size = block_size
        self._hash_pool = ThreadPoolExecutor(1, thread_name_prefix="civitai-sha256")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="civitai-write")
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._inflight: deque[asyncio.Future[object]] = deque()
        self.hasher = hashlib.sha256()
        self.offset = 0  # bytes handed over (written, in flight or buffered)

    def reserve(self, size: int) -> None:
        """Allocate the whole file up front (its length unchanged): no block allocation per write, and the
        space is ours. Filesystems or systems without fallocate: the writes allocate as they go."""
        if _fallocate is None or _fallocate(self._fd, _FALLOC_FL_KEEP_SIZE, 0, size) == 0:
            return
        if ctypes.get_errno() == errno.ENOSPC:
            raise E.InsufficientDiskSpace(
                f"not enough free disk space for {size} bytes", metadata={"needed_bytes": size}
            )

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


# One Content-Disposition parameter: a name, then a quoted string (with backslash escapes) or a bare token.
_DISPOSITION_PARAM = re.compile(r'([A-Za-z0-9_\-]+\*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def disposition_filename(value: str) -> str:
    """The file name in a Content-Disposition value, or "".

    `filename*` (RFC 5987: `UTF-8''%E6%B0%B4.safetensors`) is preferred over `filename` (RFC 6266); a
    plain `filename` may hold raw UTF-8 or percent-escapes, both decoded. Works on str, so a name such as
    `水彩风格.safetensors` never has to pass through an ASCII-only header object.
    """
    plain = extended = ""
    for match in _DISPOSITION_PARAM.finditer(value or ""):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if key == "filename*" and not extended:
            charset, _, rest = raw.partition("'")
            encoded = rest.partition("'")[2]
            with contextlib.suppress(LookupError, UnicodeDecodeError):
                codecs.lookup(charset or "utf-8")  # an unknown charset makes the value unusable
                extended = unquote(encoded, encoding=charset or "utf-8", errors="strict")
        elif key == "filename" and not plain:
            plain = raw
            if "%" in plain:
                with contextlib.suppress(UnicodeDecodeError):
                    plain = unquote(plain, errors="strict")
    return (extended or plain).strip()


def filename_from_headers(headers: httpx.Headers) -> str:
    """The file name in the Content-Disposition header (filename* preferred), or ""."""
    return disposition_filename(headers.get("Content-Disposition") or "")


def filename_from_url(url: str) -> str:
    """The name a signed storage URL carries (R2 response-content-disposition, B2 b2ContentDisposition)."""
    query = parse_qs(urlsplit(url).query)  # percent-escapes decoded as UTF-8 here
    for key in ("response-content-disposition", "b2ContentDisposition"):
        if key in query:
            raw = query[key][0]
            return disposition_filename(unquote_plus(raw) if key == "b2ContentDisposition" else raw)
    return ""


def looks_like_page(first: bytes, content_type: str) -> str | None:
    """Why the body is not a model file, or None."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in _TEXT_TYPES:
        return f"the server sent {ctype} instead of the model file"
    head = first[:512].lstrip().lower()
    if head.startswith(_HTML_START):
        return "the server sent a web page instead of the model file"
    if head.startswith(b'{"error"') or head.startswith(b'{ "error"'):
        return "the server sent a JSON error instead of the model file"
    return None


class Downloader:
    """Transfers one file of a CivitAI version into a `.part` file."""

    def __init__(
        self,
        api: CivitaiApi,
        *,
        block_size: int = BLOCK_SIZE,
        max_resumes: int = 8,
        progress_interval: float = 0.2,
    ) -> None:
        self.api = api
        self.block_size = block_size
        self.max_resumes = max_resumes
        self.progress_interval = progress_interval

    async def fetch(
        self,
        *,
        version_id: int,
        file_id: int,
        part: Path,
        token: str | None = None,
        on_progress: ProgressCallback | None = None,
        check_space: Callable[[int], None] | None = None,
        continue_part: bool = False,
        transferred_before: int = 0,
        resumes_before: int = 0,
    ) -> TransferResult:
        """Download into `part`, created or truncated; with `continue_part`, after the bytes a previous run
        left there (`*_before`: that run's figures, so progress counts the whole job). The caller removes
        `part` on failure; on a cancel, `part` keeps every byte received, in order."""
        fd = os.open(part, os.O_RDWR | os.O_CREAT | (0 if continue_part else os.O_TRUNC), 0o644)
        writer = _BlockWriter(fd, self.block_size)
        total = 0
        resumes = stalls = 0
        transferred = transferred_before
        filename = ""
        last_report = 0.0
        loop = asyncio.get_running_loop()
        trailing: list[asyncio.TimerHandle] = []

        current: list[_Attempt] = []  # the attempt in progress, for live progress figures

        def report(force: bool = False) -> None:
            nonlocal last_report
            if on_progress is None:
                return
            now = time.monotonic()
            if not force and now - last_report < self.progress_interval:
                if not trailing:  # the last figures are shown too, even when no chunk follows (a stall)
                    trailing.append(loop.call_later(self.progress_interval - (now - last_report), report, True))
                return
            for handle in trailing:
                handle.cancel()
            trailing.clear()
            last_report = now
            live = current[-1] if current else None
            on_progress(
                writer.offset,
                (live.total if live else 0) or total,
                transferred + (live.received if live else 0),
                resumes_before + resumes,
            )

        try:
            if continue_part:
                await writer.adopt()
                if writer.offset:
                    resumes_before += 1  # going on from a previous run's bytes is a resume too
                    log.info("download.continue", version_id=version_id, offset=writer.offset)
                report(force=True)
            while True:
                start_offset = writer.offset
                redirect = await self.api.resolve_download(version_id, file_id, token)
                filename = filename or filename_from_url(redirect.url)
                try:
                    done = await self._attempt(redirect, writer, token, start_offset, total, check_space, report, current)
                    current.clear()  # its figures move into the totals below
                    total = done.total or total
                    filename = filename or done.filename
                    transferred += done.received
                    if done.complete:
                        break
                    # The server sent fewer bytes than announced, then closed cleanly.
                    raise _Stalled("short body")
                except (httpx.TransportError, _Stalled, _RetryStorage) as exc:
                    current.clear()
                    await writer.flush()  # what arrived is valid and in order: keep it
                    received = getattr(exc, "received", 0)
                    transferred += received
                    total = getattr(exc, "total", 0) or total
                    filename = filename or getattr(exc, "filename", "")
                    progressed = writer.offset > start_offset
                    resumes += 1
                    stalls = 0 if progressed else stalls + 1
                    if stalls > self.max_resumes or resumes > self.max_resumes * 16:
                        raise E.CivitaiUnavailable(
                            f"the download of version {version_id} keeps failing "
                            f"({exc or type(exc).__name__} after {writer.offset} bytes); try again later",
                            metadata={"version_id": version_id, "bytes_done": writer.offset},
                        ) from None
                    log.info("download.resume", version_id=version_id, offset=writer.offset, total=total,
                             resumes=resumes, error=type(exc).__name__)
                    report(force=True)
                    if not progressed:
                        await asyncio.sleep(self.api.retry.delay(stalls - 1, getattr(exc, "retry_after", None)))
                    continue
                finally:
                    report(force=True)
            await writer.flush()
            if total and writer.offset != total:
                raise E.IncompleteDownload(
                    f"got {writer.offset} of {total} bytes of version {version_id}",
                    metadata={"bytes_done": writer.offset, "total_bytes": total},
                )
            return TransferResult(writer.hasher.hexdigest(), writer.offset, filename, resumes_before + resumes,
                                  transferred)
        except asyncio.CancelledError:
            # Stopped from outside (shutdown, cancel): write what arrived, so `part` is a prefix to go on from.
            with contextlib.suppress(OSError):
                await writer.flush()
            raise
        finally:
            for handle in trailing:
                handle.cancel()
            writer.close()
            os.close(fd)

    async def _attempt(
        self,
        redirect: Redirect,
        writer: _BlockWriter,
        token: str | None,
        offset: int,
        known_total: int,
        check_space: Callable[[int], None] | None,
        report: Callable[[], None] = lambda: None,
        live: list[_Attempt] | None = None,
    ) -> _Attempt:
        """One GET of the storage URL from `offset`; raises _RetryStorage/TransportError to resume."""
        response = await self.api.open_file(redirect, offset, token)
        attempt = _Attempt(total=known_total, filename=filename_from_headers(response.headers))
        if live is not None:
            live[:] = [attempt]
        try:
            status = response.status_code
            if status == 416:
                # Nothing left to send from `offset`: complete if we know the size and have it all.
                tail = response.headers.get("Content-Range", "").rsplit("/", 1)[-1].strip()
                size = int(tail) if tail.isdigit() else 0
                if offset and offset in (size, known_total):
                    attempt.total = offset
                    attempt.complete = True
                    return attempt
                await writer.restart()
                raise _RetryStorage("416 at an unexpected offset", attempt)
            if status == 206:
                m = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    await writer.restart()
                    raise _RetryStorage("206 from an unexpected offset", attempt)
                attempt.total = int(m.group(3)) if m.group(3) != "*" else 0
            elif status == 200:
                if offset:
                    log.info("download.range_ignored", offset=offset)
                    await writer.restart()
                length = response.headers.get("Content-Length")
                attempt.total = int(length) if length and length.isdigit() else 0
            elif status in (400, 401, 403, 404, 408, 410, 429) or status >= 500:
                # Storage refusals (expired signature, throttling, hiccups): ask for a fresh URL.
                await response.aread()
                if status in (429, 503):
                    attempt.retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise _RetryStorage(f"storage answered {status}", attempt)
            else:
                raise E.CivitaiUnavailable(f"the storage host answered HTTP {status}", metadata={"http_status": status})

            if check_space is not None and attempt.total and not known_total:
                check_space(attempt.total - writer.offset)  # exact size known now: enough room left?
            first = writer.offset == 0
            async for chunk in response.aiter_raw():
                if first:
                    first = False
                    why = looks_like_page(chunk, response.headers.get("Content-Type", ""))
                    if why:
                        raise E.NotAModelFile(
                            f"{why} (often a login, early-access or challenge page); "
                            f"nothing was installed. If the model needs a login, {E.TOKEN_HINT}",
                            metadata={"content_type": response.headers.get("Content-Type", "")},
                        )
                    if attempt.total:
                        writer.reserve(attempt.total)  # only once the body looks like a model file
                attempt.received += len(chunk)
                if writer.add(chunk):
                    await writer.submit()
                report()  # throttled to progress_interval inside
            attempt.complete = not attempt.total or writer.offset >= attempt.total
            return attempt
        except httpx.TransportError as exc:
            raise _RetryStorage(type(exc).__name__, attempt) from exc
        finally:
            await response.aclose()


@dataclass
class _Attempt:
    total: int = 0
    filename: str = ""
    received: int = 0
    complete: bool = False
    retry_after: float | None = None


class _RetryStorage(Exception):
    def __init__(self, why: str, attempt: _Attempt) -> None:
        super().__init__(why)
        self.received = attempt.received
        self.total = attempt.total
        self.filename = attempt.filename
        self.retry_after = attempt.retry_after
