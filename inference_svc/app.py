"""Composition root: settings -> device, loader, cache, LoRA manager, queue, registry client -> server."""

from __future__ import annotations

from inference_svc.checkpoint_cache import CheckpointCache
from inference_svc.checkpoint_loader import CheckpointLoader
from inference_svc.config import InferenceSettings
from inference_svc.device import default_budgets, resolve_device
from inference_svc.engine import InferenceEngine
from inference_svc.errors import DOMAIN
from inference_svc.job_queue import JobQueue
from inference_svc.lora_manager import LoraManager
from inference_svc.model_hashes import FileHashes
from inference_svc.outputs import OutputStore
from inference_svc.registry_client import RegistryClient
from inference_svc.servicer import InferenceServicer
from inference_svc.upscaler import ControlNetTile
from modelmanager.v1 import inference_pb2, inference_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, get_logger
from service_kit.server import ShutdownHook

log = get_logger("inference_svc")


def quiet_libraries() -> None:
    """Silence what the libraries print that is noise here.

    transformers reports every LoRA-wrapped layer as "MISSING" when PEFT injects
    adapters; diffusers warns about float32 casts of modules that have none. The
    cases that matter (a LoRA that matches nothing, a file that does not load)
    are errors the service raises itself.
    """
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # PEFT's notes on adding a second adapter, or deleting the active one, are how adapters work here.
    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
    warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def create_engine(settings: InferenceSettings) -> tuple[InferenceEngine, ShutdownHook]:
    """The engine and what closes it: one per process (`create_server`) or per fleet worker
    (inference_svc.fleet.deployment). Nothing is loaded until a request needs it."""
    quiet_libraries()
    device = resolve_device(settings.device)
    device_budget, park_budget = default_budgets(device, settings.device_cache_bytes, settings.cpu_park_bytes)
    loader = CheckpointLoader(device, sdxl_config_dir=settings.sdxl_config_dir, config_cache_dir=settings.config_cache_dir)
    cache = CheckpointCache(loader, device, device_budget=device_budget, park_budget=park_budget)
    registry = RegistryClient(
        settings.registry, default_checkpoint_path=settings.default_checkpoint_path,
        model_roots=(settings.user_models_dir, settings.models_dir), timeout_s=settings.registry_timeout_s,
    )
    queue = JobQueue(settings.max_queue)
    hashes = FileHashes()
    engine = InferenceEngine(
        device=device,
        cache=cache,
        loras=LoraManager(settings.max_adapters),
        registry=registry,
        queue=queue,
        controlnet=ControlNetTile(settings.controlnet_tile_dir, device),
        outputs=OutputStore(settings.outputs_path),
        hashes=hashes,
    )

    async def shutdown() -> None:
        await queue.close()
        await registry.close()
        hashes.close()
        cache.clear()

    log.info(
        "inference.configured",
        device=str(device.device),
        dtype=device.dtype_name,
        attention=device.attention,
        device_budget_bytes=device_budget,
        park_budget_bytes=park_budget,
        outputs_dir=str(settings.outputs_path),
    )
    return engine, shutdown


async def create_server(settings: InferenceSettings) -> GrpcServer:
    """The inference server, not started. Nothing is loaded until a request needs it."""
    engine, shutdown = create_engine(settings)
    server = GrpcServer(
        name="inference",
        listen=settings.listen,
        bindings=[
            ServiceBinding.of(
                inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
                InferenceServicer(engine),
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
            )
        ],
        error_domain=DOMAIN,
    )
    server.on_shutdown.append(shutdown)
    return server
