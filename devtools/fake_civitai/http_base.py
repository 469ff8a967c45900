"""What both servers share: the threaded HTTP server, request recording, JSON/text replies, fault rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devtools.fake_civitai.server import FakeCivitai

_BROWSER = re.compile(r"mozilla|chrome|safari|firefox|opera|edge", re.IGNORECASE)


@dataclass
class Recorded:
    server: str  # "api" or "storage"
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""  # what a POST sent


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type, fake: FakeCivitai):
        self.fake = fake
        super().__init__(address, handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real servers
    server: Server
    server_name = "api"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeCivitai:
        return self.server.fake

    def _record(self, body: bytes = b"") -> None:
        self.fake.requests.append(
            Recorded(self.server_name, self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None,
              content_type: str | None = None) -> None:
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            content_type = content_type or "application/json; charset=utf-8"
        elif isinstance(body, str):
            payload = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            payload = body or b""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _rule(self, route: str, key: int | None) -> bool:
        """Answer with a pending fail()/rate_limit()/unavailable() rule for this route, if one is left."""
        rule = self.fake._take_rule(route, key)
        if rule is None:
            return False
        body = rule.body if rule.body is not None else {"error": HTTPStatus(rule.status).phrase}
        self._send(rule.status, body, rule.headers)
        return True

    @property
    def browser(self) -> bool:
        return bool(_BROWSER.search(self.headers.get("User-Agent", "")))
