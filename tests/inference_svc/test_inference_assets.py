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
