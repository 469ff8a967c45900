"""Checkpoint switches in place (weights into an evicted pipeline's modules) and merged LoRA sets."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from inference_helpers import SIZE, copy_into, rewrite_checkpoint

from devtools.tiny_models import write_tiny_checkpoint
from inference_svc.checkpoint_cache import CheckpointCache
from inference_svc.checkpoint_loader import CheckpointLoader, read_header
from inference_svc.component_digests import compute_digests
from inference_svc.device import resolve_device
from inference_svc.errors import CheckpointLoadFailed
from inference_svc.lora_manager import LoraManager, LoraSpec

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def run(pipe) -> np.ndarray:
    with torch.inference_mode():
        return pipe("a photo of a cat", width=SIZE, height=SIZE, num_inference_steps=2, guidance_scale=5.0,
                    generator=torch.Generator().manual_seed(7), output_type="np").images[0]


def weights(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v.detach().clone() for c in COMPONENTS for k, v in getattr(pipe, c).state_dict().items()}


def base_weights(pipe) -> dict[str, torch.Tensor]:
    """weights() with LoRA adapters injected: PEFT's wrappers hold a layer's own weights as base_layer."""
    return {k.replace(".base_layer", ""): v for k, v in weights(pipe).items() if ".lora_" not in k}


def assert_same_weights(pipe, reference) -> None:
    ours, theirs = weights(pipe), weights(reference)
    assert ours.keys() == theirs.keys()
    different = [k for k in theirs if not torch.equal(ours[k], theirs[k])]
    assert different == []


def unet_bytes(path) -> int:
    tensors = read_header(path)[0]
    return sum(t["data_offsets"][1] - t["data_offsets"][0] for k, t in tensors.items()
               if k.startswith("model.diffusion_model."))


@pytest.fixture
def loader(tmp_path):
    return CheckpointLoader(resolve_device("cpu"), config_cache_dir=tmp_path / "configs")


@pytest.fixture
def one_pipeline(tiny, loader):
    """A cache with room for one tiny pipeline and nothing parked (the CPU default for SDXL sizes)."""
    size = loader.estimate_bytes(tiny.checkpoint_a)
    return CheckpointCache(loader, loader.device, device_budget=int(size * 1.5), park_budget=0)


@pytest.fixture(scope="module")
def shared_te_vae(tiny, tmp_path_factory):
    """Checkpoint a with another UNet: the same text encoders and VAE, byte for byte (a typical fine-tune)."""
    def negate_unet(state):
        for key in state:
            if key.startswith("model.diffusion_model."):
                state[key] = -state[key]

    return rewrite_checkpoint(tiny.checkpoint_a, tmp_path_factory.mktemp("shared") / "tiny-a-unet.safetensors",
                              negate_unet)


def test_in_place_swap_gives_the_from_single_file_pipeline(tiny, loader, one_pipeline):
    first = one_pipeline.acquire("a", tiny.checkpoint_a)
    pipe = first.entry.pipe
    image_a = run(pipe)
    second = one_pipeline.acquire("b", tiny.checkpoint_b)
    assert second.in_place and second.entry.pipe is pipe and one_pipeline.loads == 1 and one_pipeline.swaps == 1
    # Every tensor once, but open_clip's unused temperature.
    assert second.bytes_read == sum(t["data_offsets"][1] - t["data_offsets"][0]
                                    for k, t in read_header(tiny.checkpoint_b)[0].items() if not k.endswith("logit_scale"))
    fresh = loader.load(tiny.checkpoint_b)
    assert_same_weights(pipe, fresh)
    assert dict(pipe.scheduler.config) == dict(fresh.scheduler.config)
    np.testing.assert_allclose(run(pipe), run(fresh), atol=1e-6)
    assert [e.name for e in one_pipeline.snapshot()] == ["b"]
    back = one_pipeline.acquire("a", tiny.checkpoint_a)
    assert back.in_place and back.loaded_from == "disk"
    np.testing.assert_allclose(run(back.entry.pipe), image_a, atol=1e-6)


def test_v_prediction_file_swapped_in_gets_its_scheduler(tiny, loader, one_pipeline, tmp_path):
    one_pipeline.acquire("a", tiny.checkpoint_a)
    vpred = write_tiny_checkpoint(tmp_path / "vpred.safetensors", seed=3, v_prediction=True)
    swapped = one_pipeline.acquire("v", vpred)
    assert swapped.in_place
    assert dict(swapped.entry.pipe.scheduler.config) == dict(loader.load(vpred).scheduler.config)
    assert swapped.entry.scheduler_config["prediction_type"] == "v_prediction"
    assert one_pipeline.acquire("a", tiny.checkpoint_a).entry.scheduler_config["prediction_type"] == "epsilon"


def test_other_shapes_fall_back_to_a_fresh_build(tiny, loader, one_pipeline, tmp_path):
    one_pipeline.acquire("a", tiny.checkpoint_a)
    wide = write_tiny_checkpoint(tmp_path / "wide.safetensors", seed=1, variant="wide")
    acquired = one_pipeline.acquire("wide", wide)
    assert not acquired.in_place and one_pipeline.loads == 2 and one_pipeline.swaps == 0
    np.testing.assert_allclose(run(acquired.entry.pipe), run(loader.load(wide)), atol=1e-6)


def test_a_tensor_misshapen_deep_inside_is_found_before_anything_is_copied(tiny, one_pipeline):
    good = one_pipeline.acquire("a", tiny.checkpoint_a)
    before = weights(good.entry.pipe)
    image = run(good.entry.pipe)
    # Passes the header's key-tensor check; the swap plan finds it, the fresh build then fails as before.
    with pytest.raises(CheckpointLoadFailed, match="could not be loaded"):
        one_pipeline.acquire("misshapen", tiny.misshapen_resnet)
    again = one_pipeline.acquire("a", tiny.checkpoint_a)
    assert again.loaded_from == "device" and again.entry is good.entry and one_pipeline.swaps == 0
    assert all(torch.equal(before[k], v) for k, v in weights(again.entry.pipe).items())
    np.testing.assert_array_equal(run(again.entry.pipe), image)


def test_a_failure_mid_swap_leaves_the_cache_serving_correct_images(tiny, one_pipeline, tmp_path):
    good = one_pipeline.acquire("a", tiny.checkpoint_a)
    image = run(good.entry.pipe)
    victim = copy_into(tiny.checkpoint_b, tmp_path / "downloads")
    size = victim.stat().st_size
    truncated = []

    def truncate_while_reading(stage, fraction):
        # The file loses its second half after the swap has begun copying (a download rewriting it).
        if stage == "reading" and fraction > 0 and not truncated:
            os.truncate(victim, size // 2)
            truncated.append(fraction)

    with pytest.raises(CheckpointLoadFailed, match="truncated") as failure:
        one_pipeline.acquire("b", victim, truncate_while_reading)
    assert truncated and failure.value.metadata["detail"] == "truncated"
    # The half-swapped pipeline got its own file back before anyone could use it.
    assert [e.name for e in one_pipeline.snapshot()] == ["a"] and one_pipeline.current.name == "a"
    again = one_pipeline.acquire("a", tiny.checkpoint_a)
    assert again.loaded_from == "device" and one_pipeline.loads == 1
    np.testing.assert_array_equal(run(again.entry.pipe), image)


def test_a_failure_mid_swap_whose_donor_cannot_come_back_drops_it_and_reloads(tiny, one_pipeline, tmp_path):
    own = copy_into(tiny.checkpoint_a, tmp_path / "mine")
    one_pipeline.acquire("a", own)
    victim = copy_into(tiny.checkpoint_b, tmp_path / "downloads")

    def replace_both(stage, fraction):
        if stage == "reading" and fraction > 0 and victim.stat().st_size > 100:
            os.truncate(victim, 100)
            # The resident one's file is replaced too: swapping it back would serve the wrong weights.
            write_tiny_checkpoint(own, seed=4)

    with pytest.raises(CheckpointLoadFailed):
        one_pipeline.acquire("b", victim, replace_both)
    # Dropped, and "a" loaded again from what its file holds now.
    assert [e.name for e in one_pipeline.snapshot()] == ["a"] and one_pipeline.loads == 2
    current = one_pipeline.acquire("a", own)
    assert current.loaded_from == "device"
    np.testing.assert_allclose(run(current.entry.pipe), run(one_pipeline.loader.load(own)), atol=1e-6)


def test_digests_are_per_component(tiny, shared_te_vae, tmp_path):
    a, shared = compute_digests(tiny.checkpoint_a), compute_digests(shared_te_vae)
    assert set(a) == set(COMPONENTS)
    assert {c for c in COMPONENTS if a[c] == shared[c]} == {"vae", "text_encoder", "text_encoder_2"}
    assert compute_digests(copy_into(tiny.checkpoint_a, tmp_path / "copy")) == a


def test_a_switch_between_shared_components_reads_only_the_unet(tiny, loader, one_pipeline, shared_te_vae):
    one_pipeline.acquire("a", tiny.checkpoint_a)
    # Digests are computed once per file, after its first load (or here, ahead).
    assert one_pipeline.digests.wait(tiny.checkpoint_a) and one_pipeline.digests.wait(shared_te_vae)
    swapped = one_pipeline.acquire("fine-tune", shared_te_vae)
    assert swapped.in_place and swapped.bytes_read == unet_bytes(shared_te_vae)
    assert_same_weights(swapped.entry.pipe, loader.load(shared_te_vae))
    back = one_pipeline.acquire("a", tiny.checkpoint_a)
    assert back.in_place and back.bytes_read == unet_bytes(tiny.checkpoint_a)
    assert_same_weights(back.entry.pipe, loader.load(tiny.checkpoint_a))


def test_a_merged_lora_is_undone_before_a_swap_that_keeps_the_text_encoders(tiny, loader, one_pipeline,
                                                                            shared_te_vae):
    entry = one_pipeline.acquire("a", tiny.checkpoint_a).entry
    one_pipeline.digests.wait(tiny.checkpoint_a)
    one_pipeline.digests.wait(shared_te_vae)
    manager = LoraManager(merge_min_steps=1)
    manager.apply(entry, [LoraSpec("kohya", tiny.lora_kohya, 1.0)], steps=2)
    assert manager.merges == 1  # the kohya LoRA changes the text encoders' weights too
    swapped = one_pipeline.acquire("fine-tune", shared_te_vae)
    assert swapped.bytes_read == unet_bytes(shared_te_vae) and swapped.entry.adapters == {}
    assert_same_weights(swapped.entry.pipe, loader.load(shared_te_vae))
    # LoRAs load again on the swapped-in pipeline.
    manager.apply(swapped.entry, [LoraSpec("kohya", tiny.lora_kohya, 1.0)], steps=2)
    assert list(swapped.entry.adapters) == [str(tiny.lora_kohya)]


@pytest.fixture
def entry(tiny, loader):
    cache = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    return cache.acquire("a", tiny.checkpoint_a).entry


def two_loras(tiny, weight: float = 0.8) -> list[LoraSpec]:
    return [LoraSpec("kohya", tiny.lora_kohya, weight), LoraSpec("peft", tiny.lora_peft, 0.5)]


def test_merged_and_unmerged_sets_give_the_same_image(tiny, entry):
    bare = run(entry.pipe)
    unmerged = LoraManager(merge_min_steps=10**6)
    unmerged.apply(entry, two_loras(tiny), steps=2)
    assert unmerged.merges == 0
    image_unmerged = run(entry.pipe)
    merged = LoraManager(merge_min_steps=1)
    merged.apply(entry, two_loras(tiny), steps=2)
    assert merged.merges == 1 and entry.merged_loras.merged
    image_merged = run(entry.pipe)
    assert np.abs(image_unmerged - bare).mean() > 0.01  # the set does something...
    np.testing.assert_allclose(image_merged, image_unmerged, atol=2e-3)  # ...the same both ways


def test_a_repeating_set_stays_merged_and_costs_nothing(tiny, entry):
    manager = LoraManager(merge_min_steps=1)
    assert manager.apply(entry, two_loras(tiny), steps=30) is True
    image = run(entry.pipe)
    assert manager.apply(entry, two_loras(tiny), steps=30) is False
    assert manager.merges == 1
    np.testing.assert_array_equal(run(entry.pipe), image)
    # A short job with the same set runs it unmerged; a long one merges it again, bit for bit.
    manager.apply(entry, two_loras(tiny), steps=0)
    assert not entry.merged_loras.merged
    manager.apply(entry, two_loras(tiny), steps=30)
    assert manager.merges == 2
    np.testing.assert_array_equal(run(entry.pipe), image)


def test_restoring_after_merges_is_bitwise_the_pristine_model(tiny, entry):
    pristine = weights(entry.pipe)
    bare = run(entry.pipe)
    manager = LoraManager(merge_min_steps=1)
    for weight in (1.0, 0.3, -0.7):  # many sets merged and undone: nothing drifts
        manager.apply(entry, two_loras(tiny, weight), steps=30)
        changed = base_weights(entry.pipe)
        assert changed.keys() == pristine.keys()
        assert any(not torch.equal(changed[k], pristine[k]) for k in pristine)
    manager.apply(entry, [], steps=30)
    assert not entry.merged_loras.merged
    now = base_weights(entry.pipe)
    assert now.keys() == pristine.keys()
    assert all(torch.equal(now[k], pristine[k]) for k in pristine)
    np.testing.assert_array_equal(run(entry.pipe), bare)


def test_weight_zero_merged_is_the_bare_model(tiny, entry):
    bare = run(entry.pipe)
    manager = LoraManager(merge_min_steps=1)
    manager.apply(entry, [LoraSpec("kohya", tiny.lora_kohya, 0.0)], steps=30)
    np.testing.assert_array_equal(run(entry.pipe), bare)


def test_the_swap_plan_checks_every_tensor_not_only_the_key_ones(tiny, loader, tmp_path):
    pipe = loader.load(tiny.checkpoint_a)
    architecture = loader.architecture(tiny.checkpoint_a)
    assert loader.prepare_swap(pipe, architecture, tiny.checkpoint_b) is not None
    assert loader.prepare_swap(pipe, architecture, tiny.misshapen_resnet) is None

    def drop_a_vae_tensor(state):
        del state["first_stage_model.decoder.conv_out.bias"]

    missing = rewrite_checkpoint(tiny.checkpoint_a, tmp_path / "missing.safetensors", drop_a_vae_tensor)
    assert loader.prepare_swap(pipe, architecture, missing) is None
