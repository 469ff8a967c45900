"""gRPC status → HTTP, in one place: Google's table (google/rpc/code.proto) and the AIP-193 body.

Every error the API returns has the shape
`{"error": {"code": <http>, "status": "<GRPC_CODE>", "message": ..., "details": [...]}}`;
`details` keeps the services' `google.rpc.ErrorInfo` (reason, domain, metadata) as JSON.
A service that cannot be reached gives 503 with reason SERVICE_UNAVAILABLE naming it (never its
address or gRPC's debug text: service_kit.peer logs those).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.rpc import error_details_pb2  # noqa: F401  (puts ErrorInfo & co. in the descriptor pool)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from service_kit.errors import ServiceError
from service_kit.logs import get_logger
from service_kit.peer import PeerUnavailable

log = get_logger("gateway.errors")

DOMAIN = "gateway.modelmanager"

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Where a reason says more than its code: a size limit is 413, not RESOURCE_EXHAUSTED's 429 (retrying
# the same bytes later does not help).
HTTP_STATUS_BY_REASON: dict[str, int] = {"UPLOAD_TOO_LARGE": 413, "BODY_TOO_LARGE": 413, "IMAGE_TOO_LARGE": 413}

_CODE_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    # An upstream (the image proxy's CivitAI CDN) answered badly: gRPC's HTTP mapping reads 502 as UNAVAILABLE.
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class ApiError(Exception):
    """An error the gateway answers with; carries everything of the AIP-193 body."""

    def __init__(
        self,
        http_status: int,
        grpc_code: grpc.StatusCode,
        message: str,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.message = message
        self.details = details or []

    @property
    def reason(self) -> str | None:
        for d in self.details:
            if d.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return d.get("reason")
        return None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.http_status,
                "status": self.grpc_code.name,
                "message": self.message,
                "details": self.details,
            }
        }

    @classmethod
    def local(
        cls, http_status: int, message: str, reason: str, metadata: dict[str, str] | None = None
    ) -> ApiError:
        """An error made by the gateway itself (auth, size limit, bad body)."""
        code = _CODE_BY_HTTP.get(http_status, grpc.StatusCode.UNKNOWN)
        return cls(http_status, code, message, [error_info(reason, metadata)])


def error_info(reason: str, metadata: dict[str, str] | None = None, domain: str = DOMAIN) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": dict(metadata or {}),
    }


def from_peer_error(err: ServiceError) -> ApiError:
    """A failed call to a service, as service_kit.peer gave it (`Peer.error`), in the API's envelope.

    A service that did not answer (PeerUnavailable) is 503 SERVICE_UNAVAILABLE, or 504 SERVICE_TIMEOUT when
    it was too slow, naming the service (the peer logged its address and gRPC's text). Any other error
    keeps its code, message and every detail of its status (ErrorInfo, BadRequest...) as JSON."""
    if isinstance(err, PeerUnavailable):
        if err.timed_out:
            return ApiError(504, grpc.StatusCode.DEADLINE_EXCEEDED, f"the {err.service} service did not answer in time",
                            [error_info("SERVICE_TIMEOUT", {"service": err.service})])
        return ApiError(503, grpc.StatusCode.UNAVAILABLE, f"the {err.service} service is unavailable",
                        [error_info("SERVICE_UNAVAILABLE", {"service": err.service})])
    details: list[dict[str, Any]] = []
    for detail in err.status_details:
        try:
            details.append(json_format.MessageToDict(detail, preserving_proto_field_name=True))
        except (json_format.Error, TypeError):  # a detail type we cannot decode
            details.append({"@type": detail.type_url})
    api = ApiError(HTTP_STATUS.get(err.code, 500), err.code, err.message, details)
    api.http_status = HTTP_STATUS_BY_REASON.get(api.reason or "", api.http_status)
    return api


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.http_status, headers=headers)


async def send_error(send: Send, err: ApiError, headers: dict[str, str] | None = None) -> None:
    """Answer with `err` from a pure-ASGI middleware (before the app, so before any body is read)."""
    body = json.dumps(err.body()).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": err.http_status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(StarletteHTTPException):
    """Raised from a request's receive() when the bytes actually received pass the route's limit.

    A Starlette HTTPException so that FastAPI's body reading lets it through (it turns any other
    exception there into a generic 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than the limit of {limit} bytes for this route")
        self.limit = limit


def body_too_large(limit: int) -> ApiError:
    return ApiError.local(413, f"request body larger than the limit of {limit} bytes for this route",
                          "BODY_TOO_LARGE", {"limit_bytes": str(limit)})


async def _api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return error_response(exc, headers)


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    violations = [
        {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "description": e.get("msg", "")}
        for e in exc.errors()
    ]
    err = ApiError(
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid request: " + "; ".join(f"{v['field']}: {v['description']}" for v in violations),
        [
            error_info("INVALID_REQUEST"),
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "field_violations": violations},
        ],
    )
    return error_response(err)


async def _http_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, BodyTooLarge):
        return error_response(body_too_large(exc.limit))
    reason = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    err = ApiError.local(exc.status_code, str(exc.detail), reason)
    return error_response(err, dict(exc.headers or {}))


async def _unhandled_handler(_: Request, exc: Exception) -> JSONResponse:
    log.exception("gateway.unhandled_exception", error_type=type(exc).__name__)
    err = ApiError.local(500, "internal error in the gateway; see its log", "INTERNAL")
    err.grpc_code = grpc.StatusCode.INTERNAL
    return error_response(err)


def install(app: Any) -> None:
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
