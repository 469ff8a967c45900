"""Tiny SDXL-shaped models with random weights, in the file formats CivitAI serves.

For tests and demos of every service: a checkpoint is a few MB, loads through
diffusers' real single-file loader and generates a 64x64 image on the CPU in
well under a second. Everything is deterministic by `seed`.

API
---
``write_tiny_checkpoint(path, seed=0, *, variant="default", dtype=torch.float16, v_prediction=False) -> Path``
    One `.safetensors` file in the original LDM layout (`model.diffusion_model.*`,
    `first_stage_model.*`, `conditioner.embedders.0.transformer.*`,
    `conditioner.embedders.1.model.*`), like an Illustrious/Pony checkpoint. Its
    component configs and tokenizer ride in the header metadata
    (`inference_svc.assets.EMBEDDED_CONFIG_KEY`), so the file alone is enough for
    the inference service. Different seeds give different weights (and images).
``write_tiny_lora(path, seed=0, *, format="kohya", rank=4, variant="default") -> Path``
    A LoRA for the tiny checkpoint. `format="kohya"`: `lora_unet_*` (sgm block
    names, as kohya's SDXL trainer writes them), `lora_te1_*`, `lora_te2_*` with
    `.lora_down.weight`, `.lora_up.weight`, `.alpha`, plus kohya-style
    `ss_*` metadata. `format="peft"`: diffusers/PEFT names
    (`unet.<module>.lora_A.weight` / `lora_B.weight`, `text_encoder.*`, `text_encoder_2.*`).
``write_incompatible_lora(path, seed=0) -> Path``
    A kohya LoRA made for `variant="wide"` (other layer widths): it does not fit a
    default tiny checkpoint, like an SD 1.5 LoRA on an SDXL model.
``write_tiny_diffusers_folder(path, seed=0, *, variant="default") -> Path``
    The same model as a diffusers-format folder (`save_pretrained`).
``build_tiny_pipeline(seed=0, *, variant="default") -> StableDiffusionXLPipeline``
    The model in memory (float32, weights rounded through float16 so the
    float16 file holds them exactly): the reference for round-trip tests.
``tiny_config_files(variant="default") -> dict[str, str]``
    Relative path -> text of the tiny component configs and tokenizers.
``write_tiny_embedding(path, seed=0, *, vectors=2)``, ``write_tiny_vae(path, seed=0, *, prefix="")``,
``write_tiny_esrgan(path, seed=0, *, scale=2, arch="compact")``
    An SDXL embedding pair, a standalone VAE and a few-kilobyte ESRGAN for the tiny models (issue 14).
``TINY_SIZE = 64``: a good width/height for tiny generations (multiple of 8).

Variants: "default"; "wide" (other channel widths; loading a "wide" LoRA into
a "default" checkpoint fails as incompatible); "medium" (~0.5 GB in float32)
and "large" (SDXL's widths, fewer layers, ~1.8 GB in float16) for benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from devtools.model_files import kohya_metadata, modelspec_metadata, save_tensors
from inference_svc.assets import EMBEDDED_CONFIG_KEY, SDXL_CONFIG_DIR, embedded_config_text
from inference_svc.assets.clip_bpe import PAD_TOKENS, shipped_merges, tokenizer_files
from inference_svc.assets.sdxl_configs import config_files
from inference_svc.ldm_convert import _unet_prefix_map, pipeline_to_ldm, unet_key_to_ldm

TINY_SIZE = 64
# The first merges of CLIP's list: a real CLIP tokenizer with a 1514-token vocabulary.
TINY_MERGES = 1000

_WIDTHS = {
    # The two text encoders must differ in width: diffusers tells CLIP-L from OpenCLIP-bigG
    # in a single file by the width of the position embedding (768 vs 1280 in SDXL).
    "default": {"unet": [32, 64, 64], "vae": [16, 32, 32, 32], "text": (32, 48)},
    "wide": {"unet": [48, 96, 96], "vae": [16, 32, 32, 32], "text": (48, 64)},
    # For benchmarks: ~0.5 GB in float32, where reading and compute dominate fixed overheads.
    "medium": {"unet": [128, 256, 512], "vae": [32, 64, 128, 128], "text": (256, 384)},
    # SDXL's real widths with fewer layers: a ~1.8 GB float16 file, for load benchmarks.
    "large": {"unet": [320, 640, 1280], "vae": [128, 256, 512, 512], "text": (768, 1280)},
}

Variant = Literal["default", "wide", "medium", "large"]


def _config_dicts(variant: Variant) -> dict[str, dict[str, Any]]:
    widths = _WIDTHS[variant]
    files = config_files()  # SDXL base, shrunk below
    te1, te2 = widths["text"]
    vocab_size = 2 * 256 + TINY_MERGES + 2
    for name, text in (("text_encoder/config.json", te1), ("text_encoder_2/config.json", te2)):
        files[name].update(
            hidden_size=text,
            intermediate_size=2 * text,
            num_attention_heads=4,
            num_hidden_layers=2,
            projection_dim=text,
            vocab_size=vocab_size,
        )
    unet = files["unet/config.json"]
    unet.update(
        block_out_channels=widths["unet"],
        attention_head_dim=[2, 4, 4],
        transformer_layers_per_block=[1, 1, 2],
        cross_attention_dim=te1 + te2,  # both encoders' hidden states, concatenated
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + te2,  # time ids + pooled text_encoder_2 output
        norm_num_groups=8,
        sample_size=TINY_SIZE // 8,
    )
    files["vae/config.json"].update(
        block_out_channels=widths["vae"], layers_per_block=1, norm_num_groups=8, sample_size=TINY_SIZE
    )
    return files


def tiny_config_files(variant: Variant = "default") -> dict[str, str]:
    files = {rel: json.dumps(data, indent=2, sort_keys=True) for rel, data in _config_dicts(variant).items()}
    merges = shipped_merges(SDXL_CONFIG_DIR)[:TINY_MERGES]
    for folder, pad in PAD_TOKENS.items():
        for name, text in tokenizer_files(merges, pad_token=pad).items():
            files[f"{folder}/{name}"] = text
    return files


def _write_config_dir(root: Path, variant: Variant) -> Path:
    for rel, text in tiny_config_files(variant).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def build_tiny_pipeline(seed: int = 0, *, variant: Variant = "default"):
    """A StableDiffusionXLPipeline with random weights, deterministic by seed."""
    import tempfile

    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    dicts = _config_dicts(variant)
    with tempfile.TemporaryDirectory() as tmp:
        root = _write_config_dir(Path(tmp), variant)
        tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
        tokenizer_2 = CLIPTokenizer.from_pretrained(root / "tokenizer_2")
        te_config = CLIPTextConfig.from_pretrained(root / "text_encoder")
        te2_config = CLIPTextConfig.from_pretrained(root / "text_encoder_2")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(dicts["unet/config.json"])
    vae = AutoencoderKL.from_config(dicts["vae/config.json"])
    text_encoder = CLIPTextModel(te_config)
    text_encoder_2 = CLIPTextModelWithProjection(te2_config)
    # Random init leaves some tensors constant (norms at 1, biases at 0); perturb everything
    # so that a wrong key mapping anywhere changes the output.
    generator = torch.Generator().manual_seed(seed)
    for model in (unet, vae, text_encoder, text_encoder_2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.02)
                # Representable in float16, so a float16 file holds exactly these weights.
                p.copy_(p.half().float())
        model.eval()
    scheduler = EulerDiscreteScheduler.from_config(dicts["scheduler/scheduler_config.json"])
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


def write_tiny_checkpoint(
    path: str | Path,
    seed: int = 0,
    *,
    variant: Variant = "default",
    dtype: torch.dtype = torch.float16,
    v_prediction: bool = False,
) -> Path:
    """A single-file LDM-layout checkpoint (what CivitAI serves), with its configs embedded.

    `v_prediction=True` adds the empty `v_pred` and `ztsnr` marker tensors that NoobAI-XL V-Pred carries.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(dtype) for k, v in pipeline_to_ldm(build_tiny_pipeline(seed, variant=variant)).items()}
    if v_prediction:
        state["v_pred"] = torch.zeros(0)
        state["ztsnr"] = torch.zeros(0)
    metadata = {
        EMBEDDED_CONFIG_KEY: embedded_config_text(tiny_config_files(variant)),
        **modelspec_metadata(f"tiny-sdxl-{variant}-{seed}"),
    }
    return save_tensors(path, state, metadata)


def write_tiny_diffusers_folder(path: str | Path, seed: int = 0, *, variant: Variant = "default") -> Path:
    path = Path(path)
    build_tiny_pipeline(seed, variant=variant).save_pretrained(path, safe_serialization=True)
    return path


# Linear layers a LoRA trainer targets: attention and feed-forward in the UNet's transformer
# blocks, attention and MLP in the text encoders (kohya's defaults for SDXL).
_UNET_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                 "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
_TEXT_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")


def _linear_targets(model: torch.nn.Module, suffixes: tuple[str, ...]) -> list[tuple[str, torch.nn.Linear]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.endswith(suffixes)
    ]


def write_tiny_lora(
    path: str | Path,
    seed: int = 0,
    *,
    format: Literal["kohya", "peft"] = "kohya",
    rank: int = 4,
    variant: Variant = "default",
) -> Path:
    """A LoRA for the tiny checkpoint of the same variant; its effect is large enough to see."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(0, variant=variant)  # shapes only; LoRAs do not depend on base weights
    generator = torch.Generator().manual_seed(10_000 + seed)

    def pair(module: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        down = torch.randn(rank, module.in_features, generator=generator) * 0.3
        up = torch.randn(module.out_features, rank, generator=generator) * 0.3
        return down.half(), up.half()

    state: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    unet_map = _unet_prefix_map(dict(pipe.unet.config))
    components = (
        ("unet", pipe.unet, _UNET_TARGETS),
        ("text_encoder", pipe.text_encoder, _TEXT_TARGETS),
        ("text_encoder_2", pipe.text_encoder_2, _TEXT_TARGETS),
    )
    for component, model, targets in components:
        for name, module in _linear_targets(model, targets):
            down, up = pair(module)
            if format == "kohya":
                if component == "unet":
                    lora_name = "lora_unet_" + unet_key_to_ldm(name, unet_map).replace(".", "_")
                else:
                    # kohya names text encoder modules as transformers' CLIPTextModel did before
                    # it was flattened: text_model.encoder.layers...
                    full = name if name.startswith("text_model.") else "text_model." + name
                    prefix = "lora_te1_" if component == "text_encoder" else "lora_te2_"
                    lora_name = prefix + full.replace(".", "_")
                state[f"{lora_name}.lora_down.weight"] = down
                state[f"{lora_name}.lora_up.weight"] = up
                state[f"{lora_name}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
            elif format == "peft":
                state[f"{component}.{name}.lora_A.weight"] = down
                state[f"{component}.{name}.lora_B.weight"] = up
            else:
                raise ValueError(f"unknown LoRA format {format!r}")
    if format == "kohya":
        metadata = kohya_metadata(rank=rank, output_name=path.stem)
    return save_tensors(path, state, metadata)


def write_incompatible_lora(path: str | Path, seed: int = 0) -> Path:
    """A kohya LoRA whose layer widths do not match a default tiny checkpoint."""
    return write_tiny_lora(path, seed, format="kohya", variant="wide")


# ---- embeddings, VAEs and upscalers (issue 14) -------------------------------------------------


def write_tiny_embedding(path: str | Path, seed: int = 0, *, vectors: int = 2, variant: Variant = "default") -> Path:
    """An SDXL textual-inversion embedding for the tiny text encoders: `clip_l` (vectors, first encoder's
    width) and `clip_g` (vectors, second encoder's width), as CivitAI serves them; strong enough to see."""
    te1, te2 = _WIDTHS[variant]["text"]
    generator = torch.Generator().manual_seed(20_000 + seed)
    state = {
        "clip_l": (torch.randn(vectors, te1, generator=generator) * 0.5).half(),
        "clip_g": (torch.randn(vectors, te2, generator=generator) * 0.5).half(),
    }
    return save_tensors(Path(path), state, {})


def write_tiny_vae(path: str | Path, seed: int = 0, *, variant: Variant = "default", prefix: str = "") -> Path:
    """A standalone VAE for the tiny checkpoint: the VAE of the tiny model of `seed`, in the LDM naming VAE
    files use (`encoder.*`, `decoder.*`, `quant_conv.*`; `prefix="first_stage_model."` for the checkpoint
    naming some ship with)."""
    state = pipeline_to_ldm(build_tiny_pipeline(seed, variant=variant))
    vae = {prefix + k.removeprefix("first_stage_model."): v.half()
           for k, v in state.items() if k.startswith("first_stage_model.")}
    return save_tensors(Path(path), vae, {})


def write_tiny_esrgan(path: str | Path, seed: int = 0, *, scale: int = 2, arch: Literal["compact", "rrdb"] = "compact") -> Path:
    """An ESRGAN-family upscaler that spandrel recognises, from spandrel's own modules' state dicts.

    `arch="compact"`: Real-ESRGAN's SRVGGNetCompact (`body.N.weight`, as realesr-general-x4v3 ships) with 8
    features and 2 convolutions: about 4 KB in float16. `arch="rrdb"`: the old-arch RRDBNet of ESRGAN and
    4x-UltraSharp (`model.0.weight`...), one block of 4 filters; its growth channels are fixed at 32, so
    it is ~390 KB. `.pth` / `.pt` paths are written as a plain (weights-only loadable) pickle of tensors.
    """
    from service_kit.spandrel_loader import load_descriptor  # noqa: F401  (torchvision stand-in first)

    torch.manual_seed(30_000 + seed)
    if arch == "compact":
        from spandrel.architectures.Compact import Compact

        model: torch.nn.Module = Compact(num_feat=8, num_conv=2, upscale=scale)
    else:
        from spandrel.architectures.ESRGAN import ESRGAN

        model = ESRGAN(in_nc=3, out_nc=3, num_filters=4, num_blocks=1, scale=scale)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".pth", ".pt"):
        torch.save(state, path)
        return path
    return save_tensors(path, state, {})

if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-models")
    print(write_tiny_checkpoint(out / "checkpoints" / "tiny-a.safetensors", seed=1))
    print(write_tiny_checkpoint(out / "checkpoints" / "tiny-b.safetensors", seed=2))
    print(write_tiny_lora(out / "loras" / "tiny-kohya.safetensors", seed=1))
    print(write_tiny_lora(out / "loras" / "tiny-peft.safetensors", seed=2, format="peft"))
