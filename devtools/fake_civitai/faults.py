"""Fault injection: answers a test asks for (fail, 429, 503, early access, cut or stalled transfers, bad images).

All switches are thread-safe; `times` counts requests, then the behaviour ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from devtools.fake_civitai.images import IMAGE_FAULTS, StoredImage

# The routes fail()/rate_limit()/unavailable() and calls() know.
ROUTES = ("model", "version", "by-hash", "by-hash-bulk", "search", "models-ids", "download", "storage", "image")
NAME_FORMS = (None, "utf8", "rfc5987", "rfc5987-only", "rfc5987-once")


@dataclass
class Rule:
    route: str
    status: int
    times: int
    body: Any
    headers: dict[str, str]
    key: int | None


class Faults:
    """The behaviour switches of FakeCivitai (which supplies the catalog: _models, _files, _images)."""

    _lock: threading.RLock
    _models: dict[int, dict[str, Any]]
    _files: dict[int, Any]
    _images: dict[str, StoredImage]

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._rules: list[Rule] = []
        self._drops: dict[int, list[int]] = {}  # file id -> [after_bytes, times]
        self._stalls: dict[int, list[int]] = {}  # file id -> [after_bytes, times]
        self._early: dict[int, str] = {}
        self._forbidden: set[int] = set()

    def require_token(self, token: str | None) -> None:
        self.token = token

    def fail(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        key: int | None = None,
    ) -> None:
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r} (one of {', '.join(ROUTES)})")
        with self._lock:
            self._rules.append(Rule(route, status, times, body, dict(headers or {}), key))

    def clear_failures(self) -> None:
        """Forget every pending fail()/rate_limit()/unavailable() rule, connection drop and stall."""
        with self._lock:
            self._rules.clear()
            self._drops.clear()
            self._stalls.clear()

    def rate_limit(self, route: str, *, times: int = 1, retry_after: str | None = "1", key: int | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail(route, 429, times=times, key=key, headers=headers,
                  body={"error": "We've noticed an unusual amount of downloading from your account. "
                                 "Contact support@civitai.com or come back later."})

    def unavailable(self, route: str, *, times: int = 1, retry_after: str | None = None, key: int | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail(route, 503, times=times, key=key, headers=headers,
                  body={"error": "Model search is temporarily overloaded — please retry."})

    def early_access(self, version_id: int, deadline: str = "2030-01-01T00:00:00.000Z") -> None:
        with self._lock:
            self._early[version_id] = deadline
            for model in self._models.values():
                for v in model.get("modelVersions") or []:
                    if v["id"] == version_id:
                        v["earlyAccessDeadline"] = deadline
                        v["availability"] = "EarlyAccess"

    def forbid(self, version_id: int) -> None:
        with self._lock:
            self._forbidden.add(version_id)

    def archive(self, model_id: int) -> None:
        with self._lock:
            model = self._models[model_id]
            model["mode"] = "Archived"
            for v in model.get("modelVersions") or []:
                v.pop("files", None)
                v.pop("downloadUrl", None)

    def drop_connection(self, file_id: int, after_bytes: int, *, times: int = 1) -> None:
        with self._lock:
            self._drops[file_id] = [after_bytes, times]

    def stall(self, file_id: int, after_bytes: int, *, times: int = 1) -> None:
        """Send `after_bytes` of the body, then hold the connection silent until the client hangs up."""
        with self._lock:
            self._stalls[file_id] = [after_bytes, times]

    def corrupt(self, file_id: int, on: bool = True) -> None:
        with self._lock:
            self._files[file_id].corrupt = on

    def throttle(self, file_id: int, bytes_per_second: float) -> None:
        """Send this file at most this fast (0: full speed again), e.g. to cancel mid-download."""
        with self._lock:
            self._files[file_id].rate = bytes_per_second

    def name_forms(self, file_id: int, *, url: str | None = "utf8", header: str | None = "rfc5987",
                   name: str | None = None) -> None:
        """How the file's name is written in the signed URL and the storage's header (see the README)."""
        for form in (url, header):
            if form not in NAME_FORMS:
                raise ValueError(f"unknown name form {form!r}")
        if header == "rfc5987-once":
            raise ValueError("rfc5987-once is a form of the URL only")
        with self._lock:
            stored = self._files[file_id]
            stored.url_form, stored.header_form, stored.served_name = url, header, name

    def serve_html(self, file_id: int, content_type: str | None = "text/html; charset=utf-8") -> None:
        with self._lock:
            self._files[file_id].html = content_type

    def bad_image(self, url: str, kind: str | None = "huge", *, size_bytes: int = 64 << 20) -> None:
        """Serve the preview at `url` broken: "huge" (`size_bytes` starting like a JPEG), "bomb" (a small PNG
        claiming 40000x40000 px), "invalid" (HTML under image/jpeg), "truncated" (half the JPEG); None: heal."""
        if kind is not None and kind not in IMAGE_FAULTS:
            raise ValueError(f"unknown image fault {kind!r} (one of {', '.join(IMAGE_FAULTS)})")
        segs = [s for s in url.split("/") if s]
        with self._lock:
            image = self._images.get(segs[-3]) if len(segs) >= 3 else None
            if image is None:
                raise KeyError(f"no preview at {url}")
            image.fault, image.huge_bytes = kind, size_bytes

    def _take_rule(self, route: str, key: int | None) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.route == route and rule.times > 0 and (rule.key is None or rule.key == key):
                    rule.times -= 1
                    return rule
            return None
