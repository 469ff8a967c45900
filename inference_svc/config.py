"""Settings of the inference service: flags whose defaults come from MODELMGR_* variables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service_kit.config import (
    DEFAULT_CHECKPOINT_FILE,
    DEFAULT_INFERENCE,
    DEFAULT_REGISTRY,
    add_common_settings,
    add_setting,
    add_volume_settings,
)

GIB = 1024**3


@dataclass
class InferenceSettings:
    listen: str = DEFAULT_INFERENCE
    registry: str = DEFAULT_REGISTRY
    models_dir: Path = Path("data/models")
    user_models_dir: Path = Path("data/user-models")
    # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1"...
    device: str = "auto"
    # Bytes of loaded pipelines kept on the device; 0 means automatic (see device.default_budgets).
    device_cache_bytes: int = 0
    # Bytes of evicted pipelines parked in host memory for a fast switch back; 0 means automatic,
    # negative disables parking.
    cpu_park_bytes: int = 0
    # Jobs allowed to wait behind the running one; more get RESOURCE_EXHAUSTED / QUEUE_FULL.
    max_queue: int = 16
    # LoRA adapters kept loaded per checkpoint (least recently used ones are unloaded).
    max_adapters: int = 16
    # Component configs and tokenizers for single-file checkpoints (default: the shipped SDXL ones).
    sdxl_config_dir: Path | None = None
    # Where configs embedded in a checkpoint's header are unpacked (default: a temp folder).
    config_cache_dir: Path | None = None
    registry_timeout_s: float = 10.0
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def default_checkpoint_path(self) -> Path:
        """Where the default base checkpoint lies on the models volume."""
        return self.models_dir / DEFAULT_CHECKPOINT_FILE

    @property
    def controlnet_tile_dir(self) -> Path:
        return self.models_dir / "controlnet-tile"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference_svc", description="SDXL inference service")
    add_common_settings(parser, listen_env="INFERENCE_LISTEN", default_listen=DEFAULT_INFERENCE)
    add_volume_settings(parser)
    add_setting(parser, "--registry", "REGISTRY_ADDR", DEFAULT_REGISTRY, "registry address, HOST:PORT")
    add_setting(parser, "--device", "INFERENCE_DEVICE", "auto", "torch device: auto, cpu, cuda, cuda:N")
    add_setting(parser, "--device-cache-bytes", "INFERENCE_DEVICE_CACHE_BYTES", 0,
                "bytes of pipelines kept on the device (0: device memory minus a working reserve)", type=int)
    add_setting(parser, "--cpu-park-bytes", "INFERENCE_CPU_PARK_BYTES", 0,
                "bytes of evicted pipelines parked in host memory (0: auto, <0: off)", type=int)
    add_setting(parser, "--max-queue", "INFERENCE_MAX_QUEUE", 16, "jobs that may wait behind the running one", type=int)
    add_setting(parser, "--max-adapters", "INFERENCE_MAX_ADAPTERS", 16, "LoRA adapters kept per checkpoint", type=int)
    add_setting(parser, "--sdxl-config-dir", "INFERENCE_SDXL_CONFIG_DIR", None,
                "component configs + tokenizers for single-file checkpoints (default: shipped)", type=Path)
    add_setting(parser, "--config-cache-dir", "INFERENCE_CONFIG_CACHE_DIR", None,
                "where configs embedded in checkpoints are unpacked", type=Path)
    return parser


def from_args(argv: Sequence[str] | None = None) -> InferenceSettings:
    args = _parser().parse_args(argv)
    return InferenceSettings(
        listen=args.listen,
        registry=args.registry,
        models_dir=args.models_dir,
        user_models_dir=args.user_models_dir,
        device=args.device,
        device_cache_bytes=args.device_cache_bytes,
        cpu_park_bytes=args.cpu_park_bytes,
        max_queue=args.max_queue,
        max_adapters=args.max_adapters,
        sdxl_config_dir=args.sdxl_config_dir,
        config_cache_dir=args.config_cache_dir,
        log_level=args.log_level,
        log_format=args.log_format,
    )
