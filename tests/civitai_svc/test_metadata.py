"""Mapping CivitAI JSON to CivitaiModelInfo, on the reference samples and on their quirky variants."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from civitai_svc import errors as E
from civitai_svc.metadata import build_info, choose_file, ensure_supported, file_info, recommended_weight
from modelmanager.v1 import model_pb2

FIXTURES = Path(__file__).parent / "fixtures"
CHECKPOINT = json.loads((FIXTURES / "model_checkpoint.json").read_text())
LORA_VERSION = json.loads((FIXTURES / "model_version_lora.json").read_text())


def test_checkpoint_model_maps_latest_version_and_primary_safetensor():
    info = build_info(CHECKPOINT, None)
    assert (info.model_id, info.version_id, info.name, info.version_name) == (456789, 1567890, "DreamForge XL", "v2.0")
    assert info.model_type == model_pb2.MODEL_TYPE_CHECKPOINT and info.supported
    assert info.civitai_type == "Checkpoint" and info.base_model == "SDXL 1.0"
    assert info.file.id == 1460012 and info.file.primary and info.file.format == "SafeTensor"
    assert info.file.sha256 == "3dc5fa1e6cad1c1ad86b119eaafcb3162bed6b88f50de79aa4c587ac2eade067"
    assert info.file.size_bytes == int(6775430.35 * 1024)
    assert [v.id for v in info.versions] == [1567890, 1203344]
    assert info.versions[0].published_at.seconds > info.versions[1].published_at.seconds
    assert info.tags == ["base model", "photorealistic", "portraits", "landscapes"]
    assert info.creator == "forgeworks"
    assert info.images[0].url.startswith("https://image.civitai.com/")
    assert info.civitai_url == "https://civitai.com/models/456789?modelVersionId=1567890"
    assert info.air == "urn:air:sdxl:checkpoint:civitai:456789@1567890"
    assert info.trigger_words == []  # trainedWords missing (removeEmpty)
    assert info.recommended_weight == 1.0


def test_older_version_is_chosen_by_id():
    info = build_info(CHECKPOINT, CHECKPOINT["modelVersions"][1])
    assert info.version_id == 1203344 and info.file.id == 1099871


def test_lora_version_never_picks_training_data_and_reads_weight():
    info = build_info(None, LORA_VERSION)
    assert (info.model_id, info.version_id) == (1234567, 2345678)
    assert info.name == "Soft Watercolor Style [Illustrious]"
    assert info.model_type == model_pb2.MODEL_TYPE_LORA
    assert info.file.id == 2210987 and info.file.type == "Model"
    assert info.trigger_words == ["wtrclr style", "watercolor"]
    assert info.recommended_weight == pytest.approx(0.7)
    assert info.air == "urn:air:sdxl:lora:civitai:1234567@2345678"
    assert len(info.files) == 2


def test_quirks_missing_keys_empty_hashes_null_description_unknown_values():
    model = copy.deepcopy(CHECKPOINT)
    model["description"] = None
    del model["creator"]
    del model["tags"]
    model["brandNewField"] = {"x": 1}
    version = model["modelVersions"][0]
    for f in version["files"]:
        f.pop("primary", None)
        f["hashes"] = {}
        f["metadata"] = {"format": "SafeTensor", "futureKey": 1}
    version["files"][1]["type"] = "Enhancement LoRA"  # a new file type
    del version["images"]
    version["baseModel"] = "Some Future Base 9"
    info = build_info(model, None)
    assert info.file.id == 1460012 and info.file.sha256 == ""
    assert info.description == "<p>Rebalanced skin tones; baked SDXL VAE.</p>"  # the version's, as a fallback
    assert info.creator == "" and list(info.tags) == [] and list(info.images) == []
    assert info.base_model == "Some Future Base 9"


def test_files_without_weights_give_no_choice():
    assert choose_file([file_info({"id": 1, "type": "Training Data", "name": "x.zip"})]) is None
    files = [file_info({"id": 1, "type": "Model", "name": "a.ckpt", "metadata": {"format": "PickleTensor"}, "primary": True}),
             file_info({"id": 2, "type": "Model", "name": "a.safetensors", "metadata": {"format": "SafeTensor"}})]
    assert choose_file(files).id == 2  # SafeTensor preferred over a pickle primary
    assert choose_file(files, file_id=1).id == 1


@pytest.mark.parametrize("civitai_type", ["LORA", "LoCon", "DoRA", "lora"])
def test_lora_family_installs_as_lora(civitai_type):
    version = {**LORA_VERSION, "model": {**LORA_VERSION["model"], "type": civitai_type}}
    info = build_info(None, version)
    assert info.model_type == model_pb2.MODEL_TYPE_LORA and info.supported
    ensure_supported(info)


# TextualInversion, VAE and Upscaler install since issue 14 (tests/civitai_svc/test_civitai_model_types.py).
@pytest.mark.parametrize("civitai_type", ["Hypernetwork", "Controlnet", "MotionModule", "Poses", "Wildcards",
                                          "Workflows", "AestheticGradient", "Other", "SomethingNew"])
def test_other_types_are_refused_naming_the_type(civitai_type):
    version = {**LORA_VERSION, "model": {**LORA_VERSION["model"], "type": civitai_type}}
    info = build_info(None, version)
    assert not info.supported and info.model_type == model_pb2.MODEL_TYPE_UNSPECIFIED
    with pytest.raises(E.UnsupportedModelType) as exc:
        ensure_supported(info)
    assert civitai_type in exc.value.message and "Checkpoint" in exc.value.message
    assert exc.value.metadata["civitai_type"] == civitai_type


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("<p>Recommended weight 0.6-0.8.</p>", 0.7),
        ("use strength: 0.75", 0.75),
        ("Weight 0.5 to 1.5", 1.0),
        ("trained for 10 epochs", None),
        ("weight 25", None),
        (None, None),
    ],
)
def test_recommended_weight_from_text(text, weight):
    assert recommended_weight(text) == (pytest.approx(weight) if weight is not None else None)


def test_archived_model_has_mode_and_no_file():
    model = copy.deepcopy(CHECKPOINT)
    model["mode"] = "Archived"
    for v in model["modelVersions"]:
        v.pop("files")
    info = build_info(model, None)
    assert info.mode == "Archived" and not info.file.id
