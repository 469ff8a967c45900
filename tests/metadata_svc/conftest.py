"""Registry test fixtures: a real server on 127.0.0.1 port 0 over temp volumes, and its stub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from metadata_svc.app import create_server
from metadata_svc.config import RegistrySettings
from modelmanager.v1 import registry_pb2_grpc
from service_kit import GrpcServer, insecure_channel


@dataclass
class Running:
    server: GrpcServer
    stub: registry_pb2_grpc.ModelRegistryServiceStub
    user_models: Path
    models: Path

    @property
    def loras(self) -> Path:
        return self.user_models / "loras"

    @property
    def checkpoints(self) -> Path:
        return self.user_models / "checkpoints"

    @property
    def index(self) -> Path:
        return self.user_models / ".metadata.json"


StartRegistry = Callable[..., Awaitable[Running]]


@pytest_asyncio.fixture
async def start_registry(volumes: tuple[Path, Path]) -> AsyncIterator[StartRegistry]:
    """start_registry(**settings) -> Running; every server and channel is closed at the end."""
    user_models, models = volumes
    started: list[tuple[GrpcServer, object]] = []

    async def start(**overrides) -> Running:
        settings = RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)
        for key, value in overrides.items():
            setattr(settings, key, value)
        server = await create_server(settings)
        await server.start()
        channel = insecure_channel(server.address)
        started.append((server, channel))
        return Running(server, registry_pb2_grpc.ModelRegistryServiceStub(channel), user_models, models)

    yield start
    for server, channel in reversed(started):
        await channel.close()  # type: ignore[attr-defined]
        await server.stop(0)


@pytest_asyncio.fixture
async def reg(start_registry: StartRegistry) -> Running:
    """A registry over empty volumes."""
    return await start_registry()
