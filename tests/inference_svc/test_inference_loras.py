"""LoRAs on a cached pipeline: kohya and PEFT formats, weights, bare model, incompatible files."""

from __future__ import annotations

import numpy as np
import pytest
from inference_helpers import SIZE

from inference_svc.checkpoint_cache import CheckpointCache
from inference_svc.checkpoint_loader import CheckpointLoader
from inference_svc.device import resolve_device
from inference_svc.errors import LoraIncompatible, LoraNotFound
from inference_svc.lora_manager import LoraManager, LoraSpec
from inference_svc.pipelines import GenerateParams, generate

PARAMS = GenerateParams("a photo of a cat", "", SIZE, SIZE, steps=2, guidance_scale=5.0, seed=7)


@pytest.fixture
def entry(tiny, tmp_path):
    loader = CheckpointLoader(resolve_device("cpu"), config_cache_dir=tmp_path / "configs")
    cache = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    return cache.acquire("a", tiny.checkpoint_a).entry


def image(entry) -> np.ndarray:
    return np.asarray(generate(entry, PARAMS, lambda s, t: None, lambda: False)).astype(int)


def spec(path, weight: float) -> LoraSpec:
    return LoraSpec(path.name, path, weight)


def test_kohya_lora_changes_output_and_weight_zero_is_the_bare_model(tiny, entry):
    manager = LoraManager()
    bare = image(entry)
    assert manager.apply(entry, [spec(tiny.lora_kohya, 1.0)]) is True
    with_lora = image(entry)
    assert np.abs(with_lora - bare).mean() > 1.0
    # Changing the weight does not load the file again.
    assert manager.apply(entry, [spec(tiny.lora_kohya, 0.0)]) is False
    np.testing.assert_array_equal(image(entry), bare)
    assert manager.apply(entry, [spec(tiny.lora_kohya, 1.0)]) is False
    np.testing.assert_array_equal(image(entry), with_lora)
    # No LoRAs: the bare model, adapters stay loaded for the next request.
    manager.apply(entry, [])
    np.testing.assert_array_equal(image(entry), bare)
    assert list(entry.adapters) == [str(tiny.lora_kohya)]


def test_text_encoder_layers_of_a_kohya_lora_are_loaded(tiny, entry):
    LoraManager().apply(entry, [spec(tiny.lora_kohya, 1.0)])
    adapters = entry.pipe.get_list_adapters()
    assert set(adapters) == {"unet", "text_encoder", "text_encoder_2"}


def test_peft_lora_and_two_loras_together(tiny, entry):
    manager = LoraManager()
    bare = image(entry)
    manager.apply(entry, [spec(tiny.lora_peft, 1.0)])
    peft_only = image(entry)
    assert np.abs(peft_only - bare).mean() > 1.0
    manager.apply(entry, [spec(tiny.lora_peft, 1.0), spec(tiny.lora_kohya, 0.5)])
    both = image(entry)
    assert np.abs(both - peft_only).mean() > 0.5
    assert len(entry.adapters) == 2


def test_incompatible_lora_names_the_file_and_leaves_the_pipeline_working(tiny, entry):
    manager = LoraManager()
    manager.apply(entry, [spec(tiny.lora_kohya, 1.0)])
    with_lora = image(entry)
    with pytest.raises(LoraIncompatible) as failure:
        manager.apply(entry, [spec(tiny.lora_incompatible, 1.0)])
    assert "incompatible.safetensors" in failure.value.message
    assert failure.value.metadata["lora"] == "incompatible.safetensors"
    assert all("incompatible" not in key for key in entry.adapters)
    manager.apply(entry, [spec(tiny.lora_kohya, 1.0)])
    np.testing.assert_array_equal(image(entry), with_lora)


def test_missing_lora_file(tiny, entry, tmp_path):
    with pytest.raises(LoraNotFound):
        LoraManager().apply(entry, [spec(tmp_path / "gone.safetensors", 1.0)])


def test_adapter_count_is_bounded(tiny, entry, tmp_path):
    from devtools.tiny_models import write_tiny_lora

    manager = LoraManager(max_adapters=2)
    paths = [write_tiny_lora(tmp_path / f"l{i}.safetensors", seed=i) for i in range(3)]
    for path in paths:
        manager.apply(entry, [spec(path, 1.0)])
    assert list(entry.adapters) == [str(paths[1]), str(paths[2])]
