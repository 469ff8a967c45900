"""Helpers shared by the inference tests (a plain module: tests/ is not a package)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from devtools.model_files import save_tensors
from devtools.tiny_models import TINY_SIZE

SIZE = TINY_SIZE


def copy_into(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    shutil.copy(src, dst)
    return dst


def rewrite_checkpoint(src: Path, dst: Path, edit: Callable[[dict[str, torch.Tensor]], None],
                       metadata: dict[str, str] | None = None) -> Path:
    """A copy of the checkpoint `src` whose tensors `edit` changed in place (header metadata kept unless given)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    state = load_file(str(src))
    if metadata is None:
        with safe_open(str(src), "pt") as f:
            metadata = f.metadata()
    edit(state)
    return save_tensors(dst, state, metadata)


def to_sd15_layout(state: dict[str, torch.Tensor]) -> None:
    """An SD 1.5-shaped checkpoint: one text encoder (cond_stage_model), no size conditioning (label_emb)."""
    for key in list(state):
        if key.startswith(("conditioner.embedders.1.", "model.diffusion_model.label_emb.")):
            del state[key]
        elif key.startswith("conditioner.embedders.0.transformer."):
            state["cond_stage_model.transformer." + key.removeprefix("conditioner.embedders.0.transformer.")] = state.pop(key)


def with_inpainting_conv_in(state: dict[str, torch.Tensor]) -> None:
    """An SDXL inpainting UNet's input convolution: 9 channels (latents, mask, masked image), not 4."""
    key = "model.diffusion_model.input_blocks.0.0.weight"
    out, _, k, _ = state[key].shape
    state[key] = torch.zeros(out, 9, k, k, dtype=state[key].dtype)


def with_misshapen_resnet(state: dict[str, torch.Tensor]) -> None:
    """A wrong shape deep inside the UNet, where the header check does not look: only diffusers finds it."""
    key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    out, channels, _, _ = state[key].shape
    state[key] = torch.zeros(out, channels, 1, 1, dtype=state[key].dtype)
