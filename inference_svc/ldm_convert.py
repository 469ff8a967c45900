"""Diffusers layout -> the original (LDM / "sgm") single-file layout that CivitAI checkpoints use.

The inverse of diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
`convert_ldm_clip_checkpoint` and `convert_open_clip_checkpoint`
(diffusers/loaders/single_file_utils.py), driven by the component configs so
it works for any SDXL-shaped model, the tiny test ones included. Key prefixes:

    model.diffusion_model.*               UNet
    first_stage_model.*                   VAE
    conditioner.embedders.0.transformer.* CLIP ViT-L text encoder (transformers names)
    conditioner.embedders.1.model.*       OpenCLIP bigG text encoder (open_clip names, fused qkv)

Used by the tiny-model builder and the benchmarks, and by the service's
in-place checkpoint swap (`inference_svc.weight_swap`), which plans from the
key-level functions (`*_key_to_ldm`) where each file tensor goes in a built
pipeline, once per architecture.
"""

from __future__ import annotations

from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TE1_PREFIX = "conditioner.embedders.0.transformer."
TE2_PREFIX = "conditioner.embedders.1.model."

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.",
    "conv_shortcut.": "skip_connection.",
}


def _unet_prefix_map(config: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, LDM prefix, is_resnet) for every block of the UNet."""
    lpb = config["layers_per_block"]
    n = len(config["block_out_channels"])
    out: list[tuple[str, str, bool]] = []
    for i in range(n):
        for j in range(lpb):
            idx = 1 + i * (lpb + 1) + j
            out.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{idx}.0.", True))
            out.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{idx}.1.", False))
        if i < n - 1:
            out.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (lpb + 1)}.0.op.", False))
    for i in range(n):
        has_attention = "CrossAttn" in config["up_block_types"][i]
        for j in range(lpb + 1):
            idx = i * (lpb + 1) + j
            out.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{idx}.0.", True))
            out.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{idx}.1.", False))
        if i < n - 1:
            idx = i * (lpb + 1) + lpb
            out.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{idx}.{2 if has_attention else 1}.", False))
    out.append(("mid_block.resnets.0.", "middle_block.0.", True))
    out.append(("mid_block.attentions.0.", "middle_block.1.", False))
    out.append(("mid_block.resnets.1.", "middle_block.2.", True))
    return out


def unet_key_to_ldm(key: str, prefix_map: list[tuple[str, str, bool]]) -> str:
    """One diffusers UNet parameter (or module) name -> its LDM name, without the UNet prefix."""
    for diffusers_prefix, ldm_prefix in _UNET_TOP.items():
        if key.startswith(diffusers_prefix):
            return ldm_prefix + key[len(diffusers_prefix) :]
    for diffusers_prefix, ldm_prefix, is_resnet in prefix_map:
        if key.startswith(diffusers_prefix):
            rest = key[len(diffusers_prefix) :]
            if is_resnet:
                for d, ldm in _UNET_RESNET.items():
                    if rest.startswith(d):
                        rest = ldm + rest[len(d) :]
                        break
            return ldm_prefix + rest
    raise KeyError(f"no LDM name for UNet key {key!r}")


def unet_to_ldm(state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    prefix_map = _unet_prefix_map(config)
    return {UNET_PREFIX + unet_key_to_ldm(k, prefix_map): v for k, v in state_dict.items()}


def _vae_attention(rest: str) -> str:
    for d, ldm in (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")):
        if rest.startswith(d):
            return ldm + rest[len(d) :]
    return rest


def vae_key_to_ldm(key: str, n_blocks: int) -> tuple[str, bool]:
    """One diffusers VAE key -> (its LDM name with the VAE prefix, whether LDM holds it as a 1x1 convolution)."""
    part, _, rest = key.partition(".")  # encoder / decoder / quant_conv / post_quant_conv
    new, conv = key, False
    if part in ("encoder", "decoder"):
        if rest.startswith("conv_norm_out."):
            new = f"{part}.norm_out.{rest[len('conv_norm_out.') :]}"
        elif rest.startswith(("down_blocks.", "up_blocks.")):
            kind, i, sub, j, tail = rest.split(".", 4)
            level = int(i) if kind == "down_blocks" else n_blocks - 1 - int(i)
            ldm_kind = "down" if kind == "down_blocks" else "up"
            if sub == "resnets":
                new = f"{part}.{ldm_kind}.{level}.block.{j}.{tail.replace('conv_shortcut', 'nin_shortcut')}"
            else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                new = f"{part}.{ldm_kind}.{level}.{'downsample' if kind == 'down_blocks' else 'upsample'}.{tail}"
        elif rest.startswith("mid_block.resnets."):
            _, _, j, tail = rest.split(".", 3)
            new = f"{part}.mid.block_{int(j) + 1}.{tail.replace('conv_shortcut', 'nin_shortcut')}"
        elif rest.startswith("mid_block.attentions.0."):
            tail = _vae_attention(rest[len("mid_block.attentions.0.") :])
            new = f"{part}.mid.attn_1.{tail}"
            # LDM's VAE attention uses 1x1 convolutions where diffusers uses linear layers.
            conv = tail.endswith(".weight") and not tail.startswith("norm.")
    return VAE_PREFIX + new, conv


def vae_to_ldm(state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    n = len(config["block_out_channels"])
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new, conv = vae_key_to_ldm(key, n)
        out[new] = value[:, :, None, None] if conv and value.ndim == 2 else value
    return out


def clip_key_to_ldm(key: str) -> str | None:
    """One CLIPTextModel (ViT-L) key -> its LDM name; None for what the file does not hold (position ids)."""
    if key.endswith("position_ids"):
        return None
    # transformers >= 5.6 flattened CLIPTextModel; the file keeps the classic `text_model.` names.
    return TE1_PREFIX + (key if key.startswith("text_model.") else "text_model." + key)


def clip_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModel (ViT-L): transformers names under `conditioner.embedders.0.transformer.text_model.`."""
    out = {}
    for key, value in state_dict.items():
        name = clip_key_to_ldm(key)
        if name is not None:
            out[name] = value
    return out


_OPEN_CLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_QKV = ("q_proj", "k_proj", "v_proj")


def open_clip_key_to_ldm(key: str) -> tuple[str, int | None, bool] | None:
    """One CLIPTextModelWithProjection (bigG) key -> (LDM name, which third of a fused q/k/v tensor it is
    or None, whether the file holds it transposed); None for what the file does not hold."""
    if key.endswith("position_ids"):
        return None
    if key in _OPEN_CLIP_TOP:
        return TE2_PREFIX + _OPEN_CLIP_TOP[key], None, False
    if key == "text_projection.weight":
        return TE2_PREFIX + "text_projection", None, True
    if key.startswith("text_model.encoder.layers."):
        layer, _, rest = key[len("text_model.encoder.layers.") :].partition(".")
        base = f"transformer.resblocks.{layer}."
        parts = rest.split(".")
        if parts[0] == "self_attn" and parts[1] in _QKV:
            return f"{TE2_PREFIX}{base}attn.in_proj_{parts[2]}", _QKV.index(parts[1]), False
        rest = (
            rest.replace("layer_norm1.", "ln_1.")
            .replace("layer_norm2.", "ln_2.")
            .replace("mlp.fc1.", "mlp.c_fc.")
            .replace("mlp.fc2.", "mlp.c_proj.")
            .replace("self_attn.out_proj.", "attn.out_proj.")
        )
        return TE2_PREFIX + base + rest, None, False
    raise KeyError(f"no LDM name for text encoder 2 key {key!r}")


def open_clip_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection (bigG) -> open_clip names with fused q/k/v and a [hidden, proj] projection."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in state_dict.items():
        mapped = open_clip_key_to_ldm(key)
        if mapped is None:
            continue
        name, third, transposed = mapped
        if third is not None:
            fused.setdefault(name, {})[third] = value
        else:
            out[name] = value.T.contiguous() if transposed else value
    for name, parts in fused.items():
        out[name] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    # open_clip checkpoints carry the (unused at inference) contrastive temperature.
    out[TE2_PREFIX + "logit_scale"] = torch.tensor(4.6052)
    return out


def pipeline_to_ldm(pipe: Any) -> dict[str, torch.Tensor]:
    """A StableDiffusionXLPipeline's weights as one LDM-layout state dict."""
    sd: dict[str, torch.Tensor] = {}
    sd.update(unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config)))
    sd.update(vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)))
    sd.update(clip_to_ldm(pipe.text_encoder.state_dict()))
    sd.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict()))
    return {k: v.detach().contiguous() for k, v in sd.items()}
