"""One file transfer: resolve the download URL, stream to a `.part` file, hash in the same pass, resume.

Why it is built this way:
- The download endpoint is asked for a fresh signed URL at the start and again
  after every dropped connection (signed storage URLs expire: about 24 h on R2,
  about 1 h on B2, so a resumed download cannot reuse the old one). The
  token goes to that endpoint only, never to the storage host.
- Bytes are hashed and written in one pass. The event loop only collects the
  socket's chunks; every `block_size` bytes the chunks go to two worker threads
  (civitai_svc.part_file), one updating the sha256 and one `writev`ing them
  (both release the GIL), while the loop keeps receiving. At most two blocks
  are in flight, which bounds memory (2 x 16 MiB).
- One `Transfer` holds a fetch's state (offset and hash in its part file, the
  size and name the servers told, the figures counted); each of its methods
  does one step, and `Downloader.fetch` runs them in order.
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
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import httpx

from civitai_svc import errors as E
from civitai_svc.api_client import CivitaiApi, Redirect, parse_retry_after
from civitai_svc.part_file import PartFile
from service_kit.logs import get_logger

log = get_logger("civitai_svc.downloader")

BLOCK_SIZE = 16 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_HTML_START = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")
_TEXT_TYPES = ("text/html", "application/json", "text/plain", "application/xml", "text/xml")


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
        transfer = Transfer(
            api=self.api,
            part=PartFile(part, self.block_size, keep=continue_part),
            version_id=version_id,
            file_id=file_id,
            token=token,
            max_resumes=self.max_resumes,
            progress_interval=self.progress_interval,
            on_progress=on_progress,
            check_space=check_space,
            transferred=transferred_before,
            resumes_before=resumes_before,
        )
        try:
            if continue_part:
                await transfer.continue_kept()
            while not await transfer.attempt_once():
                pass
            return await transfer.result()
        except asyncio.CancelledError:
            await transfer.keep_received()
            raise
        finally:
            transfer.close()


@dataclass
class _Attempt:
    """What one GET of the storage URL learnt and received."""

    total: int = 0
    filename: str = ""
    received: int = 0
    complete: bool = False
    retry_after: float | None = None


class _RetryStorage(Exception):
    """The storage refused or cut this attempt; a fresh URL from `offset` may work."""

    def __init__(self, why: str, attempt: _Attempt) -> None:
        super().__init__(why)
        self.attempt = attempt


@dataclass(eq=False)
class Transfer:
    """The state of one `Downloader.fetch()`: the file as far as the servers told it, the figures counted
    so far and the `.part` file the bytes go to. Each method does one step; `fetch()` runs them in order."""

    api: CivitaiApi
    part: PartFile  # holds the offset (bytes in order) and the sha256 of those bytes
    version_id: int
    file_id: int
    token: str | None
    max_resumes: int
    progress_interval: float
    on_progress: ProgressCallback | None = None
    check_space: Callable[[int], None] | None = None
    transferred: int = 0  # network bytes: every attempt's, and those of the runs before
    resumes_before: int = 0  # the runs before
    total: int = 0  # the file's size once a server said it, 0 while unknown
    filename: str = ""  # the served name (signed URL or Content-Disposition), "" while none
    resumes: int = 0
    stalls: int = 0  # attempts in a row that added no byte
    live: _Attempt | None = None  # the attempt in progress, for live progress figures
    _last_report: float = field(default=0.0, init=False, repr=False)
    _trailing: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)

    async def continue_kept(self) -> None:
        """Go on after the bytes a previous run left in the part file: they are hashed first."""
        await self.part.adopt()
        if self.part.offset:
            self.resumes_before += 1  # going on from a previous run's bytes is a resume too
            log.info("download.continue", version_id=self.version_id, offset=self.part.offset)
        self.report(force=True)

    async def attempt_once(self) -> bool:
        """One attempt from the current offset, with a fresh signed URL; True once the file is complete,
        False after a cut, a short body or a storage refusal (counted and waited out): try again."""
        start = self.part.offset
        redirect = await self.api.resolve_download(self.version_id, self.file_id, self.token)
        self.filename = self.filename or filename_from_url(redirect.url)
        try:
            done = await self._get(redirect, start)
            self.live = None  # its figures move into the totals
            self._count(done)
            if done.complete:
                return True
            raise _Stalled("short body")  # the server sent fewer bytes than announced, then closed cleanly
        except (httpx.TransportError, _Stalled, _RetryStorage) as exc:
            self.live = None
            await self._recover(exc, start)
            return False
        finally:
            self.report(force=True)

    def _count(self, attempt: _Attempt) -> None:
        self.total = attempt.total or self.total
        self.filename = self.filename or attempt.filename
        self.transferred += attempt.received

    async def _recover(self, exc: Exception, start: int) -> None:
        """After a failed attempt: keep what arrived (in order, so the hash state stays valid), give up after
        too many failures, and back off when the attempt added nothing."""
        await self.part.flush()
        if isinstance(exc, _RetryStorage):
            self._count(exc.attempt)
        progressed = self.part.offset > start
        self.resumes += 1
        self.stalls = 0 if progressed else self.stalls + 1
        if self.stalls > self.max_resumes or self.resumes > self.max_resumes * 16:
            raise E.CivitaiUnavailable(
                f"the download of version {self.version_id} keeps failing "
                f"({exc or type(exc).__name__} after {self.part.offset} bytes); try again later",
                metadata={"version_id": self.version_id, "bytes_done": self.part.offset},
            ) from None
        log.info("download.resume", version_id=self.version_id, offset=self.part.offset, total=self.total,
                 resumes=self.resumes, error=type(exc).__name__)
        self.report(force=True)
        if not progressed:
            retry_after = exc.attempt.retry_after if isinstance(exc, _RetryStorage) else None
            await asyncio.sleep(self.api.retry.delay(self.stalls - 1, retry_after))

    async def _get(self, redirect: Redirect, offset: int) -> _Attempt:
        """One GET of the storage URL from `offset`; raises _RetryStorage/TransportError to resume."""
        response = await self.api.open_file(redirect, offset, self.token)
        attempt = _Attempt(total=self.total, filename=filename_from_headers(response.headers))
        self.live = attempt
        try:
            if await self._has_body(response, attempt, offset):
                await self._receive(response, attempt)
            return attempt
        except httpx.TransportError as exc:
            raise _RetryStorage(type(exc).__name__, attempt) from exc
        finally:
            await response.aclose()

    async def _has_body(self, response: httpx.Response, attempt: _Attempt, offset: int) -> bool:
        """What the status says, into `attempt`: True when the body is the file from `offset` (or from 0,
        the part file restarted), False when nothing is left to fetch; _RetryStorage for a fresh URL."""
        status = response.status_code
        if status == 416:
            # Nothing left to send from `offset`: complete if we know the size and have it all.
            tail = response.headers.get("Content-Range", "").rsplit("/", 1)[-1].strip()
            size = int(tail) if tail.isdigit() else 0
            if offset and offset in (size, self.total):
                attempt.total = offset
                attempt.complete = True
                return False
            await self.part.restart()
            raise _RetryStorage("416 at an unexpected offset", attempt)
        if status == 206:
            m = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                await self.part.restart()
                raise _RetryStorage("206 from an unexpected offset", attempt)
            attempt.total = int(m.group(3)) if m.group(3) != "*" else 0
        elif status == 200:
            if offset:
                log.info("download.range_ignored", offset=offset)
                await self.part.restart()
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
        return True

    async def _receive(self, response: httpx.Response, attempt: _Attempt) -> None:
        """Stream the body into the part file, counting it into `attempt`."""
        if self.check_space is not None and attempt.total and not self.total:
            self.check_space(attempt.total - self.part.offset)  # exact size known now: enough room left?
        first = self.part.offset == 0
        async for chunk in response.aiter_raw():
            if first:
                first = False
                self._check_start(chunk, response.headers.get("Content-Type", ""), attempt.total)
            attempt.received += len(chunk)
            if self.part.add(chunk):
                await self.part.submit()
            self.report()  # throttled to progress_interval inside
        attempt.complete = not attempt.total or self.part.offset >= attempt.total

    def _check_start(self, first: bytes, content_type: str, total: int) -> None:
        """The file's first bytes: a web page or JSON error is never saved; a model file gets its space."""
        why = looks_like_page(first, content_type)
        if why:
            raise E.NotAModelFile(
                f"{why} (often a login, early-access or challenge page); "
                f"nothing was installed. If the model needs a login, {E.TOKEN_HINT}",
                metadata={"content_type": content_type},
            )
        if total:
            self.part.reserve(total)  # only once the body looks like a model file

    def report(self, force: bool = False) -> None:
        """The figures to on_progress, at most every progress_interval unless forced; a throttled report
        is sent later, so the last figures show even when no chunk follows (a stall)."""
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < self.progress_interval:
            if self._trailing is None:
                delay = self.progress_interval - (now - self._last_report)
                self._trailing = asyncio.get_running_loop().call_later(delay, self.report, True)
            return
        self._cancel_trailing()
        self._last_report = now
        live = self.live
        self.on_progress(
            self.part.offset,
            (live.total if live else 0) or self.total,
            self.transferred + (live.received if live else 0),
            self.resumes_before + self.resumes,
        )

    async def result(self) -> TransferResult:
        """Once complete: every byte written, and as many as the server announced."""
        await self.part.flush()
        if self.total and self.part.offset != self.total:
            raise E.IncompleteDownload(
                f"got {self.part.offset} of {self.total} bytes of version {self.version_id}",
                metadata={"bytes_done": self.part.offset, "total_bytes": self.total},
            )
        return TransferResult(self.part.hasher.hexdigest(), self.part.offset, self.filename,
                              self.resumes_before + self.resumes, self.transferred)

    async def keep_received(self) -> None:
        """Stopped from outside (shutdown, cancel): write what arrived, so the part file is a prefix to go
        on from."""
        with contextlib.suppress(OSError):
            await self.part.flush()

    def _cancel_trailing(self) -> None:
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None

    def close(self) -> None:
        self._cancel_trailing()
        self.part.close()
