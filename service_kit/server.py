"""The grpc.aio server every service runs: reflection, health, interceptors, shutdown.

Each service's composition root builds a `GrpcServer` from its servicers
(`ServiceBinding`s) and either runs it until SIGTERM/SIGINT
(`run_until_signal`, for `python -m <service>`) or starts it on port 0 in a
test.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service_kit.client import CHANNEL_OPTIONS
from service_kit.interceptors import ServiceInterceptor
from service_kit.logs import get_logger

log = get_logger("service_kit.server")

ShutdownHook = Callable[[], Awaitable[None]]


MIN_PING_INTERVAL_MS = 10_000


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full name and how to add its servicer."""

    full_name: str
    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]

    @classmethod
    def of(cls, descriptor_service: Any, servicer: Any, add_to_server: Callable[[Any, grpc.aio.Server], None]) -> ServiceBinding:
        return cls(descriptor_service.full_name, servicer, add_to_server)


@dataclass
class GrpcServer:
    """A started-on-demand grpc.aio server with reflection and health."""

    name: str
    listen: str
    bindings: Sequence[ServiceBinding]
    error_domain: str
    grace_seconds: float = 5.0
    on_shutdown: list[ShutdownHook] = field(default_factory=list)
    port: int = 0
    _server: grpc.aio.Server | None = None
    _health: health.aio.HealthServicer | None = None
    _stopped: asyncio.Event | None = None

    @property
    def address(self) -> str:
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> int:
        """Bind, start, mark SERVING; returns the bound port (useful with port 0)."""
        server = grpc.aio.server(
            interceptors=[ServiceInterceptor(self.error_domain)],
            options=[
                *CHANNEL_OPTIONS,
                # Accept the clients' keepalive pings (every 30 s, CHANNEL_OPTIONS) on streams that are idle
                # for minutes (a queued Generate, a download waiting out a Retry-After): by default a
                # server allows one per 5 minutes and ends the connection with "too many pings".
                ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
                ("grpc.so_reuseport", 0),
            ],
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for binding in self.bindings:
            binding.add_to_server(binding.servicer, server)
        reflection.enable_server_reflection(
            [b.full_name for b in self.bindings] + [health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        self.port = server.add_insecure_port(self.listen)
        if self.port == 0:
            raise OSError(f"{self.name}: cannot listen on {self.listen}")
        await server.start()
        for name in ["", *(b.full_name for b in self.bindings)]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server, self._health, self._stopped = server, health_servicer, asyncio.Event()
        log.info("server.started", server=self.name, address=self.address)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, drain in-flight calls for `grace` seconds, run shutdown hooks."""
        if self._server is None or self._stopped is None or self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.grace_seconds if grace is None else grace
        log.info("server.stopping", server=self.name, grace_seconds=grace)
        assert self._health is not None
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("server.shutdown_hook_failed", server=self.name)
        log.info("server.stopped", server=self.name)

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()


async def run_until_signal(server: GrpcServer) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    await server.start()
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    print(f"{server.name} listening on {server.address}", flush=True)
    try:
        await stop_requested.wait()
    finally:
        await server.stop()


def serve(make_server: Callable[[], Awaitable[GrpcServer]]) -> None:
    """`python -m <service>`: build the server inside a fresh event loop, run it until a signal."""

    async def main() -> None:
        await run_until_signal(await make_server())

    asyncio.run(main())
