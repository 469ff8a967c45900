"""API key check and request ids.

`MODELMGR_API_KEY`, when set, is required by every /api call: header
`x-api-key: KEY` or `Authorization: Bearer KEY` (constant-time comparison).
The request id comes from the `x-request-id` header (when it is a sane token)
or is made here; it is bound to the context so the service channels pass it on
as gRPC metadata, and it is returned as the `x-request-id` response header.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError
from service_kit.logs import REQUEST_ID_HEADER, get_logger, new_request_id, request_id_var

log = get_logger("gateway.http")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="the gateway's MODELMGR_API_KEY")
bearer = HTTPBearer(auto_error=False, description="the gateway's MODELMGR_API_KEY as a bearer token")


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
    if not key_matches(expected, given):
        raise ApiError.local(401, "an API key is required: send x-api-key or Authorization: Bearer",
                             "API_KEY_INVALID" if given else "API_KEY_MISSING")


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
