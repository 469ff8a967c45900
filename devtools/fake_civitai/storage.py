"""The storage server (like Cloudflare R2 behind a signed URL): Range/206/416, Content-Disposition name
forms, sendfile, and the transfer faults (cut, stalled, corrupt, throttled, an HTML page instead)."""

from __future__ import annotations

import re
import select
import socket
import time
from urllib.parse import parse_qs, quote, urlsplit

from devtools.fake_civitai.catalog import SEND_BLOCK, StoredFile
from devtools.fake_civitai.http_base import Handler

CLOUDFLARE_HTML = (
    b"<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>"
    b"<body><h1>Checking your browser before accessing civitai.com</h1></body></html>\n"
)


def content_disposition(name: str, form: str = "rfc5987") -> str:
    """A Content-Disposition value. "rfc5987", as CivitAI's storage writes it: an ASCII `filename` and, for
    any other name, RFC 5987's `filename*` (HTTP headers are Latin-1, so `水彩风格.safetensors` cannot
    travel as-is); "rfc5987-only": `filename*` alone; "utf8": the name as it is in `filename`."""
    if form == "utf8":
        return f'attachment; filename="{name}"'
    extended = f"filename*=UTF-8''{quote(name, safe='')}"
    if form == "rfc5987-only":
        return f"attachment; {extended}"
    # Printable ASCII only: a control character or a quote would break the header.
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f'attachment; filename="{fallback}"; {extended}'


def url_disposition(name: str, form: str | None) -> str:
    """The `&response-content-disposition=...` part of a signed storage URL ("" when left out)."""
    if form is None:
        return ""
    if form == "rfc5987-once":  # the value's own %-escapes are not encoded a second time
        return "&response-content-disposition=" + quote(content_disposition(name, "rfc5987-only"), safe="%")
    return "&response-content-disposition=" + quote(content_disposition(name, form), safe="")


class StorageHandler(Handler):
    server_name = "storage"

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._record()
        fake = self.fake
        fake._count("storage")
        if "Authorization" in self.headers:
            # R2 presigned URLs reject any Authorization header.
            self._send(400, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidRequest</Code>"
                            b"<Message>Missing x-amz-content-sha256</Message></Error>",
                       content_type="application/xml")
            return
        parts = urlsplit(self.path)
        segs = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        sig = (query.get("X-Amz-Signature") or [""])[0]
        with fake._lock:
            file_id = fake._signatures.get(sig)
            if len(segs) < 2 or file_id is None or str(file_id) != segs[1]:
                self._send(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                           content_type="application/xml")
                return
            if self._rule("storage", file_id):
                return
            stored = fake._files[file_id]
            drop = fake._drops.get(file_id)
            cut_after = None
            if drop and drop[1] > 0:
                drop[1] -= 1
                cut_after = drop[0]
            stall = fake._stalls.get(file_id)
            stall_after = None
            if stall and stall[1] > 0:
                stall[1] -= 1
                stall_after = stall[0]
        if stored.html is not None:
            self._send(200, CLOUDFLARE_HTML, content_type=stored.html)
            return
        size = stored.size
        start, end = 0, size - 1
        status = 200
        header_range = self.headers.get("Range")
        if header_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", header_range.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size or start > end:
                    self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if stored.header_form == "utf8":
            # Raw UTF-8 bytes, as some servers send them (send_header would encode as Latin-1 and fail).
            line = f"Content-Disposition: {content_disposition(stored.disposition_name, 'utf8')}\r\n"
            self._headers_buffer.append(line.encode())
        elif stored.header_form is not None:
            self.send_header("Content-Disposition", content_disposition(stored.disposition_name, stored.header_form))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = cut_after if cut_after is not None else stall_after
        to_send = length if limit is None else max(0, min(length, limit))
        # Counted before sending, so a client that has read everything never sees a stale count;
        # corrected below if the send falls short.
        with fake._lock:
            fake._served[file_id] = fake._served.get(file_id, 0) + to_send
        sent = self._body(stored, start, to_send)
        if sent != to_send:
            with fake._lock:
                fake._served[file_id] -= to_send - sent
        if stall_after is not None and to_send < length:
            self._wait_for_hangup()
        elif cut_after is not None and to_send < length:
            with fake._lock:
                fake._signatures.pop(sig, None)  # a cut transfer's URL is expired: ask again
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

    def _wait_for_hangup(self) -> None:
        """A stall: send nothing more until the client closes the connection (or the fake is closed)."""
        self.wfile.flush()
        while not self.fake._closed.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:  # end of stream (or a reset): the client has gone
                break
        self.close_connection = True

    def _body(self, stored: StoredFile, start: int, count: int) -> int:
        """Send `count` bytes of the file from `start`; returns how many went out."""
        self.wfile.flush()
        flip = stored.size // 2 if stored.corrupt else -1
        sent = 0
        try:
            if isinstance(stored.content, bytes) or flip >= 0 or stored.rate:
                data = stored.content if isinstance(stored.content, bytes) else None
                with (open(stored.content, "rb") if data is None else _Null()) as f:
                    while sent < count:
                        n = min(SEND_BLOCK if not stored.rate else 64 * 1024, count - sent)
                        if stored.rate:
                            time.sleep(n / stored.rate)
                        pos = start + sent
                        if data is not None:
                            block = bytearray(data[pos : pos + n])
                        else:
                            f.seek(pos)
                            block = bytearray(f.read(n))
                        if pos <= flip < pos + n:
                            block[flip - pos] ^= 0xFF
                        self.connection.sendall(block)
                        sent += n
                return sent
            with open(stored.content, "rb") as f:
                return self.connection.sendfile(f, start, count) or 0
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return sent  # the blocks sent before the client went away


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
