"""Loading single-file and diffusers checkpoints offline, and the memory-bounded cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from inference_helpers import SIZE, copy_into, rewrite_checkpoint

from inference_svc.checkpoint_cache import CheckpointCache
from inference_svc.checkpoint_loader import CheckpointLoader, inspect_checkpoint
from inference_svc.device import resolve_device
from inference_svc.errors import CheckpointLoadFailed, CheckpointNotFound
from inference_svc.pipelines import GenerateParams, generate

PARAMS = GenerateParams("a photo of a cat", "", SIZE, SIZE, steps=2, guidance_scale=5.0, seed=7)


def run(pipe) -> np.ndarray:
    out = pipe(
        "a photo of a cat",
        width=SIZE,
        height=SIZE,
        num_inference_steps=2,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    )
    return out.images[0]


def image_of(entry) -> np.ndarray:
    return np.asarray(generate(entry, PARAMS, lambda s, t: None, lambda: False))


@pytest.fixture
def loader(tmp_path):
    return CheckpointLoader(resolve_device("cpu"), config_cache_dir=tmp_path / "configs")


def test_single_file_round_trip_matches_the_original_pipeline(tiny, reference_a, loader):
    pipe = loader.load(tiny.checkpoint_a)
    # Same weights, bit for bit, in every component...
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(reference_a, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    # ...and the same image for the same seed.
    np.testing.assert_array_equal(run(pipe), run(reference_a))
    assert pipe.unet.dtype == torch.float32


def test_single_file_buffers_and_dtypes_match_the_original_pipeline(tiny, reference_a, loader):
    # The loader skips random init (weights come from the file); buffers outside the state dict
    # (CLIP's position ids) must still hold their real values.
    pipe = loader.load(tiny.checkpoint_a)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        # The file is float16; the loader asks diffusers for no dtype on the CPU, still float32 throughout.
        assert {p.dtype for p in getattr(pipe, name).parameters()} == {torch.float32}, name
        ours, theirs = dict(getattr(pipe, name).named_buffers()), dict(getattr(reference_a, name).named_buffers())
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name


def test_diffusers_folder_loads_like_the_single_file(tiny, reference_a, loader):
    pipe = loader.load(tiny.diffusers_a)
    # Same weights; from_pretrained lays some tensors out differently, hence float noise only.
    np.testing.assert_allclose(run(pipe), run(reference_a), atol=1e-4)


def test_load_reports_progress(tiny, loader):
    stages = []
    loader.load(tiny.checkpoint_b, lambda stage, fraction: stages.append((stage, fraction)))
    assert stages[0] == ("reading", 0.0)
    assert stages[-1] == ("moving_to_device", 1.0)
    assert [f for _, f in stages] == sorted(f for _, f in stages)


def test_bad_checkpoints_get_clear_errors(tiny, loader, tmp_path):
    with pytest.raises(CheckpointLoadFailed, match=r"truncated|readable") as corrupt:
        loader.load(tiny.corrupt)
    assert corrupt.value.metadata["path"].endswith("corrupt.safetensors")
    with pytest.raises(CheckpointLoadFailed, match="a LoRA"):
        loader.load(tiny.lora_as_checkpoint)
    with pytest.raises(CheckpointLoadFailed, match=r"is an SD 1\.x/2\.x checkpoint, not SDXL") as sd15:
        loader.load(tiny.sd15)
    assert sd15.value.metadata["detail"] == "architecture"
    with pytest.raises(CheckpointNotFound):
        loader.load(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 100)
    with pytest.raises(CheckpointLoadFailed, match="readable"):
        inspect_checkpoint(garbage)
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"x")
    with pytest.raises(CheckpointLoadFailed, match=r"only \.safetensors"):
        loader.load(pickle)


def test_key_tensor_shapes_are_checked_from_the_header_naming_the_tensor(tiny, loader, tmp_path):
    with pytest.raises(CheckpointLoadFailed, match=r"input_blocks\.0\.0\.weight \(UNet input channels\) has shape "
                       r"\[32, 9, 3, 3\], its embedded config expects \[32, 4, 3, 3\]; .* inpainting") as inpainting:
        inspect_checkpoint(tiny.inpainting_shaped)
    assert inpainting.value.metadata["detail"] == "shape"
    assert inpainting.value.metadata["tensor"] == "model.diffusion_model.input_blocks.0.0.weight"

    def narrow_text_encoder_2(state):
        key = "conditioner.embedders.1.model.token_embedding.weight"
        state[key] = state[key][:, :40].clone()

    narrow = rewrite_checkpoint(tiny.checkpoint_a, tmp_path / "narrow.safetensors", narrow_text_encoder_2)
    with pytest.raises(CheckpointLoadFailed, match=r"token_embedding\.weight \(OpenCLIP-bigG text encoder width\)"):
        loader.load(narrow)
    # Without an embedded config, the shipped SDXL one is the reference: a tiny model is far off.
    bare = rewrite_checkpoint(tiny.checkpoint_a, tmp_path / "bare.safetensors", lambda state: None, metadata={})
    with pytest.raises(CheckpointLoadFailed, match=r"the SDXL config expects \[320, 4, 3, 3\]"):
        inspect_checkpoint(bare)


def test_a_misshapen_checkpoint_evicts_nothing(tiny, loader):
    probe = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    size = probe.acquire("a", tiny.checkpoint_a).entry.size_bytes
    # Room for one pipeline, nothing parked: the CPU default for SDXL-sized checkpoints.
    cache = CheckpointCache(loader, loader.device, device_budget=int(size * 1.5), park_budget=0)
    good = cache.acquire("a", tiny.checkpoint_a)
    image = image_of(good.entry)
    with pytest.raises(CheckpointLoadFailed, match="inpainting"):
        cache.acquire("inpainting", tiny.inpainting_shaped)
    again = cache.acquire("a", tiny.checkpoint_a)
    assert again.loaded_from == "device" and again.entry is good.entry
    np.testing.assert_array_equal(image_of(again.entry), image)


def test_cache_switches_a_b_a_and_reproduces_a(tiny, loader):
    cache = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    first = cache.acquire("a", tiny.checkpoint_a)
    image_a = image_of(first.entry)
    second = cache.acquire("b", tiny.checkpoint_b)
    image_b = image_of(second.entry)
    again = cache.acquire("a", tiny.checkpoint_a)
    assert (first.loaded_from, second.loaded_from, again.loaded_from) == ("disk", "disk", "device")
    assert again.entry is first.entry
    assert not np.array_equal(image_a, image_b)
    np.testing.assert_array_equal(image_of(again.entry), image_a)
    assert cache.current is first.entry


def test_cache_budget_evicts_least_recently_used(tiny, loader):
    probe = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    size = probe.acquire("a", tiny.checkpoint_a).entry.size_bytes
    cache = CheckpointCache(loader, loader.device, device_budget=int(size * 1.5), park_budget=0)
    cache.acquire("a", tiny.checkpoint_a)
    cache.acquire("b", tiny.checkpoint_b)
    assert [e.name for e in cache.snapshot()] == ["b"]
    # A bad file is refused before anything is evicted for it.
    with pytest.raises(CheckpointLoadFailed):
        cache.acquire("corrupt", tiny.corrupt)
    assert [e.name for e in cache.snapshot()] == ["b"]
    assert cache.acquire("a", tiny.checkpoint_a).loaded_from == "disk"
    # The estimate from the header is what the pipeline really holds.
    assert loader.estimate_bytes(tiny.checkpoint_a) == pytest.approx(size, rel=0.01)
    assert loader.estimate_bytes(tiny.diffusers_a) == pytest.approx(size, rel=0.01)


def test_cache_parks_evicted_pipelines_in_host_memory(tiny, loader):
    probe = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    size = probe.acquire("a", tiny.checkpoint_a).entry.size_bytes
    # One on the "device", one parked: the parking logic is device-independent.
    cache = CheckpointCache(loader, loader.device, device_budget=int(size * 1.5), park_budget=int(size * 1.5))
    first = cache.acquire("a", tiny.checkpoint_a)
    image_a = image_of(first.entry)
    cache.acquire("b", tiny.checkpoint_b)
    assert {e.name: e.location for e in cache.snapshot()} == {"a": "cpu", "b": "device"}
    back = cache.acquire("a", tiny.checkpoint_a)
    assert back.loaded_from == "cpu" and back.entry is first.entry
    assert {e.name: e.location for e in cache.snapshot()} == {"a": "device", "b": "cpu"}
    np.testing.assert_array_equal(image_of(back.entry), image_a)


def test_failed_load_leaves_the_previous_checkpoint_working(tiny, loader):
    cache = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    good = cache.acquire("a", tiny.checkpoint_a)
    image = image_of(good.entry)
    with pytest.raises(CheckpointLoadFailed):
        cache.acquire("corrupt", tiny.corrupt)
    again = cache.acquire("a", tiny.checkpoint_a)
    assert again.loaded_from == "device"
    np.testing.assert_array_equal(image_of(again.entry), image)


def one_pipeline_cache(tiny, loader, **kwargs) -> CheckpointCache:
    """Room for one tiny pipeline, nothing parked: what the CPU default is for SDXL-sized checkpoints."""
    size = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0).acquire(
        "probe", tiny.checkpoint_b).entry.size_bytes
    return CheckpointCache(loader, loader.device, device_budget=int(size * 1.5), park_budget=0, **kwargs)


def test_a_load_that_fails_in_diffusers_keeps_the_previous_pipeline_when_memory_allows(tiny, loader):
    cache = one_pipeline_cache(tiny, loader)
    good = cache.acquire("a", tiny.checkpoint_a)
    image = image_of(good.entry)
    with pytest.raises(CheckpointLoadFailed, match="could not be loaded") as failure:
        cache.acquire("misshapen", tiny.misshapen_resnet)  # passes the header check
    assert failure.value.metadata["detail"] == "load"
    again = cache.acquire("a", tiny.checkpoint_a)
    assert again.loaded_from == "device" and again.entry is good.entry and cache.loads == 1
    np.testing.assert_array_equal(image_of(again.entry), image)
    # A load that succeeds still evicts it: the budget holds one.
    cache.acquire("b", tiny.checkpoint_b)
    assert [e.name for e in cache.snapshot()] == ["b"]


def test_a_load_that_fails_in_diffusers_reloads_the_previous_pipeline_when_memory_is_short(tiny, loader):
    cache = one_pipeline_cache(tiny, loader, free_bytes=lambda: 0)
    image = image_of(cache.acquire("a", tiny.checkpoint_a).entry)
    with pytest.raises(CheckpointLoadFailed, match="could not be loaded"):
        cache.acquire("misshapen", tiny.misshapen_resnet)
    # "a" had to go before the load; it is back, loaded again once.
    assert [e.name for e in cache.snapshot()] == ["a"] and cache.current.name == "a" and cache.loads == 2
    again = cache.acquire("a", tiny.checkpoint_a)
    assert again.loaded_from == "device"
    np.testing.assert_array_equal(image_of(again.entry), image)


def test_v_prediction_checkpoints_get_a_v_prediction_scheduler(loader, tmp_path):
    from devtools.tiny_models import write_tiny_checkpoint

    pipe = loader.load(write_tiny_checkpoint(tmp_path / "vpred.safetensors", seed=1, v_prediction=True))
    config = pipe.scheduler.config
    assert config.prediction_type == "v_prediction"
    assert config.rescale_betas_zero_snr and config.timestep_spacing == "trailing"
    assert run(pipe).shape == (SIZE, SIZE, 3)


def test_ordinary_checkpoints_keep_epsilon_prediction(tiny, loader):
    assert loader.load(tiny.checkpoint_a).scheduler.config.prediction_type == "epsilon"


def test_pipelines_share_tokenizers_but_not_schedulers(tiny, loader):
    a, b = loader.load(tiny.checkpoint_a), loader.load(tiny.checkpoint_b)
    # Read once per config folder (tiny-a and tiny-b embed the same configs)...
    assert a.tokenizer is b.tokenizer and a.tokenizer_2 is b.tokenizer_2
    # ...while a scheduler keeps the state of a run (set_timesteps): one each.
    assert a.scheduler is not b.scheduler
    a.scheduler.set_timesteps(3)
    assert len(b.scheduler.timesteps) == b.scheduler.config.num_train_timesteps


def test_shared_tokenizers_tokenize_like_freshly_read_ones(tiny, loader):
    from transformers import CLIPTokenizer

    pipe = loader.load(tiny.checkpoint_a)
    config = loader.config_dir_for(inspect_checkpoint(tiny.checkpoint_a))
    prompt = "a photo of a cat, masterpiece!! " * 20  # over 77 tokens
    for name in ("tokenizer", "tokenizer_2"):
        fresh = CLIPTokenizer.from_pretrained(config, subfolder=name, local_files_only=True)
        # Calls with other settings in between leave nothing behind in the shared one.
        for kwargs in ({}, {"padding": "max_length", "max_length": 77, "truncation": True}, {}):
            assert getattr(pipe, name)(prompt, **kwargs).input_ids == fresh(prompt, **kwargs).input_ids, name


def test_a_replaced_file_is_inspected_again(tiny, loader, tmp_path):
    path = copy_into(tiny.checkpoint_a, tmp_path / "models")
    assert loader.estimate_bytes(path) > 0  # the loader remembers this inspection...
    shutil.copy(tiny.lora_as_checkpoint, path)
    with pytest.raises(CheckpointLoadFailed, match="a LoRA"):  # ...only while the file is the same
        loader.load(path)
