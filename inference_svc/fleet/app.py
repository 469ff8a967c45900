"""Composition root of the fleet: settings -> Ray cluster and workers -> the front's gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ray.serve.handle import DeploymentHandle

from inference_svc.fleet import cluster
from inference_svc.fleet.config import FleetSettings
from inference_svc.fleet.front import create_front
from service_kit import configure_logging, run_until_signal


def main(argv: Sequence[str] | None = None) -> None:
    settings = FleetSettings.from_args(argv)
    configure_logging("inference-fleet", level=settings.log_level, json=settings.log_format == "json")
    # Ray's start-up blocks (seconds): before the event loop serves anything.
    workers = cluster.deploy(settings)
    try:
        asyncio.run(_serve(settings, workers))
    finally:
        cluster.shutdown(stop_ray=not settings.ray_address)


async def _serve(settings: FleetSettings, workers: DeploymentHandle[Any]) -> None:
    server = await create_front(settings, workers)
    await run_until_signal(server)
