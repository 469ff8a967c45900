"""Ray and Ray Serve for the fleet: join (or start) a cluster, deploy the workers, hand back their handle."""

from __future__ import annotations

import logging
from typing import Any, cast

import ray
from ray import serve
from ray.serve.deployment import Deployment
from ray.serve.handle import DeploymentHandle

from inference_svc.fleet.config import FleetSettings
from inference_svc.fleet.deployment import InferenceWorker
from service_kit import get_logger

log = get_logger("inference_svc.fleet.cluster")

DEPLOYMENT = "InferenceWorker"


def deployment_options(settings: FleetSettings) -> dict[str, Any]:
    """Ray Serve's options for the workers: resources, replicas or autoscaling, how many requests each holds."""
    options: dict[str, Any] = {
        "name": DEPLOYMENT,
        "ray_actor_options": {"num_cpus": settings.worker_cpus, "num_gpus": settings.worker_gpus},
        # A worker runs one job at a time and queues the rest itself (positions); Ray keeps what is beyond
        # this in its routers, where it can still go to another worker.
        "max_ongoing_requests": min(settings.worker_max_ongoing, settings.max_queue + 1),
        # A dead worker is noticed by its actor dying at once; a hung one by its health check.
        "health_check_period_s": 5.0,
        "health_check_timeout_s": 60.0,
        "graceful_shutdown_timeout_s": 10.0,
    }
    if settings.max_workers > settings.workers:
        options["autoscaling_config"] = {
            "min_replicas": settings.workers,
            "max_replicas": settings.max_workers,
            # One running job per GPU and about one waiting: more means another worker would start sooner.
            "target_ongoing_requests": 2,
            "upscale_delay_s": 10.0,
            "downscale_delay_s": 300.0,
        }
    else:
        options["num_replicas"] = settings.workers
    return options


def connect(settings: FleetSettings) -> None:
    """Join settings.ray_address, or start a cluster on 127.0.0.1 with a CPU slot per worker."""
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, logging_level=logging.WARNING, log_to_driver=True)
    else:
        cpus = max(1, int(settings.worker_cpus * max(settings.workers, settings.max_workers) + 0.999))
        ray.init(num_cpus=cpus, num_gpus=None, include_dashboard=False, logging_level=logging.WARNING,
                 _node_ip_address="127.0.0.1")
    # The front is our gRPC server: no Serve HTTP or gRPC proxies.
    serve.start(proxy_location="Disabled")


def deploy(settings: FleetSettings) -> DeploymentHandle[Any]:
    """Deploy (or update) the workers and return their handle; returns once they are running."""
    connect(settings)
    # Ray annotates serve.deployment as the decorator factory only; given a class it returns the Deployment.
    worker = cast(Deployment, serve.deployment(InferenceWorker))
    app = worker.options(**deployment_options(settings)).bind(
        settings.worker_settings(), settings.checkpoints_per_worker, settings.model_files())
    handle: DeploymentHandle[Any] = serve.run(app, name=settings.app_name, route_prefix=None, blocking=False)
    log.info("fleet.deployed", app=settings.app_name, workers=settings.workers, max_workers=settings.max_workers,
             address=settings.ray_address or "local")
    return handle


def shutdown(*, stop_ray: bool) -> None:
    """Stop Serve's applications; stop Ray too when this process started it."""
    if ray.is_initialized():
        serve.shutdown()
        if stop_ray:
            ray.shutdown()
