"""API key check, body limits, failed-auth throttling and request ids.

`MODELMGR_API_KEY`, when set, is required by every /api call but the liveness
probe: header `x-api-key: KEY` or `Authorization: Bearer KEY` (constant-time
comparison). `AuthGuard` checks it from the headers alone, before anything of
the body is read, and bounds each /api body (by Content-Length up front and by
the bytes actually received). Failed keys and failed UI logins are counted per
client IP in a sliding window; over the limit that IP gets 429 until the window
frees up. The request id comes from the `x-request-id` header (when it is a sane token)
or is made here; it is bound to the context so the service channels pass it on
as gRPC metadata, and it is returned as the `x-request-id` response header.
"""

from __future__ import annotations

import hmac
import itertools
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import GatewaySettings
from gateway.errors import ApiError, BodyTooLarge, body_too_large, send_error
from service_kit.logs import REQUEST_ID_HEADER, get_logger, new_request_id, request_id_var

log = get_logger("gateway.http")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="the gateway's MODELMGR_API_KEY")
bearer = HTTPBearer(auto_error=False, description="the gateway's MODELMGR_API_KEY as a bearer token")


# Liveness probes carry no key (and say nothing but "ok").
PUBLIC_PATHS = frozenset({"/api/v1/livez"})
UPLOAD_PATH = "/api/v1/models/upload"
UPSCALE_PATH = "/api/v1/upscale"
# Multipart framing and the fields around the file (upload.py checks the file's own bytes exactly).
MULTIPART_SLACK_BYTES = 1024 * 1024
# An upscale carries its image base64 in JSON: 4/3 of gRPC's 64 MiB message limit (service_kit.client).
MAX_UPSCALE_BODY_BYTES = 90 * 1024 * 1024
MAX_TRACKED_CLIENTS = 10_000
UNAUTHORIZED = "an API key is required: send x-api-key or Authorization: Bearer"


def key_matches(expected: str | None, given: str | None) -> bool:
    if not expected:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(
    request: Request,
    key: Annotated[str | None, Depends(api_key_header)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    expected = request.app.state.settings.api_key
    if not expected:
        return
    given = key or (creds.credentials if creds else None)
    if not key_matches(expected, given):  # AuthGuard answers first; this keeps the route safe without it
        raise ApiError.local(401, UNAUTHORIZED, "API_KEY_INVALID" if given else "API_KEY_MISSING")


def key_from_headers(scope: Scope) -> str | None:
    """The key as require_api_key reads it: x-api-key, else an `Authorization: Bearer` token."""
    key = bearer_token = None
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key" and key is None:
            key = value.decode("latin-1")
        elif name == b"authorization" and bearer_token is None:
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer_token = token.strip()
    return key or bearer_token


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class FailedAuthLimiter:
    """Failed logins per client IP in a sliding window; bounded to `max_clients` IPs (oldest dropped)."""

    def __init__(self, limit: int, window: float, max_clients: int = MAX_TRACKED_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._failures: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._failures)

    def failed(self, ip: str) -> tuple[float, int]:
        """Count a failure; returns its token (for forgive)."""
        token = (self.clock(), next(self._ids))
        if self.limit <= 0:
            return token
        times = self._failures.pop(ip, None)
        if times is None:
            times = deque(maxlen=self.limit)  # only the newest `limit` failures decide
            while len(self._failures) >= self.max_clients:
                self._failures.popitem(last=False)
        times.append(token)
        self._failures[ip] = times  # most recently failed last
        return token

    def forgive(self, ip: str, token: tuple[float, int]) -> None:
        """Take back a failure counted ahead (a login that then succeeded)."""
        times = self._failures.get(ip)
        if times is not None and token in times:
            times.remove(token)

    def retry_after(self, ip: str) -> int:
        """Seconds until `ip` may try again; 0 when it may now."""
        times = self._failures.get(ip)
        if self.limit <= 0 or times is None or len(times) < self.limit:
            return 0
        wait = times[0][0] + self.window - self.clock()
        if wait <= 0:
            del self._failures[ip]  # all its failures are older than the window
            return 0
        return max(1, math.ceil(wait))


def _is_login(scope: Scope) -> bool:
    return scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/login"


def content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class AuthGuard:
    """Pure ASGI, in front of the API and the UI's login: throttle, key check, body limit, in that order.

    Nothing here calls `receive` before the key is known good, so an unauthenticated client cannot make
    the gateway read or parse a byte of its body."""

    def __init__(self, app: ASGIApp, settings: GatewaySettings, limiter: FailedAuthLimiter) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter

    def body_limit(self, scope: Scope) -> int:
        path, method = scope.get("path", ""), scope.get("method")
        if method == "POST" and path == UPLOAD_PATH:
            # A backstop only: upload.py checks the file's bytes against max_upload_bytes exactly.
            return self.settings.max_upload_bytes + 2 * MULTIPART_SLACK_BYTES
        if method == "POST" and path == UPSCALE_PATH:
            return max(MAX_UPSCALE_BODY_BYTES, self.settings.max_body_bytes)
        return self.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        keyed = bool(self.settings.api_key)
        if keyed and _is_login(scope):
            await self._login(scope, receive, send)
        elif path.startswith("/api/"):
            if keyed and not await self._authorized(scope, send):
                return
            await self._limited(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _refuse_throttled(self, scope: Scope, send: Send) -> bool:
        ip = client_ip(scope)
        wait = self.limiter.retry_after(ip)
        if not wait:
            return False
        log.warning("auth.throttled", client=ip, path=scope.get("path"), retry_after_s=wait)
        err = ApiError.local(429, f"too many failed logins from this address; retry in {wait} s",
                             "TOO_MANY_FAILED_LOGINS", {"retry_after_seconds": str(wait)})
        await send_error(send, err, {"Retry-After": str(wait)})
        return True

    async def _authorized(self, scope: Scope, send: Send) -> bool:
        if await self._refuse_throttled(scope, send):
            return False
        given = key_from_headers(scope)
        if key_matches(self.settings.api_key, given):
            return True
        ip = client_ip(scope)
        self.limiter.failed(ip)
        log.info("auth.api_key_refused", client=ip, path=scope.get("path"), key_given=given is not None)
        err = ApiError.local(401, UNAUTHORIZED, "API_KEY_INVALID" if given else "API_KEY_MISSING")
        await send_error(send, err, {"WWW-Authenticate": "Bearer"})
        return False

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Gradio checks the password; a login counts as failed until it answers 2xx, so concurrent
        guesses cannot slip past the limit while they are in flight."""
        if await self._refuse_throttled(scope, send):
            return
        ip = client_ip(scope)
        token = self.limiter.failed(ip)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                if 200 <= message["status"] < 300:
                    self.limiter.forgive(ip, token)
                else:
                    log.info("auth.login_refused", client=ip, status=message["status"])
            await send(message)

        await self.app(scope, receive, watch)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.body_limit(scope)
        length = content_length(scope)
        if length is not None and length > limit:
            if scope.get("path") == UPLOAD_PATH:  # the same answer as upload.py's own check
                err = ApiError.local(413, f"upload larger than the limit of {self.settings.max_upload_bytes} bytes",
                                     "UPLOAD_TOO_LARGE", {"limit_bytes": str(self.settings.max_upload_bytes)})
            else:
                err = body_too_large(limit)
            await send_error(send, err)
            return
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body, or one longer than it said
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, bounded_receive, send)


class RequestIdMiddleware:
    """Pure ASGI (so the context variable reaches the endpoint and its streaming body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER.encode():
                given = value.decode("latin-1")
                break
        request_id = given if given and _SANE_ID.match(given) else new_request_id()
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            path = scope.get("path", "")
            if path.startswith("/api/"):  # the UI's own asset and queue traffic would drown the log
                log.info("http", method=scope.get("method"), path=path, status=status,
                         duration_ms=round((time.perf_counter() - started) * 1000, 2))
            request_id_var.reset(token)
