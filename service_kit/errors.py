"""One exception hierarchy for every service; each leaf maps to one gRPC code.

    ServiceError                  (UNKNOWN)
    ├── InvalidArgument           INVALID_ARGUMENT
    ├── NotFound                  NOT_FOUND
    ├── AlreadyExists             ALREADY_EXISTS
    ├── FailedPrecondition        FAILED_PRECONDITION
    ├── PermissionDenied          PERMISSION_DENIED
    ├── Unauthenticated           UNAUTHENTICATED
    ├── ResourceExhausted         RESOURCE_EXHAUSTED
    ├── OutOfRange                OUT_OF_RANGE
    ├── Aborted                   ABORTED
    ├── Cancelled                 CANCELLED
    ├── DeadlineExceeded          DEADLINE_EXCEEDED
    ├── Unavailable               UNAVAILABLE
    ├── DataLoss                  DATA_LOSS
    ├── Unimplemented             UNIMPLEMENTED
    └── Internal                  INTERNAL

Domain code raises these (or subclasses of them) with a stable
UPPER_SNAKE_CASE `reason`; the server interceptor turns them into a
`google.rpc.Status` carrying an `ErrorInfo` (AIP-193). Services subclass
per concept when they need to catch one case (e.g. `class ModelNotFound(NotFound)`).
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_info_of",
    "from_rpc_error",
]


class ServiceError(Exception):
    """A failure that a client can act on; carries a code, a reason and metadata."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, object] | None = None,
        domain: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        # ErrorInfo metadata values are strings (AIP-193).
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}
        self.domain = domain
        # Set by from_rpc_error on an error received from a peer: its ErrorInfo (None when it sent none)
        # and every detail of its google.rpc.Status, in order (the gateway renders them all as JSON).
        self.error_info: error_details_pb2.ErrorInfo | None = None
        self.status_details: list[any_pb2.Any] = []

    def to_status_proto(self, default_domain: str) -> status_pb2.Status:
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(
                reason=self.reason, domain=self.domain or default_domain, metadata=self.metadata
            )
        )
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=[info])

    def to_grpc_status(self, default_domain: str) -> grpc.Status:
        return rpc_status.to_status(self.to_status_proto(default_domain))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(ServiceError):
    """The request is malformed; retrying it unchanged will fail again."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class NotFound(ServiceError):
    """The named thing does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(ServiceError):
    """Something with that name exists already; nothing was overwritten."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(ServiceError):
    """The system is not in a state where the request can run."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(ServiceError):
    """The caller is known but not allowed."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(ServiceError):
    """Credentials are missing or invalid."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class ResourceExhausted(ServiceError):
    """A quota, size limit, disk or memory ran out."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class OutOfRange(ServiceError):
    """A value is past the valid range."""

    code = grpc.StatusCode.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"


class Aborted(ServiceError):
    """A concurrency conflict; retry at a higher level."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class Cancelled(ServiceError):
    """The operation was cancelled, usually by the caller."""

    code = grpc.StatusCode.CANCELLED
    default_reason = "CANCELLED"


class DeadlineExceeded(ServiceError):
    """The operation did not finish in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Unavailable(ServiceError):
    """A dependency is down or overloaded; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DataLoss(ServiceError):
    """Data is corrupt or incomplete (e.g. a hash mismatch)."""

    code = grpc.StatusCode.DATA_LOSS
    default_reason = "DATA_LOSS"


class Unimplemented(ServiceError):
    """Not supported by this server."""

    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"


class Internal(ServiceError):
    """A bug or broken invariant on the server."""

    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"


_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        OutOfRange,
        Aborted,
        Cancelled,
        DeadlineExceeded,
        Unavailable,
        DataLoss,
        Unimplemented,
        Internal,
    )
}


def _status_details(exc: grpc.aio.AioRpcError | grpc.RpcError) -> list[any_pb2.Any]:
    """The details of a failed call's google.rpc.Status; none when it carried no (valid) rich status."""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # a status whose code or message disagrees with the call's
        return []
    return list(status.details) if status is not None else []


def _error_info(details: list[any_pb2.Any]) -> error_details_pb2.ErrorInfo | None:
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def error_info_of(exc: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call, or None when the server sent none."""
    return _error_info(_status_details(exc))


def from_rpc_error(exc: grpc.aio.AioRpcError) -> ServiceError:
    """Rebuild a ServiceError from a failed call to another service.

    Used when one service calls another and wants to pass the failure on with
    its code, reason and domain intact. The status is parsed once; its ErrorInfo and
    all its details stay on the error (`error_info`, `status_details`).
    """
    cls = _BY_CODE.get(exc.code(), ServiceError)
    details = _status_details(exc)
    info = _error_info(details)
    message = exc.details() or exc.code().name
    if info is None:
        err = cls(message)
    else:
        err = cls(message, reason=info.reason, metadata=dict(info.metadata), domain=info.domain)
    err.error_info = info
    err.status_details = details
    return err
