"""The shapes of an SDXL checkpoint's key tensors, from the component configs, checked from the header.

The header check runs before the cache evicts anything for a load, so a file
whose layers have other widths than the config says (an inpainting UNet's 9
input channels, another text encoder) is refused up front, naming the
tensor, instead of failing halfway through diffusers' loader. Only a few
tensors are checked, each one that a family of mismatched files gets wrong:
the UNet's input/output convolutions, time and size conditioning, cross
attention width, both text encoders' embeddings, the VAE's ends.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from inference_svc.assets import EMBEDDED_CONFIG_KEY
from inference_svc.errors import CheckpointLoadFailed, shown_path

_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
_UNET = "model.diffusion_model."
_TE1 = "conditioner.embedders.0.transformer.text_model.embeddings."
_TE2 = "conditioner.embedders.1.model."
_VAE = "first_stage_model."


@functools.lru_cache(maxsize=8)
def _shipped_configs(config_dir: str) -> dict[str, dict[str, Any]]:
    return {c: json.loads((Path(config_dir) / c / "config.json").read_text(encoding="utf-8")) for c in _COMPONENTS}


def component_configs(path: Path, metadata: dict[str, str], config_dir: Path) -> dict[str, dict[str, Any]]:
    """The unet/vae/text encoder configs the loader will build from: embedded in the file, or `config_dir`'s."""
    embedded = metadata.get(EMBEDDED_CONFIG_KEY)
    if not embedded:
        return _shipped_configs(str(config_dir))
    try:
        files = json.loads(embedded)
        return {c: json.loads(files[f"{c}/config.json"]) for c in _COMPONENTS}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointLoadFailed(
            f"{path.name}: the config embedded in its header is malformed: {type(exc).__name__}: {exc}"[:1000],
            metadata={"path": shown_path(path), "detail": "config"},
        ) from exc


def expected_shapes(configs: dict[str, dict[str, Any]]) -> dict[str, tuple[tuple[int, ...], str]]:
    """LDM key -> (shape, what it is) for the key tensors of a checkpoint built from `configs`."""
    unet, vae = configs["unet"], configs["vae"]
    te1, te2 = configs["text_encoder"], configs["text_encoder_2"]
    blocks = unet["block_out_channels"]
    k_in, k_out = unet.get("conv_in_kernel", 3), unet.get("conv_out_kernel", 3)
    time_dim = unet.get("time_embedding_dim") or blocks[0] * 4
    shapes = {
        f"{_UNET}input_blocks.0.0.weight": ((blocks[0], unet["in_channels"], k_in, k_in), "UNet input channels"),
        f"{_UNET}out.2.weight": ((unet["out_channels"], blocks[0], k_out, k_out), "UNet output channels"),
        f"{_UNET}time_embed.0.weight": ((time_dim, blocks[0]), "UNet time embedding"),
        f"{_TE1}token_embedding.weight": ((te1["vocab_size"], te1["hidden_size"]), "CLIP-L text encoder width"),
        f"{_TE1}position_embedding.weight": (
            (te1["max_position_embeddings"], te1["hidden_size"]), "CLIP-L text encoder width"),
        f"{_TE2}token_embedding.weight": ((te2["vocab_size"], te2["hidden_size"]), "OpenCLIP-bigG text encoder width"),
        f"{_TE2}positional_embedding": (
            (te2["max_position_embeddings"], te2["hidden_size"]), "OpenCLIP-bigG text encoder width"),
        f"{_VAE}encoder.conv_in.weight": ((vae["block_out_channels"][0], vae["in_channels"], 3, 3), "VAE input"),
        f"{_VAE}decoder.conv_in.weight": (
            (vae["block_out_channels"][-1], vae["latent_channels"], 3, 3), "VAE latent channels"),
    }
    if unet.get("addition_embed_type") == "text_time":
        shapes[f"{_UNET}label_emb.0.0.weight"] = (
            (time_dim, unet["projection_class_embeddings_input_dim"]), "SDXL size/crop conditioning")
    if isinstance(unet.get("cross_attention_dim"), int):
        # Both text encoders' hidden states, concatenated, enter every cross attention.
        shapes[f"{_UNET}middle_block.1.transformer_blocks.0.attn2.to_k.weight"] = (
            (blocks[-1], unet["cross_attention_dim"]), "UNet cross-attention width")
    return shapes


def check_shapes(path: Path, tensors: dict[str, Any], configs: dict[str, dict[str, Any]], source: str) -> None:
    """Raise CheckpointLoadFailed naming the first key tensor whose shape differs from what `configs` build."""
    for key, (want, what) in expected_shapes(configs).items():
        entry = tensors.get(key)
        if not isinstance(entry, dict) or "shape" not in entry:
            continue  # missing keys are the marker check's (or diffusers') business
        got = tuple(int(d) for d in entry["shape"])
        if got != want:
            hint = ""
            if key == f"{_UNET}input_blocks.0.0.weight" and len(got) == 4 and got[1] == 9:
                hint = "; 9 input channels is an inpainting UNet, which this service does not run"
            raise CheckpointLoadFailed(
                f"{path.name}: tensor {key} ({what}) has shape {list(got)}, {source} expects {list(want)}{hint}",
                metadata={"path": shown_path(path), "detail": "shape", "tensor": key},
            )
