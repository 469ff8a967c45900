"""The API server's routes: metadata (single and bulk), the download endpoint's 307, HTML pages, preview images."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from devtools.fake_civitai.catalog import MAX_IDS
from devtools.fake_civitai.http_base import Handler
from devtools.fake_civitai.images import CDN_KEY, INVALID_IMAGE, StoredImage, bomb_png, huge_jpeg_blocks
from devtools.fake_civitai.storage import url_disposition

MAX_BULK_HASHES = 100  # POST /api/v1/model-versions/by-hash, as CivitAI's schema caps it
MAX_POST_BYTES = 1 << 20


class ApiHandler(Handler):
    server_name = "api"

    def do_HEAD(self) -> None:
        self._record()
        if self.path.startswith(f"/{CDN_KEY}/"):
            self._image([unquote(s) for s in urlsplit(self.path).path.split("/") if s])
            return
        # HEAD on the download endpoint 401s even with a token on the real site.
        self._send(401, {"error": "Unauthorized"})

    def do_GET(self) -> None:
        self._record()
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        segs = [unquote(s) for s in parts.path.split("/") if s]
        if segs and segs[0] == CDN_KEY:
            self._image(segs)  # outside the lock: a huge image streams for a while
            return
        fake = self.fake
        with fake._lock:
            match segs:
                case ["api", "v1", "models", mid]:
                    self._model(mid)
                case ["api", "v1", "models"] if "ids" in query:
                    self._models_by_ids(query)
                case ["api", "v1", "models"]:
                    fake._count("search")
                    if not self._rule("search", None):
                        self._send(200, fake._search(query))
                case ["api", "v1", "model-versions", "by-hash", value]:
                    fake._count("by-hash")
                    if self._rule("by-hash", None):
                        return
                    found = fake._by_hash(value)
                    if found is None:
                        self._send(404, {"error": "Model not found"})
                    else:
                        self._send(200, fake._version_response(*found))
                case ["api", "v1", "model-versions", vid]:
                    self._version(vid)
                case ["api", "download", "models", vid]:
                    self._download(vid, query)
                case ["login"]:
                    self._send(200, "<!DOCTYPE html><html><body>Log in to Civitai</body></html>",
                               content_type="text/html; charset=utf-8")
                case ["model-versions", vid]:
                    self._send(200, f"<!DOCTYPE html><html><body>Model version {vid}</body></html>",
                               content_type="text/html; charset=utf-8")
                case _:
                    self._send(404, {"error": "Not found"})

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_POST_BYTES:
            self._record()
            self._send(413 if length.isdigit() else 411, {"error": "Body too large or without Content-Length"})
            self.close_connection = True
            return
        body = self.rfile.read(int(length))
        self._record(body)
        segs = [unquote(s) for s in urlsplit(self.path).path.split("/") if s]
        with self.fake._lock:
            if segs == ["api", "v1", "model-versions", "by-hash"]:
                self._by_hashes(body)
            else:
                self._send(404, {"error": "Not found"})

    # ----------------------------------------------------------------- metadata

    def _int(self, text: str) -> int | None:
        return int(text) if text.isdigit() and 1 <= int(text) <= 2_147_483_647 else None

    def _model(self, raw: str) -> None:
        self.fake._count("model")
        model_id = self._int(raw)
        if model_id is None:
            self._send(400, {"error": "Invalid id"})
        elif not self._rule("model", model_id):
            model = self.fake._models.get(model_id)
            if model is None:
                self._send(404, {"error": f"No model with id {model_id}"})
            else:
                self._send(200, model)

    def _models_by_ids(self, query: dict[str, list[str]]) -> None:
        """GET /api/v1/models?ids=1,2,...: list items (the usual filters still apply, nsfw included)."""
        self.fake._count("models-ids")
        if self._rule("models-ids", None):
            return
        raw = [part.strip() for value in query["ids"] for part in value.split(",") if part.strip()]
        ids = [self._int(part) for part in raw]
        if not raw or None in ids or len(ids) > MAX_IDS:
            # A list 400's `error` is a serialized Zod error, not a string.
            message = f"at most {MAX_IDS} ids" if len(ids) > MAX_IDS else "Expected number, received nan"
            self._send(400, {"error": {"issues": [{"code": "invalid_type", "path": ["ids"], "message": message}],
                                       "name": "ZodError"}})
            return
        wanted = {i for i in ids if i is not None}
        self._send(200, self.fake._search({**query, "limit": [str(MAX_IDS)]}, ids=wanted))

    def _by_hashes(self, body: bytes) -> None:
        """POST /api/v1/model-versions/by-hash: up to 100 SHA256s in, the versions known out (misses dropped)."""
        fake = self.fake
        fake._count("by-hash-bulk")
        if self._rule("by-hash-bulk", None):
            return
        try:
            hashes: Any = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            hashes = None
        problem = None
        if not isinstance(hashes, list):
            problem = "Expected array"
        elif len(hashes) > MAX_BULK_HASHES:
            problem = "Too many hashes"
        elif not all(isinstance(h, str) and len(h) == 64 for h in hashes):
            problem = "Invalid hash"
        if problem is not None:
            self._send(400, {"error": f"Request must include an array of SHA256 Hashes. {problem}"})
            return
        out, seen = [], set()
        for value in hashes:
            found = fake._by_hash(value, sha256_only=True)
            if found is not None and found[1]["id"] not in seen:
                seen.add(found[1]["id"])
                out.append(fake._version_response(*found))
        self._send(200, out)

    def _version(self, raw: str) -> None:
        self.fake._count("version")
        version_id = self._int(raw)
        if version_id is None:
            self._send(400, {"error": "Invalid id"})
            return
        if self._rule("version", version_id):
            return
        found = self.fake._find_version(version_id)
        if found is None:
            self._send(404, {"error": "Model not found"})
        else:
            self._send(200, self.fake._version_response(*found))

    # ----------------------------------------------------------------- download endpoint

    def _download(self, raw: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        fake._count("download")
        version_id = self._int(raw)
        if version_id is None:
            self._send(400, {"error": "Invalid id"})
            return
        if self._rule("download", version_id):
            return
        auth = self.headers.get("Authorization", "")
        presented = auth.split(" ", 1)[1] if " " in auth else (query.get("token") or [""])[0]
        browser = self.browser
        if fake.token is not None and presented != fake.token:
            if browser:
                self._send(307, b"", {"Location": f"/login?returnUrl=/model-versions/{version_id}&reason=download-auth"})
            else:
                self._send(401, {"error": "Unauthorized",
                                 "message": "The creator of this asset requires you to be logged in to download it"})
            return
        found = fake._find_version(version_id)
        if found is None:
            self._send(404, {"error": "File not found"} if not browser else "File not found")
            return
        model, version = found
        if model.get("mode") == "Archived":
            self._send(410, {"error": "Model archived, not available for download"})
            return
        if version_id in fake._early:
            if browser:
                self._send(307, b"", {"Location": f"/model-versions/{version_id}"})
            else:
                self._send(403, {"error": "Early Access", "deadline": fake._early[version_id],
                                 "message": "This asset is in Early Access. You can use Buzz access it now!"})
            return
        if version_id in fake._forbidden:
            self._send(403, {"error": "You do not have access to download this file"})
            return
        files = version.get("files") or []
        wanted = (query.get("fileId") or [None])[0]
        if wanted is not None:
            chosen = [f for f in files if str(f["id"]) == wanted]
        else:
            kind = (query.get("type") or [None])[0]
            fmt = (query.get("format") or [None])[0]
            chosen = [f for f in files if (kind is None or f.get("type") == kind)
                      and (fmt is None or (f.get("metadata") or {}).get("format") == fmt)]
            if kind is None and fmt is None:
                chosen = [f for f in files if f.get("primary")] or chosen
        if not chosen or chosen[0]["id"] not in fake._files:
            self._send(404, {"error": "File not found"})
            return
        file_id = chosen[0]["id"]
        stored = fake._files[file_id]
        sig = fake._sign(file_id)
        location = (f"{fake.storage_url}/model/{file_id}/{quote(stored.name, safe='')}?X-Amz-Expires=86400"
                    f"{url_disposition(stored.disposition_name, stored.url_form)}&X-Amz-Signature={sig}")
        self._send(307, b"", {"Location": location, "Cache-Control": "no-store, max-age=0"})

    # ----------------------------------------------------------------- preview images

    def _image(self, segs: list[str]) -> None:
        """/<key>/<uuid>/<params>/<id>.jpeg; `params` (original=true, width=450, ...) does not change the bytes."""
        fake = self.fake
        fake._count("image")
        if self._rule("image", None):
            return
        with fake._lock:
            image = fake._images.get(segs[1]) if len(segs) == 4 else None
            snapshot = None if image is None else StoredImage(**vars(image))
        if snapshot is None:
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
        elif snapshot.fault == "huge":
            self._huge(snapshot.huge_bytes)
        elif snapshot.fault == "bomb":
            self._send(200, bomb_png(), content_type="image/png")
        elif snapshot.fault == "invalid":
            self._send(200, INVALID_IMAGE, content_type="image/jpeg")
        elif snapshot.fault == "truncated":
            self._send(200, snapshot.data[: len(snapshot.data) // 2], content_type=snapshot.content_type)
        else:
            self._send(200, snapshot.data, {"Cache-Control": "public, max-age=31536000, immutable"},
                       content_type=snapshot.content_type)

    def _huge(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for block in huge_jpeg_blocks(size):
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: what a bound does
            self.close_connection = True
