"""The server interceptor every service installs: request ids, access logs, error mapping.

A handler raises `ServiceError` subclasses; this is the one place that turns
them into a gRPC status with a `google.rpc.Status`/`ErrorInfo` payload. Any
other exception is logged with its traceback and becomes INTERNAL, without
leaking its text to the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service_kit.errors import Internal, ServiceError, Unimplemented
from service_kit.logs import REQUEST_ID_HEADER, get_logger, new_request_id, request_id_var

log = get_logger("service_kit.rpc")


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler of a server; `domain` fills ErrorInfo.domain."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        # Health and reflection are grpc's own (and use context.write); leave them as they are.
        if handler is None or handler_call_details.method.startswith("/grpc."):
            return handler
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        request_id = str(metadata.get(REQUEST_ID_HEADER) or new_request_id())

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, request_id),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, request_id),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, request_id),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method, request_id),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap_unary(self, behavior: Callable[..., Any], method: str, request_id: str) -> Callable[..., Any]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            request_id_var.set(request_id)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                status = self._status_for(exc, method)
                if status is None:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code = status.code
                await context.abort(status.code, status.details, status.trailing_metadata)
            finally:
                _access_log(method, code, started)

        return wrapper

    def _wrap_stream(self, behavior: Callable[..., Any], method: str, request_id: str) -> Callable[..., Any]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            request_id_var.set(request_id)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                async for response in behavior(request, context):
                    yield response
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                status = self._status_for(exc, method)
                if status is None:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code = status.code
                await context.abort(status.code, status.details, status.trailing_metadata)
            finally:
                _access_log(method, code, started)

        return wrapper

    def _status_for(self, exc: Exception, method: str) -> grpc.Status | None:
        """The status to abort with, or None for an abort the handler already made."""
        if isinstance(exc, grpc.aio.AbortError):
            return None
        if isinstance(exc, ServiceError):
            error = exc
            if exc.code == grpc.StatusCode.INTERNAL:
                log.error("rpc.internal_error", method=method, reason=exc.reason, error=exc.message)
        elif isinstance(exc, NotImplementedError):
            # The generated servicer base raises it for an RPC this server does not implement (an older
            # build than the caller's protos): UNIMPLEMENTED, which callers can treat as "not here".
            error = Unimplemented(f"{method} is not implemented by this server", reason="UNIMPLEMENTED")
        else:
            log.exception("rpc.unhandled_exception", method=method)
            error = Internal("internal error; see the server log", reason="INTERNAL")
        return error.to_grpc_status(self._domain)


def _access_log(method: str, code: grpc.StatusCode, started: float) -> None:
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    level = "info" if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else "warning"
    getattr(log, level)("rpc", method=method, code=code.name, duration_ms=elapsed_ms)
