"""The shipped tokenizer and configs: what from_single_file would have downloaded."""

from __future__ import annotations

import json

import pytest
from transformers import CLIPTokenizer

from inference_svc.assets import (
    SDXL_CONFIG_DIR,
    EmbeddedConfigError,
    embedded_config_text,
    materialize_embedded_config,
)
from inference_svc.assets.sdxl_configs import CONFIG_FILES


@pytest.mark.parametrize("folder", ["tokenizer", "tokenizer_2"])
def test_shipped_tokenizer_tokenizes_like_clip(folder):
    tokenizer = CLIPTokenizer.from_pretrained(SDXL_CONFIG_DIR / folder)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.bos_token_id == 49406 and tokenizer.eos_token_id == 49407


def test_second_tokenizer_pads_with_exclamation_mark_like_openclip():
    first = CLIPTokenizer.from_pretrained(SDXL_CONFIG_DIR / "tokenizer")
    second = CLIPTokenizer.from_pretrained(SDXL_CONFIG_DIR / "tokenizer_2")
    assert first.pad_token_id == 49407
    assert second.pad_token_id == 0


def test_shipped_config_files_match_the_generator():
    for rel, data in CONFIG_FILES.items():
        assert json.loads((SDXL_CONFIG_DIR / rel).read_text()) == data, rel


def test_embedded_config_accepts_only_config_files(tmp_path):
    with pytest.raises(EmbeddedConfigError):
        embedded_config_text({"../../etc/passwd": "x"})
    with pytest.raises(EmbeddedConfigError):
        materialize_embedded_config(json.dumps({"model_index.json": "{}", "unet/model.py": "import os"}), tmp_path)
    folder = materialize_embedded_config(json.dumps({"model_index.json": "{}"}), tmp_path)
    assert (folder / "model_index.json").read_text() == "{}"
    # Same content, same folder: unpacked once.
    assert materialize_embedded_config(json.dumps({"model_index.json": "{}"}), tmp_path) == folder


def test_shipped_configs_build_sdxl_base_and_the_converter_writes_its_real_key_names():
    """On the meta device (no memory): SDXL base's known sizes, and LDM names diffusers reads back."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from inference_svc.assets.sdxl_configs import UNET, VAE
    from inference_svc.ldm_convert import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNET)
        vae = AutoencoderKL.from_config(VAE)
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(SDXL_CONFIG_DIR / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(SDXL_CONFIG_DIR / "text_encoder_2"))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, te1, te2)]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]  # SDXL base 1.0

    ldm = {
        **unet_to_ldm(unet.state_dict(), UNET),
        **vae_to_ldm(vae.state_dict(), VAE),
        **clip_to_ldm(te1.state_dict()),
        **open_clip_to_ldm(te2.state_dict()),
    }
    shapes = {k: tuple(v.shape) for k, v in ldm.items()}
    # Names and shapes as in the SDXL checkpoints CivitAI serves.
    assert shapes["model.diffusion_model.input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight"] == (1280, 2048)
    assert shapes["model.diffusion_model.output_blocks.2.2.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["model.diffusion_model.label_emb.0.0.weight"] == (1280, 2816)
    assert shapes["first_stage_model.encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert shapes["conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight"] == (768, 3072)
    assert shapes["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"] == (3840, 1280)
    assert shapes["conditioner.embedders.1.model.text_projection"] == (1280, 1280)
    assert sum(k.startswith("model.diffusion_model.") for k in ldm) == 1680
    # diffusers' own LDM -> diffusers conversion gives back exactly the modules' names.
    assert set(convert_ldm_unet_checkpoint(ldm, UNET)) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(ldm, VAE)) == set(vae.state_dict())
    # The header check's expected shapes, from the shipped configs, are SDXL base's.
    from inference_svc.checkpoint_shapes import _shipped_configs, expected_shapes

    expected = expected_shapes(_shipped_configs(str(SDXL_CONFIG_DIR)))
    assert len(expected) == 11
    assert {k: shape for k, (shape, _) in expected.items()} == {k: shapes[k] for k in expected}
