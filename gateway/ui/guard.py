"""What a web-UI client may make the gateway touch: only files it uploaded itself, small bodies, nothing remote.

Gradio trusts the file paths a client names in an event (`{"path": ..., "meta": {"_type": "gradio.FileData"}}`)
once its Blocks is "launched", and a Blocks mounted with `mount_gradio_app` never is, so any server file
could be named, copied into the cache and served back. Even when its check runs it admits every file in
its cache: other clients' uploads and every output. This pure-ASGI middleware, in front of the UI:

- records which client uploaded which file (`POST /gradio_api/upload`), the client being its login
  cookie (with no API key set the UI is open and all clients are one);
- refuses any UI request whose JSON body names a file path this client did not upload (a URL included:
  Gradio would fetch it from the server);
- refuses an image larger than the inference service takes, from its header, before Gradio decodes it;
- bounds every other UI body (small JSON) before Gradio reads it, and refuses uploads the disk cannot hold;
- refuses `/file=<url>` and `/proxy=` (Gradio fetches those server-side: an open proxy);
- answers `queue/data` for an unknown session with a plain 404 (Gradio raises it mid-stream, which
  Starlette logs as a traceback per request).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError, body_too_large, send_error
from gateway.security import content_length
from service_kit.logs import get_logger

log = get_logger("gateway.ui")

PREFIX = "/gradio_api"
MAX_EVENT_BODY = 1024 * 1024  # events carry prompts and FileData references, never file bytes
MAX_LOGIN_BODY = 64 * 1024
MAX_TRACKED_UPLOADS = 10_000
# The inference service refuses larger inputs (inference_svc/images.py MAX_INPUT_PIXELS); the guard checks
# from the header first, since Gradio decodes and converts an image input before any handler runs.
MAX_INPUT_PIXELS = 4096 * 4096
DISK_RESERVE_BYTES = 1024**3  # an upload must leave this much free where the UI keeps its files
UNGUARDED = ("/api/", "/docs", "/openapi.json")


def client_of(scope: Scope) -> str:
    """The login a request carries: a digest of Gradio's access-token cookies ('' when there are none)."""
    tokens = []
    for name, value in scope.get("headers", ()):
        if name != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, val = part.strip().partition("=")
            if key.startswith("access-token"):
                tokens.append(val)
    return hashlib.sha256("|".join(sorted(set(tokens))).encode()).hexdigest() if tokens else ""


def named_paths(value: Any) -> list[str]:
    """Every file path a JSON event names (Gradio treats any dict with a string 'path' as a file)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("path"), str):
                found.append(item["path"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class UploadedFiles:
    """Files clients uploaded through the UI, by client; the UI's handlers take only these."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._owners: OrderedDict[str, str] = OrderedDict()

    def add(self, path: str, client: str) -> None:
        self._owners[path] = client
        self._owners.move_to_end(path)
        while len(self._owners) > MAX_TRACKED_UPLOADS:
            self._owners.popitem(last=False)

    def owned_by(self, path: str, client: str) -> bool:
        if self._owners.get(path) != client:
            return False
        candidate = Path(path)
        # A regular file inside the upload folder, reached without symlinks.
        return (not candidate.is_symlink() and candidate.is_file()
                and candidate.resolve().is_relative_to(self.root))

    def is_upload(self, path: str) -> bool:
        return path in self._owners

    def release(self, path: str) -> None:
        """Forget an upload and remove it (with its per-upload folder) once a handler has used it."""
        if self._owners.pop(path, None) is None:
            return
        file = Path(path)
        file.unlink(missing_ok=True)
        if file.parent.resolve() != self.root:
            shutil.rmtree(file.parent, ignore_errors=True)


class UiGuard:
    def __init__(self, app: ASGIApp, *, uploads: UploadedFiles, blocks: Any, max_file_bytes: int) -> None:
        self.app = app
        self.uploads = uploads
        self.blocks = blocks
        self.max_file_bytes = max_file_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(UNGUARDED):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        refusal = self._refuse_url(path)
        if refusal is None and path == f"{PREFIX}/queue/data":
            refusal = self._refuse_unknown_session(scope)
        if refusal is not None:
            await send_error(send, refusal)
            return
        if method != "POST":
            await self.app(scope, receive, send)
        elif path == f"{PREFIX}/upload":
            await self._upload(scope, receive, send)
        else:
            await self._event(scope, receive, send, MAX_LOGIN_BODY if path.startswith("/login") else MAX_EVENT_BODY)

    @staticmethod
    def _refuse_url(path: str) -> ApiError | None:
        for marker in ("/file=", "/file/", "/proxy="):
            _, found, rest = path.partition(marker)
            if found and (marker == "/proxy=" or "://" in unquote(rest)[:16]):
                return ApiError.local(403, "the UI serves only its own files, never a URL", "PATH_NOT_ALLOWED")
        return None

    def _refuse_unknown_session(self, scope: Scope) -> ApiError | None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        session = (query.get("session_hash") or [""])[0]
        # The same check Gradio makes, made before the stream starts (it raises it after).
        if session not in self.blocks._queue.pending_messages_per_session:
            return ApiError.local(404, "no such UI session", "SESSION_NOT_FOUND")
        return None

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = content_length(scope)
        if length is not None and length > self.max_file_bytes + MAX_EVENT_BODY:
            await send_error(send, ApiError.local(413, f"a UI upload is at most {self.max_file_bytes} bytes",
                                                  "UPLOAD_TOO_LARGE"))
            return
        self.uploads.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.uploads.root).free
        if free < (length or 0) + DISK_RESERVE_BYTES:
            await send_error(send, ApiError.local(507, "not enough free disk space for this upload",
                                                  "INSUFFICIENT_STORAGE"))
            return
        client = client_of(scope)
        status = 0
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200 and len(body) < MAX_EVENT_BODY:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    self._record(bytes(body), client)
            await send(message)

        await self.app(scope, receive, capture)

    def _record(self, body: bytes, client: str) -> None:
        try:
            paths = json.loads(body)
        except ValueError:
            return
        for path in paths if isinstance(paths, list) else []:
            if isinstance(path, str):
                self.uploads.add(path, client)

    async def _event(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        length = content_length(scope)
        too_large = body_too_large(limit)
        if length is not None and length > limit:
            await send_error(send, too_large)
            return
        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.extend(message.get("body", b""))
            if len(chunks) > limit:
                await send_error(send, too_large)
                return
            if not message.get("more_body"):
                break
        body = bytes(chunks)
        try:
            named = named_paths(json.loads(body)) if body[:1] in (b"{", b"[") else []
        except ValueError:
            named = []  # not JSON: Gradio answers it; nothing in it can name a file for us
        client = client_of(scope)
        for path in named:
            if not self.uploads.owned_by(path, client):
                log.warning("ui.file_refused", path_digest=hashlib.sha256(path.encode()).hexdigest()[:12])
                await send_error(send, ApiError.local(403, "the UI takes only files you uploaded in this session",
                                                      "FILE_NOT_UPLOADED"))
                return
            oversized = await asyncio.to_thread(oversized_image, path)
            if oversized:
                await send_error(send, ApiError.local(413, oversized, "IMAGE_TOO_LARGE"))
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def oversized_image(path: str) -> str | None:
    """Why the file is an image too large to take (from its header, nothing decoded); None when it is not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # judged below, by our limit
            with Image.open(path) as probe:  # parses the header only
                width, height = probe.size
    except Image.DecompressionBombError as exc:  # Pillow's own, stricter-than-us limit
        return str(exc).split(" could be")[0]
    except (OSError, ValueError):
        return None  # not an image (a model file): not ours to judge here
    if width * height > MAX_INPUT_PIXELS:
        return f"the image is {width}x{height}: at most {MAX_INPUT_PIXELS} pixels are taken"
    return None


def upload_root() -> Path:
    """Where Gradio puts uploads (its GRADIO_TEMP_DIR rule)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


__all__ = ["UiGuard", "UploadedFiles", "client_of", "named_paths", "upload_root"]
