"""devtools.model_files writes what the real safetensors library reads, with the key sets the registry recognises."""

from __future__ import annotations

import pytest
from safetensors.numpy import load_file

from devtools import model_files
from metadata_svc.errors import InvalidSafetensors
from metadata_svc.inspection import inspect_file

EXPECTED = {  # kind -> (detected type, architecture, LoRA format)
    "lora": ("lora", "sdxl", "kohya"),
    "kohya-sd15": ("lora", "sd15", "kohya"),
    "peft": ("lora", "sdxl", "peft"),
    "loha": ("lora", "sdxl", "kohya"),
    "locon": ("lora", "sdxl", "kohya"),
    "checkpoint": ("checkpoint", "sdxl", ""),
    "sd15-checkpoint": ("checkpoint", "sd15", ""),
    "unknown": ("unknown", "unknown", ""),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_every_kind_loads_and_is_recognised(tmp_path, kind):
    path = model_files.write_safetensors(tmp_path / f"{kind}.safetensors", kind, 0, seed=1)
    tensors = load_file(str(path))
    assert set(tensors) == set(model_files.key_set(kind))
    for name, value in tensors.items():
        if not name.endswith(".alpha"):  # alpha is the rank
            assert (abs(value.astype("float32")) < 2).all()  # finite, weight-like values
    found = inspect_file(path)
    assert (found.detected_type, found.architecture, found.lora_format) == EXPECTED[kind]


def test_keys_and_metadata():
    lora = model_files.key_set("lora")
    assert {k.split(".", 1)[1] for k in lora} == {"lora_down.weight", "lora_up.weight", "alpha"}
    assert any(k.startswith("lora_te2_") for k in lora)
    assert any(k.endswith(".hada_w1_a") for k in model_files.key_set("loha"))
    assert any(len(spec.shape) == 4 for spec in model_files.key_set("locon").values())
    meta = model_files.default_metadata("locon")
    assert meta["ss_network_module"] == "lycoris.kohya"
    assert model_files.default_metadata("checkpoint")["modelspec.architecture"] == "stable-diffusion-xl-v1-base"


def test_payload_size_seed_and_metadata(tmp_path):
    data = model_files.make_safetensors("lora", 100_000, seed=3, metadata={"ss_output_name": "x"})
    path = tmp_path / "a.safetensors"
    path.write_bytes(data)
    assert 100_000 <= len(data) < 100_000 + 4096
    assert inspect_file(path).header_metadata == {"ss_output_name": "x"}
    assert data == model_files.make_safetensors("lora", 100_000, seed=3, metadata={"ss_output_name": "x"})
    assert data != model_files.make_safetensors("lora", 100_000, seed=4, metadata={"ss_output_name": "x"})
    assert load_file(str(path))["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha"] == 4.0
    written = model_files.write_safetensors(tmp_path / "b.safetensors", "lora", 100_000, seed=3,
                                            metadata={"ss_output_name": "x"})
    assert written.read_bytes() == data


@pytest.mark.parametrize("data", [
    model_files.truncated(model_files.make_safetensors("lora", 0)),
    model_files.bad_header_length_bytes(),
    model_files.non_json_header_bytes(),
    model_files.not_an_object_header_bytes(),
    model_files.too_short_bytes(),
])
def test_broken_files_are_invalid(tmp_path, data):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(data)
    with pytest.raises(InvalidSafetensors):
        inspect_file(path)
