"""Loads an SDXL pipeline from a single-file checkpoint or a diffusers folder, offline.

Single files go through diffusers' own single-file loader
(`StableDiffusionXLPipeline.from_single_file`) with `config=` a local folder
of component configs and tokenizers (see `inference_svc.assets`), so nothing
is fetched from the hub. The file's header is checked first, so a corrupt
file, a non-SDXL checkpoint or a LoRA gets a clear error before any
allocation, and so is one whose key tensors have other shapes than its config
(see `inference_svc.checkpoint_shapes`).

`prepare_swap` / `swap` load a file into an already built pipeline of the
same architecture instead (`inference_svc.weight_swap`): the cache's in-place
switch, with no module construction and no key conversion on the request path.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference_svc.assets import EMBEDDED_CONFIG_KEY, SDXL_CONFIG_DIR, materialize_embedded_config
from inference_svc.checkpoint_shapes import check_shapes, component_configs
from inference_svc.device import DeviceInfo, is_out_of_memory
from inference_svc.errors import CheckpointLoadFailed, CheckpointNotFound, shown_path
from inference_svc.weight_swap import StagingBuffers, SwapPlan, plan_for, swap_weights

# Progress callback: (stage, fraction 0..1).
LoadProgress = Callable[[str, float], None]

# Keys every SDXL-family LDM checkpoint has (UNet, VAE, both text encoders).
_SDXL_MARKERS = (
    "model.diffusion_model.input_blocks.0.0.weight",
    "model.diffusion_model.label_emb.0.0.weight",  # SDXL's size/crop conditioning
    "first_stage_model.decoder.conv_in.weight",
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
    "conditioner.embedders.1.model.positional_embedding",
)
# Safetensors headers are a few MB at most for a checkpoint; larger means a corrupt length field.
_MAX_HEADER_BYTES = 64 * 1024 * 1024


_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}


@dataclass(frozen=True)
class PreparedSwap:
    """A file checked against a pipeline's plan: every tensor it must copy is there, in its shape."""

    checkpoint: CheckpointFile
    plan: SwapPlan
    tensors: dict[str, Any]
    header_len: int
    config_dir: Path


@dataclass(frozen=True)
class CheckpointFile:
    """What the header of a single-file checkpoint says."""

    path: Path
    size_bytes: int
    tensor_bytes: int
    metadata: dict[str, str]
    # Floating-point values in the file: what the pipeline's weights will hold.
    parameter_count: int = 0
    # NoobAI-style markers: `v_pred` (v-prediction) and `ztsnr` (zero terminal SNR) keys.
    v_prediction: bool = False
    zero_terminal_snr: bool = False

    def loaded_bytes(self, dtype: torch.dtype) -> int:
        return self.parameter_count * torch.finfo(dtype).bits // 8


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor table, __metadata__) of a safetensors file; raises CheckpointLoadFailed when malformed."""
    tensors, metadata, _ = _read_header(path)
    return tensors, metadata


def read_header_and_length(path: Path) -> tuple[dict[str, Any], dict[str, str], int]:
    """read_header, plus the header's length in bytes (tensor data starts at 8 + length)."""
    return _read_header(path)


def _read_header(path: Path) -> tuple[dict[str, Any], dict[str, str], int]:
    """read_header, plus the header's length in bytes."""
    try:
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) != 8:
                raise ValueError("file shorter than a safetensors header")
            (length,) = struct.unpack("<Q", raw_len)
            if length > _MAX_HEADER_BYTES or length > os.fstat(f.fileno()).st_size - 8:
                raise ValueError(f"header length {length} is impossible")
            header = json.loads(f.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointLoadFailed(
            f"{path.name} is not a readable safetensors file: {exc}", metadata={"path": shown_path(path), "detail": "corrupt"}
        ) from exc
    if not isinstance(header, dict):
        raise CheckpointLoadFailed(f"{path.name}: safetensors header is not an object", metadata={"path": shown_path(path)})
    metadata = header.pop("__metadata__", None) or {}
    return header, {str(k): str(v) for k, v in metadata.items()}, length


def inspect_checkpoint(path: Path, config_dir: Path = SDXL_CONFIG_DIR) -> CheckpointFile:
    """Check that `path` is an SDXL-family single-file checkpoint whose data is all there.

    The key tensors' shapes are checked against the configs the loader will use: those embedded in
    the file, else `config_dir`'s (SDXL base's by default). Header only: no tensor is read.
    """
    if not path.exists():
        raise CheckpointNotFound(f"checkpoint file {shown_path(path)} does not exist", metadata={"path": shown_path(path)})
    if path.suffix.lower() != ".safetensors":
        # Pickle formats (.ckpt/.pt/.bin) can run code when loaded.
        raise CheckpointLoadFailed(
            f"{path.name}: only .safetensors checkpoints are loaded", metadata={"path": shown_path(path), "detail": "format"}
        )
    tensors, metadata, header_len = _read_header(path)
    size = path.stat().st_size
    end = max((int(t["data_offsets"][1]) for t in tensors.values() if isinstance(t, dict)), default=0)
    if 8 + header_len + end > size:
        raise CheckpointLoadFailed(
            f"{path.name} is truncated: the header describes {8 + header_len + end} bytes, the file has {size}",
            metadata={"path": shown_path(path), "detail": "truncated"},
        )
    missing = [k for k in _SDXL_MARKERS if k not in tensors]
    if missing:
        raise CheckpointLoadFailed(
            f"{path.name} is {_kind(tensors)}: an SDXL checkpoint has {missing[0]}",
            metadata={"path": shown_path(path), "detail": "architecture"},
        )
    source = "its embedded config" if EMBEDDED_CONFIG_KEY in metadata else "the SDXL config"
    check_shapes(path, tensors, component_configs(path, metadata, config_dir), source)
    return CheckpointFile(
        path=path,
        size_bytes=size,
        tensor_bytes=end,
        metadata=metadata,
        parameter_count=_float_count(tensors),
        v_prediction="v_pred" in tensors,
        zero_terminal_snr="ztsnr" in tensors,
    )


def _kind(tensors: dict[str, Any]) -> str:
    """What a file that is not an SDXL checkpoint looks like, for the error message."""
    if any(k.startswith(("lora_", "unet.", "lora_unet")) for k in tensors):
        return "a LoRA"
    if any(k.startswith("cond_stage_model.") for k in tensors):
        # SD 1.x (CLIP-L as cond_stage_model.transformer) and 2.x (OpenCLIP-H as cond_stage_model.model).
        return "an SD 1.x/2.x checkpoint, not SDXL"
    return "not SDXL"


def _float_count(tensors: dict[str, Any]) -> int:
    return sum(
        math.prod(t["shape"]) for t in tensors.values() if isinstance(t, dict) and t.get("dtype") in _FLOAT_DTYPES
    )


class CheckpointLoader:
    """Builds pipelines on the target device and dtype."""

    def __init__(self, device: DeviceInfo, *, sdxl_config_dir: Path | None = None, config_cache_dir: Path | None = None):
        self.device = device
        self.sdxl_config_dir = sdxl_config_dir or SDXL_CONFIG_DIR
        self.config_cache_dir = config_cache_dir
        # (path, mtime, size) -> what inspect_checkpoint said, for the last file inspected.
        self._inspected: tuple[tuple[str, int, int], CheckpointFile] | None = None
        # Architecture (config folder) -> where each file tensor goes in its pipelines.
        self._plans: dict[str, SwapPlan] = {}
        self._staging = StagingBuffers(device.is_cuda)

    def inspect(self, path: Path) -> CheckpointFile:
        """inspect_checkpoint, remembered for the last file: the cache checks a file right before loading it."""
        try:
            st = path.stat()
        except OSError:
            return inspect_checkpoint(path, self.sdxl_config_dir)  # raises CheckpointNotFound
        key = (str(path), st.st_mtime_ns, st.st_size)
        if self._inspected is None or self._inspected[0] != key:
            self._inspected = (key, inspect_checkpoint(path, self.sdxl_config_dir))
        return self._inspected[1]

    def config_dir_for(self, checkpoint: CheckpointFile) -> Path:
        embedded = checkpoint.metadata.get(EMBEDDED_CONFIG_KEY)
        if embedded:
            try:
                return materialize_embedded_config(embedded, self.config_cache_dir)
            except ValueError as exc:
                raise CheckpointLoadFailed(f"{checkpoint.path.name}: {exc}", metadata={"path": checkpoint.path}) from exc
        return self.sdxl_config_dir

    def architecture(self, path: Path) -> str:
        """What pipelines built from `path` have in common with others: their config folder.

        The same folder means the same modules, tokenizers and scheduler config, so a file's weights
        load into any pipeline of the same architecture. "" for a diffusers folder (never swapped).
        """
        if path.is_dir():
            return ""
        return str(self.config_dir_for(self.inspect(path)))

    def prepare_swap(self, pipe: Any, architecture: str, path: Path) -> PreparedSwap | None:
        """Check that `path` loads into `pipe` (built for `architecture`) in place; None, logged, when not."""
        from service_kit import get_logger

        checkpoint = self.inspect(path)
        config_dir = self.config_dir_for(checkpoint)
        if not architecture or str(config_dir) != architecture:
            return None
        plan = self._plans.get(architecture)
        if plan is None:
            plan = self._plans[architecture] = plan_for(pipe)
        tensors, _, header_len = _read_header(path)
        reason = plan.mismatch(tensors)
        if reason is not None:
            get_logger("inference_svc.checkpoint_loader").info(
                "checkpoint.no_in_place_swap", path=shown_path(path), reason=reason[:300])
            return None
        return PreparedSwap(checkpoint, plan, tensors, header_len, config_dir)

    def swap(self, pipe: Any, prepared: PreparedSwap, skip: frozenset[str] = frozenset(),
             progress: LoadProgress | None = None) -> int:
        """Load a prepared file's weights into `pipe` in place (but components in `skip`); the bytes read.

        Raises CheckpointLoadFailed (a read that fails: truncated, I/O error) with `pipe` partly swapped.
        """
        report = progress or (lambda stage, fraction: None)
        report("reading", 0.0)
        path = prepared.checkpoint.path
        try:
            read = swap_weights(pipe, prepared.plan, path, prepared.tensors, prepared.header_len, self._staging,
                                skip=skip, progress=report)
        except (CheckpointLoadFailed, CheckpointNotFound):
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            raise CheckpointLoadFailed(
                f"{path.name} could not be read into the pipeline: {type(exc).__name__}: {exc}"[:1000],
                metadata={"path": shown_path(path), "detail": "load"},
            ) from exc
        pipe.scheduler = _scheduler_of(prepared.config_dir)
        _apply_prediction_type(pipe, prepared.checkpoint)
        report("moving_to_device", 1.0)
        return read

    def estimate_bytes(self, path: Path) -> int:
        """Memory the loaded pipeline will take; also checks the file (raises like `load`)."""
        if path.is_dir():
            # A diffusers folder: the weights of each component in its own file(s).
            count = sum(_float_count(read_header(f)[0]) for f in sorted(path.glob("*/*.safetensors")))
            return count * torch.finfo(self.device.dtype).bits // 8
        return self.inspect(path).loaded_bytes(self.device.dtype)

    def load(self, path: Path, progress: LoadProgress | None = None) -> Any:
        """A StableDiffusionXLPipeline on the device; raises CheckpointNotFound / CheckpointLoadFailed."""
        from diffusers import StableDiffusionXLPipeline
        from transformers.initialization import no_init_weights

        report = progress or (lambda stage, fraction: None)
        report("reading", 0.0)
        try:
            if path.is_dir():
                if not (path / "model_index.json").exists():
                    raise CheckpointLoadFailed(
                        f"{shown_path(path)} is a folder without model_index.json", metadata={"path": shown_path(path), "detail": "format"}
                    )
                report("building", 0.2)
                pipe = StableDiffusionXLPipeline.from_pretrained(
                    path, dtype=self.device.dtype, local_files_only=True, use_safetensors=True
                )
            else:
                checkpoint = self.inspect(path)
                config = self.config_dir_for(checkpoint)
                report("building", 0.2)
                # diffusers builds each model on the meta device but still runs every layer's random
                # init on it (Python code per tensor: over a quarter of a 0.5 GB checkpoint's load time).
                # Skip it, as diffusers' from_pretrained does; transformers' version of the switch also
                # covers the CLIP encoders' init_weights. It patches torch.nn.init process-wide while
                # it is on: fine, only the job worker thread builds models.
                with no_init_weights():
                    # `device` puts the UNet and VAE weights straight on the target device as they are
                    # read; the text encoders are built on the host and moved below.
                    pipe = StableDiffusionXLPipeline.from_single_file(
                        str(path),
                        config=str(config),
                        tokenizer=_tokenizer(str(config), "tokenizer"),
                        tokenizer_2=_tokenizer(str(config), "tokenizer_2"),
                        local_files_only=True,
                        dtype=_single_file_dtype(self.device.dtype),
                        device=self.device.device,
                    )
                _apply_prediction_type(pipe, checkpoint)
        except (CheckpointLoadFailed, CheckpointNotFound):
            raise
        except Exception as exc:  # diffusers raises ValueError/KeyError/RuntimeError/SafetensorError...
            if is_out_of_memory(exc):
                raise  # not the file's fault: the cache reports it as OUT_OF_MEMORY
            raise CheckpointLoadFailed(
                f"{path.name} could not be loaded as an SDXL pipeline: {type(exc).__name__}: {exc}"[:1000],
                metadata={"path": shown_path(path), "detail": "load"},
            ) from exc
        report("moving_to_device", 0.8)
        if any(p.device != self.device.device for p in _parameters(pipe)):
            pipe.to(self.device.device)  # the text encoders; the UNet and VAE are there already
        pipe.set_progress_bar_config(disable=True)
        report("moving_to_device", 1.0)
        return pipe


def _single_file_dtype(dtype: torch.dtype) -> torch.dtype | None:
    """What to pass from_single_file as `dtype` for models in `dtype`.

    None for torch's default dtype (float32, the CPU's): diffusers then casts each tensor to the
    empty model's dtype (the default) as it reads it, and skips a whole-model `.to(dtype)` pass per
    component (~8 ms of a 0.5 GB checkpoint's ~110 ms).
    """
    return None if dtype == torch.get_default_dtype() else dtype


@functools.lru_cache(maxsize=8)
def _tokenizer(config_dir: str, subfolder: str) -> Any:
    """A config folder's CLIP tokenizer, read once per process and shared by the pipelines built from it.

    Reading SDXL's (49k-token vocabulary, 48k merges) takes ~45 ms, twice per load otherwise. A
    tokenizer keeps no state between calls and nothing here adds tokens to it. The folders do not
    change while the service runs (embedded configs are named by their content's hash).
    """
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(config_dir, subfolder=subfolder, local_files_only=True)


def _scheduler_of(config_dir: Path) -> Any:
    """The scheduler a pipeline built from `config_dir` starts with (what from_single_file makes)."""
    import diffusers

    index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
    cls = getattr(diffusers, index["scheduler"][1])
    return cls.from_pretrained(str(config_dir), subfolder="scheduler", local_files_only=True)


def _apply_prediction_type(pipe: Any, checkpoint: CheckpointFile) -> None:
    """v-prediction checkpoints (NoobAI-XL V-Pred...) say so by a marker key, as A1111 and ComfyUI read it."""
    if not checkpoint.v_prediction:
        return
    overrides: dict[str, Any] = {"prediction_type": "v_prediction"}
    if checkpoint.zero_terminal_snr:
        overrides.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **overrides)


def _parameters(pipe: Any) -> list[torch.Tensor]:
    return [p for c in pipe.components.values() if isinstance(c, torch.nn.Module) for p in c.parameters()]


def pipeline_bytes(pipe: Any) -> int:
    """Bytes held by a pipeline's weights (parameters and buffers of every torch module)."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in component.parameters())
            total += sum(t.numel() * t.element_size() for t in component.buffers())
    return total
