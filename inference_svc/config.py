"""Settings of the inference service, each declared once: default, flag, MODELMGR_* variable, help."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from service_kit.config import (
    DEFAULT_CHECKPOINT_FILE,
    DEFAULT_INFERENCE,
    CliSettings,
    listen_setting,
    log_format_setting,
    log_level_setting,
    models_dir_setting,
    registry_addr_setting,
    setting,
    user_models_dir_setting,
)

GIB = 1024**3


@dataclass
class InferenceSettings(CliSettings):
    CLI_PROG: ClassVar[str] = "python -m inference_svc"
    CLI_DESCRIPTION: ClassVar[str] = "SDXL inference service"

    listen: str = listen_setting("MODELMGR_INFERENCE_LISTEN", DEFAULT_INFERENCE)
    registry: str = registry_addr_setting()
    models_dir: Path = models_dir_setting()
    user_models_dir: Path = user_models_dir_setting()
    # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1"...
    device: str = setting("auto", help="torch device: auto, cpu, cuda, cuda:N", env="MODELMGR_INFERENCE_DEVICE")
    # Bytes of loaded pipelines kept on the device; 0 means automatic (see device.default_budgets).
    device_cache_bytes: int = setting(
        0, help="bytes of pipelines kept on the device (0: device memory minus a working reserve)",
        env="MODELMGR_INFERENCE_DEVICE_CACHE_BYTES")
    # Bytes of evicted pipelines parked in host memory for a fast switch back; 0 means automatic,
    # negative disables parking.
    cpu_park_bytes: int = setting(0, help="bytes of evicted pipelines parked in host memory (0: auto, <0: off)",
                                  env="MODELMGR_INFERENCE_CPU_PARK_BYTES")
    # Jobs allowed to wait behind the running one; more get RESOURCE_EXHAUSTED / QUEUE_FULL.
    max_queue: int = setting(16, help="jobs that may wait behind the running one", env="MODELMGR_INFERENCE_MAX_QUEUE")
    # LoRA adapters kept loaded per checkpoint (least recently used ones are unloaded).
    max_adapters: int = setting(16, help="LoRA adapters kept per checkpoint", env="MODELMGR_INFERENCE_MAX_ADAPTERS")
    # Component configs and tokenizers for single-file checkpoints (default: the shipped SDXL ones).
    sdxl_config_dir: Path | None = setting(
        None, help="component configs + tokenizers for single-file checkpoints (default: shipped)",
        env="MODELMGR_INFERENCE_SDXL_CONFIG_DIR")
    # Where configs embedded in a checkpoint's header are unpacked (default: a temp folder).
    config_cache_dir: Path | None = setting(None, help="where configs embedded in checkpoints are unpacked",
                                            env="MODELMGR_INFERENCE_CONFIG_CACHE_DIR")
    # Deadline of each call to the registry (active checkpoint, prompt composition, model lookups).
    registry_timeout_s: float = setting(10.0, help="deadline of each registry call, seconds",
                                        flag="--registry-timeout", env="MODELMGR_INFERENCE_REGISTRY_TIMEOUT",
                                        positive=True)
    # Every Generate and Upscale result is saved here with its parameters. Unset: `outputs/` beside the
    # user-models volume, so the local data folders (data/user-models, data/models) gain data/outputs.
    outputs_dir: Path | None = setting(
        None, help="where Generate and Upscale results are saved (default: outputs/ beside the user-models volume)",
        env="MODELMGR_INFERENCE_OUTPUTS_DIR")
    log_level: str = log_level_setting()
    log_format: str = log_format_setting()

    @property
    def outputs_path(self) -> Path:
        return self.outputs_dir or self.user_models_dir.parent / "outputs"

    @property
    def default_checkpoint_path(self) -> Path:
        """Where the default base checkpoint lies on the models volume."""
        return self.models_dir / DEFAULT_CHECKPOINT_FILE

    @property
    def controlnet_tile_dir(self) -> Path:
        return self.models_dir / "controlnet-tile"


def from_args(argv: Sequence[str] | None = None) -> InferenceSettings:
    return InferenceSettings.from_args(argv)
