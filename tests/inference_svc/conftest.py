"""Tiny SDXL-shaped models for the inference tests, built once per session (a few MB each)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from inference_helpers import (
    rewrite_checkpoint,
    to_sd15_layout,
    with_inpainting_conv_in,
    with_misshapen_resnet,
)

from devtools.tiny_models import (
    build_tiny_pipeline,
    write_incompatible_lora,
    write_tiny_checkpoint,
    write_tiny_diffusers_folder,
    write_tiny_lora,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Two cores shared with other test suites: one intra-op thread keeps every run predictable.
torch.set_num_threads(1)


@dataclass(frozen=True)
class TinyFiles:
    root: Path
    checkpoint_a: Path
    checkpoint_b: Path
    diffusers_a: Path
    lora_kohya: Path
    lora_peft: Path
    lora_incompatible: Path
    corrupt: Path
    # A LoRA, and an SD 1.5-shaped checkpoint: files the service must refuse as checkpoints.
    lora_as_checkpoint: Path
    sd15: Path
    # Pass the marker check; the first fails the header's shape check, the second only in diffusers.
    inpainting_shaped: Path
    misshapen_resnet: Path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyFiles:
    root = tmp_path_factory.mktemp("tiny-models")
    checkpoint_a = write_tiny_checkpoint(root / "tiny-a.safetensors", seed=1)
    corrupt = root / "corrupt.safetensors"
    data = checkpoint_a.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])  # truncated download
    return TinyFiles(
        root=root,
        checkpoint_a=checkpoint_a,
        checkpoint_b=write_tiny_checkpoint(root / "tiny-b.safetensors", seed=2),
        diffusers_a=write_tiny_diffusers_folder(root / "tiny-a-diffusers", seed=1),
        lora_kohya=write_tiny_lora(root / "kohya.safetensors", seed=1),
        lora_peft=write_tiny_lora(root / "peft.safetensors", seed=2, format="peft"),
        lora_incompatible=write_incompatible_lora(root / "incompatible.safetensors"),
        corrupt=corrupt,
        lora_as_checkpoint=write_tiny_lora(root / "a-lora-not-a-checkpoint.safetensors", seed=3),
        sd15=rewrite_checkpoint(checkpoint_a, root / "tiny-sd15.safetensors", to_sd15_layout, metadata={}),
        inpainting_shaped=rewrite_checkpoint(checkpoint_a, root / "tiny-inpainting.safetensors", with_inpainting_conv_in),
        misshapen_resnet=rewrite_checkpoint(checkpoint_a, root / "tiny-misshapen.safetensors", with_misshapen_resnet),
    )


@pytest.fixture(scope="session")
def reference_a():
    """The in-memory pipeline that tiny-a.safetensors was written from."""
    pipe = build_tiny_pipeline(1)
    pipe.set_progress_bar_config(disable=True)
    return pipe

