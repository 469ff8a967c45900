"""gRPC status → HTTP, in one place: Google's table (google/rpc/code.proto) and the AIP-193 body.

Every error the API returns has the shape
`{"error": {"code": <http>, "status": "<GRPC_CODE>", "message": ..., "details": [...]}}`;
`details` keeps the services' `google.rpc.ErrorInfo` (reason, domain, metadata) as JSON.
A service that cannot be reached gives 503 with reason SERVICE_UNAVAILABLE naming it.
"""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.rpc import error_details_pb2  # noqa: F401  (puts ErrorInfo & co. in the descriptor pool)
from grpc_status import rpc_status
from starlette.exceptions import HTTPException as StarletteHTTPException

from service_kit.logs import get_logger

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


def from_rpc_error(exc: grpc.aio.AioRpcError, service: str, address: str) -> ApiError:
    """Map a failed call to `service` (e.g. "registry") at `address`."""
    code = exc.code()
    details: list[dict[str, Any]] = []
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is not None:
        for detail in status.details:
            try:
                details.append(json_format.MessageToDict(detail, preserving_proto_field_name=True))
            except (json_format.Error, TypeError):  # a detail type we cannot decode
                details.append({"@type": detail.type_url})
    message = exc.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE and status is None:
        # No rich status: the channel itself failed (service down, refused, unreachable).
        message = f"the {service} service at {address} is unavailable ({message})"
        details = [error_info("SERVICE_UNAVAILABLE", {"service": service, "address": address})]
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and status is None:
        message = f"the {service} service at {address} did not answer in time"
        details = [error_info("SERVICE_TIMEOUT", {"service": service, "address": address})]
    return ApiError(HTTP_STATUS.get(code, 500), code, message, details)


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.http_status, headers=headers)


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
