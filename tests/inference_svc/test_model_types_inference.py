"""Embeddings, VAEs and upscaler models through the wire (issue 14): a real registry indexes the tiny files,
the inference service uses them in Generate and Upscale."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import field_mask_pb2
from inference_helpers import SIZE
from model_types_stack import collect, expect_error, pixels, png_of, result_of, stages, start_stack
from test_inference_outputs import parse_infotext, text_chunks

from devtools.tiny_models import write_tiny_embedding, write_tiny_esrgan, write_tiny_vae
from modelmanager.v1 import inference_pb2, model_pb2, registry_pb2

CKPT, EMB, VAE, UPS = (model_pb2.MODEL_TYPE_CHECKPOINT, model_pb2.MODEL_TYPE_EMBEDDING, model_pb2.MODEL_TYPE_VAE,
                       model_pb2.MODEL_TYPE_UPSCALER)


@pytest.fixture
async def stack(volumes, channel_factory, tmp_path):
    stack, servers = await start_stack(volumes, channel_factory, tmp_path)
    yield stack
    for server in servers:
        await server.stop(0)


def generate(**fields) -> inference_pb2.GenerateRequest:
    defaults = {"prompt": "a photo of a cat", "width": SIZE, "height": SIZE, "steps": 2, "guidance_scale": 5.0,
                "seed": 7}
    return inference_pb2.GenerateRequest(**{**defaults, **fields})


async def image_of(stack, request) -> tuple[np.ndarray, inference_pb2.ImageResult]:
    result = result_of(await collect(stack.inference.Generate(request)))
    return pixels(result.png), result


async def test_an_embedding_changes_the_output_only_when_its_token_is_in_a_prompt(stack, tiny, tmp_path):
    await stack.add(tiny.checkpoint_a, CKPT, activate=True)
    plain, _ = await image_of(stack, generate())
    # Before the embedding exists, its token is plain text.
    as_words, _ = await image_of(stack, generate(prompt="a photo of a cat tinyneg"))
    as_negative_words, _ = await image_of(stack, generate(negative_prompt="tinyneg"))

    await stack.add(write_tiny_embedding(tmp_path / "tinyneg.safetensors", seed=1), EMB)
    used, result = await image_of(stack, generate(prompt="a photo of a cat tinyneg"))
    assert list(result.embeddings) == ["tinyneg.safetensors"]
    assert np.abs(used - as_words).mean() > 0.5
    negative, result = await image_of(stack, generate(negative_prompt="tinyneg"))
    assert list(result.embeddings) == ["tinyneg.safetensors"]
    assert np.abs(negative - as_negative_words).mean() > 0.5
    # Without the token: exactly as before the embedding existed, also after jobs that used it.
    again, result = await image_of(stack, generate())
    assert list(result.embeddings) == [] and np.array_equal(again, plain)
    # A word that only contains the token is not the token.
    _, result = await image_of(stack, generate(prompt="a photo of a cat tinynegative"))
    assert list(result.embeddings) == []
    # Vectors are held per checkpoint: the status lists the embedding on the pipeline that used it.
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert [list(c.embeddings) for c in status.checkpoints] == [["tinyneg.safetensors"]]
    # The same job again gives the same image: the vectors are read once, the tokenizers stay the pipeline's.
    repeat, _ = await image_of(stack, generate(prompt="a photo of a cat tinyneg"))
    assert np.array_equal(repeat, used)


async def test_an_embedding_of_other_widths_is_refused_for_this_checkpoint(stack, tiny, tmp_path):
    await stack.add(tiny.checkpoint_a, CKPT, activate=True)
    wide = write_tiny_embedding(tmp_path / "widetok.safetensors", variant="wide")
    await stack.add(wide, EMB)
    await expect_error(collect(stack.inference.Generate(generate(prompt="a cat widetok"))),
                       grpc.StatusCode.FAILED_PRECONDITION, "EMBEDDING_INCOMPATIBLE")
    plain, _ = await image_of(stack, generate(prompt="a cat"))  # the pipeline still serves
    assert plain.shape == (SIZE, SIZE, 3)


async def test_a_vae_choice_changes_the_decode_and_the_pipeline_gets_its_own_back(stack, tiny, tmp_path):
    name = await stack.add(tiny.checkpoint_a, CKPT, activate=True)
    own, result = await image_of(stack, generate())
    assert result.vae == ""
    other = await stack.add(write_tiny_vae(tmp_path / "other-vae.safetensors", seed=5), VAE)
    decoded, result = await image_of(stack, generate(vae=other))
    assert result.vae == other and np.abs(decoded - own).mean() > 1.0
    # The saved output and its infotext say which VAE decoded it, as A1111 writes it.
    assert parse_infotext(text_chunks(result.png)["parameters"])["VAE"] == other
    again, _ = await image_of(stack, generate())
    assert np.array_equal(again, own)  # restored after the job
    # A VAE file holding the checkpoint's own VAE (first_stage_model. naming) decodes the same image.
    same = await stack.add(write_tiny_vae(tmp_path / "same-vae.safetensors", seed=1, prefix="first_stage_model."),
                           VAE)
    same_image, _ = await image_of(stack, generate(vae=same))
    assert np.array_equal(same_image, own)
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert set(status.vaes) == {other, same}
    # The checkpoint's default VAE (kept by the registry) applies when a request names none.
    await stack.registry.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename=name, default_vae=other),
        update_mask=field_mask_pb2.FieldMask(paths=["default_vae"])))
    defaulted, result = await image_of(stack, generate())
    assert result.vae == other and np.array_equal(defaulted, decoded)
    await expect_error(collect(stack.inference.Generate(generate(vae="no-such-vae.safetensors"))),
                       grpc.StatusCode.NOT_FOUND, "VAE_NOT_FOUND")


def gradient(size: int = 32) -> bytes:
    ramp = np.linspace(0, 255, size)
    return png_of(np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                            np.full((size, size), 128.0)], axis=-1))


async def test_the_upscaler_stage_runs_and_lanczos_when_none_is_chosen(stack, tiny, tmp_path):
    await stack.add(tiny.checkpoint_a, CKPT, activate=True)
    request = inference_pb2.UpscaleRequest(image=gradient(), scale_factor=2.0, steps=2, strength=0.5, seed=3,
                                           tile_size=64)
    lanczos_events = await collect(stack.inference.Upscale(request))
    assert "enlarging" not in stages(lanczos_events)
    lanczos = result_of(lanczos_events)
    assert lanczos.upscaler == ""
    model = await stack.add(write_tiny_esrgan(tmp_path / "tiny-2x.safetensors"), UPS)
    events = await collect(stack.inference.Upscale(inference_pb2.UpscaleRequest(
        image=gradient(), scale_factor=2.0, steps=2, strength=0.5, seed=3, tile_size=64, upscaler=model)))
    assert "enlarging" in stages(events)
    result = result_of(events)
    assert (result.width, result.height, result.upscaler) == (64, 64, model)
    assert np.abs(pixels(result.png) - pixels(lanczos.png)).mean() > 1.0
    # A pickle (.pth, as many upscalers ship) goes through the weights-only unpickler; 4x from a 2x model: twice.
    pickled = await stack.add(write_tiny_esrgan(tmp_path / "tiny-rrdb.pth", arch="rrdb"), UPS)
    events = await collect(stack.inference.Upscale(inference_pb2.UpscaleRequest(
        image=gradient(), scale_factor=4.0, steps=2, strength=0.5, seed=3, tile_size=64, upscaler=pickled)))
    assert result_of(events).width == 128
    assert sum(1 for e in events if e.WhichOneof("event") == "progress" and e.progress.stage == "enlarging") == 2
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert list(status.upscalers) == [pickled, model]
    await expect_error(collect(stack.inference.Upscale(inference_pb2.UpscaleRequest(
        image=gradient(), upscaler="no-such.pth", steps=4))), grpc.StatusCode.NOT_FOUND, "UPSCALER_NOT_FOUND")


def test_the_upscaler_stage_in_tiles_matches_one_pass_away_from_the_tile_borders(tmp_path):
    """Tiles bound memory; the blend must not change the image where one tile alone covers it."""
    import torch
    from PIL import Image

    from inference_svc.upscale_models import load_upscaler, run_model

    descriptor = load_upscaler(write_tiny_esrgan(tmp_path / "u.safetensors"), torch.device("cpu"), torch.float32)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (96, 80, 3), dtype=np.uint8))
    whole = np.asarray(run_model(descriptor, image, lambda i, n: None, lambda: False, tile=512)).astype(int)
    tiled = np.asarray(run_model(descriptor, image, lambda i, n: None, lambda: False, tile=48, overlap=16)).astype(int)
    assert tiled.shape == whole.shape == (192, 160, 3)
    # Compact is a 4-layer 3x3 network (receptive field 9 px): within a tile, farther than that from its
    # edges, tiled pixels are the whole pass's.
    assert np.abs(tiled[:40, :40] - whole[:40, :40]).max() <= 1
    assert np.abs(tiled - whole).mean() < 2.0
