"""The real registry (metadata_svc) for the inference wire tests, on port 0."""

from __future__ import annotations

from pathlib import Path

from metadata_svc.app import create_server
from metadata_svc.config import RegistrySettings
from service_kit import GrpcServer


async def start_registry(user_models: Path, models: Path) -> GrpcServer:
    server = await create_server(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models))
    await server.start()
    return server
