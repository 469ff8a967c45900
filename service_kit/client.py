"""Channels to other services: request-id propagation and shared options."""

from __future__ import annotations

from typing import Any

import grpc

from service_kit.logs import REQUEST_ID_HEADER, request_id_var

# Large enough for generated images and upload chunks, bounded so a bad peer
# cannot make us allocate without limit.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Long generate/download streams can sit idle between events.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A service that restarts is found again within seconds (gRPC's default backoff grows to 120 s).
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def _with_request_id(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    request_id = request_id_var.get()
    metadata = list(details.metadata or ())
    if request_id and not any(k == REQUEST_ID_HEADER for k, _ in metadata):
        metadata.append((REQUEST_ID_HEADER, request_id))
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=grpc.aio.Metadata(*metadata),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _RequestIdUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(_with_request_id(client_call_details), request)


class _RequestIdUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(_with_request_id(client_call_details), request)


class _RequestIdStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(_with_request_id(client_call_details), request_iterator)


def insecure_channel(target: str) -> grpc.aio.Channel:
    """A channel to a peer service that passes on the current request id."""
    return grpc.aio.insecure_channel(
        target,
        options=CHANNEL_OPTIONS,
        interceptors=[_RequestIdUnaryUnary(), _RequestIdUnaryStream(), _RequestIdStreamUnary()],
    )
