"""The inference service through the wire, with a registry, tiny checkpoints and LoRAs on disk."""

from __future__ import annotations

import asyncio
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from inference_helpers import SIZE, copy_into
from inference_registry import start_registry
from PIL import Image

from inference_svc import pipelines
from inference_svc.app import create_server
from inference_svc.config import InferenceSettings
from modelmanager.v1 import inference_pb2, inference_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import errors


@dataclass
class Stack:
    inference: inference_pb2_grpc.InferenceServiceStub
    registry: registry_pb2_grpc.ModelRegistryServiceStub
    user_models: Path
    models: Path

    async def add_checkpoint(self, src: Path, *, activate: bool = False) -> str:
        copy_into(src, self.user_models / "checkpoints")
        await self.registry.CreateModel(
            registry_pb2.CreateModelRequest(model=model_pb2.Model(filename=src.name, type=model_pb2.MODEL_TYPE_CHECKPOINT))
        )
        if activate:
            await self.registry.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=src.name))
        return src.name

    async def add_lora(self, src: Path, triggers: tuple[str, ...] = ()) -> str:
        copy_into(src, self.user_models / "loras")
        await self.registry.CreateModel(
            registry_pb2.CreateModelRequest(
                model=model_pb2.Model(filename=src.name, type=model_pb2.MODEL_TYPE_LORA, trigger_words=list(triggers))
            )
        )
        return src.name


@pytest.fixture
async def stack(volumes, channel_factory, tmp_path):
    user_models, models = volumes
    for sub in ("loras", "checkpoints"):
        (user_models / sub).mkdir(exist_ok=True)
    registry = await start_registry(user_models, models)
    server = await create_server(
        InferenceSettings(
            listen="127.0.0.1:0",
            registry=registry.address,
            models_dir=models,
            user_models_dir=user_models,
            config_cache_dir=tmp_path / "configs",
        )
    )
    await server.start()
    yield Stack(
        inference_pb2_grpc.InferenceServiceStub(channel_factory(server.address)),
        registry_pb2_grpc.ModelRegistryServiceStub(channel_factory(registry.address)),
        user_models,
        models,
    )
    await server.stop(0)
    await registry.stop(0)


def generate_request(**fields) -> inference_pb2.GenerateRequest:
    defaults = {"prompt": "a photo of a cat", "width": SIZE, "height": SIZE, "steps": 2, "guidance_scale": 5.0, "seed": 7}
    return inference_pb2.GenerateRequest(**{**defaults, **fields})


async def collect(call) -> list:
    return [event async for event in call]


def result_of(events) -> inference_pb2.ImageResult:
    assert events[-1].WhichOneof("event") == "result"
    return events[-1].result


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


async def expect_error(coro, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await coro
    assert failure.value.code() == code, failure.value.details()
    info = errors.error_info_of(failure.value)
    assert info is not None and info.reason == reason, (info, failure.value.details())
    return failure.value


async def test_generate_streams_queue_position_steps_and_a_png_matching_diffusers(stack, tiny, reference_a):
    name = await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    events = await collect(stack.inference.Generate(generate_request()))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "queued" and events[0].queued.job_id
    steps = [e.progress.step for e in events if e.WhichOneof("event") == "progress" and e.progress.stage == "denoising"]
    assert steps == [1, 2]
    assert {e.progress.stage for e in events if e.WhichOneof("event") == "progress"} >= {"loading_checkpoint", "decoding"}
    result = result_of(events)
    assert (result.width, result.height, result.seed, result.checkpoint) == (SIZE, SIZE, 7, name)
    assert result.final_prompt == "a photo of a cat"
    assert result.timings.total_seconds >= result.timings.inference_seconds > 0
    # The same image as the original diffusers pipeline, called in-process with the same seed.
    expected = reference_a(
        "a photo of a cat", width=SIZE, height=SIZE, num_inference_steps=2, guidance_scale=5.0,
        generator=torch.Generator().manual_seed(7),
    ).images[0]
    np.testing.assert_array_equal(pixels(result.png), np.asarray(expected).astype(int))
    # Same seed, same bytes; the checkpoint stays loaded.
    again = result_of(await collect(stack.inference.Generate(generate_request())))
    assert again.png == result.png
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert [c.checkpoint for c in status.checkpoints] == [name]  # loaded once, kept


async def test_switching_the_active_checkpoint_a_b_a(stack, tiny):
    a = await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    b = await stack.add_checkpoint(tiny.checkpoint_b)
    first = result_of(await collect(stack.inference.Generate(generate_request())))
    await stack.registry.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=b))
    second = result_of(await collect(stack.inference.Generate(generate_request())))
    await stack.registry.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=a))
    third = result_of(await collect(stack.inference.Generate(generate_request())))
    assert (first.checkpoint, second.checkpoint, third.checkpoint) == (a, b, a)
    assert first.png != second.png
    assert third.png == first.png
    # A per-job override does not change the active one.
    override = result_of(await collect(stack.inference.Generate(generate_request(checkpoint=b))))
    assert override.png == second.png
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert {c.checkpoint for c in status.checkpoints} == {a, b}
    assert status.device == "cpu" and status.dtype == "float32" and status.attention == "sdpa"
    assert status.current_checkpoint == b and not status.busy and status.queue_depth == 0


async def test_load_checkpoint_streams_progress_and_load_time(stack, tiny):
    b = await stack.add_checkpoint(tiny.checkpoint_b)
    events = await collect(stack.inference.LoadCheckpoint(inference_pb2.LoadCheckpointRequest(checkpoint=b)))
    assert events[0].WhichOneof("event") == "queued"
    stages = [e.progress.stage for e in events if e.WhichOneof("event") == "progress"]
    assert stages[0] == "reading" and stages[-1] == "moving_to_device"
    result = events[-1].result
    assert (result.checkpoint, result.loaded_from) == (b, "disk")
    assert result.load_seconds > 0 and result.size_bytes > 1_000_000
    again = (await collect(stack.inference.LoadCheckpoint(inference_pb2.LoadCheckpointRequest(checkpoint=b))))[-1]
    assert again.result.loaded_from == "device"
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert [(c.checkpoint, c.location) for c in status.checkpoints] == [(b, "device")]
    assert status.memory_allocated_bytes == result.size_bytes


async def test_loras_with_trigger_words_weights_and_the_bare_model(stack, tiny):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    kohya = await stack.add_lora(tiny.lora_kohya)
    peft = await stack.add_lora(tiny.lora_peft, triggers=("tinystyle",))
    bare = result_of(await collect(stack.inference.Generate(generate_request())))
    styled = result_of(await collect(stack.inference.Generate(
        generate_request(loras=[model_pb2.LoraSelection(name=kohya, weight=1.0)]))))
    assert np.abs(pixels(styled.png) - pixels(bare.png)).mean() > 1.0
    assert [(x.filename, x.weight) for x in styled.loras] == [(kohya, 1.0)]
    zero = result_of(await collect(stack.inference.Generate(
        generate_request(loras=[model_pb2.LoraSelection(name=kohya, weight=0.0)]))))
    assert np.array_equal(pixels(zero.png), pixels(bare.png))
    triggered = result_of(await collect(stack.inference.Generate(
        generate_request(loras=[model_pb2.LoraSelection(name=peft)]))))
    assert triggered.final_prompt.startswith("tinystyle")
    assert list(triggered.injected_trigger_words) == ["tinystyle"]
    # The model got the composed prompt: the same as asking for it with the trigger word written out.
    written_out = result_of(await collect(stack.inference.Generate(
        generate_request(prompt=triggered.final_prompt, loras=[model_pb2.LoraSelection(name=peft)]))))
    assert list(written_out.injected_trigger_words) == []
    assert np.array_equal(pixels(written_out.png), pixels(triggered.png))
    # Back to no LoRAs: exactly the bare model again.
    again = result_of(await collect(stack.inference.Generate(generate_request())))
    assert np.array_equal(pixels(again.png), pixels(bare.png))
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert set(status.checkpoints[0].adapters) == {kohya, peft}


async def test_incompatible_lora_is_failed_precondition_naming_the_file(stack, tiny):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    bad = await stack.add_lora(tiny.lora_incompatible)
    failure = await expect_error(
        collect(stack.inference.Generate(generate_request(loras=[model_pb2.LoraSelection(name=bad, weight=1.0)]))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LORA_INCOMPATIBLE",
    )
    assert bad in failure.details()
    assert result_of(await collect(stack.inference.Generate(generate_request()))).png


async def test_corrupt_checkpoint_leaves_the_previous_one_working(stack, tiny):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    good = result_of(await collect(stack.inference.Generate(generate_request())))
    broken = await stack.add_checkpoint(tiny.checkpoint_b)
    path = stack.user_models / "checkpoints" / broken
    path.write_bytes(path.read_bytes()[:100_000])  # truncated on disk after registration
    failure = await expect_error(
        collect(stack.inference.Generate(generate_request(checkpoint=broken))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHECKPOINT_LOAD_FAILED",
    )
    assert broken in failure.details()
    await expect_error(
        collect(stack.inference.LoadCheckpoint(inference_pb2.LoadCheckpointRequest(checkpoint=broken))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHECKPOINT_LOAD_FAILED",
    )
    assert result_of(await collect(stack.inference.Generate(generate_request()))).png == good.png


async def test_inpainting_shaped_checkpoint_is_refused_and_the_previous_one_stays_loaded(stack, tiny):
    a = await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    good = result_of(await collect(stack.inference.Generate(generate_request())))
    inpainting = await stack.add_checkpoint(tiny.inpainting_shaped)
    failure = await expect_error(
        collect(stack.inference.Generate(generate_request(checkpoint=inpainting))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHECKPOINT_LOAD_FAILED",
    )
    assert "model.diffusion_model.input_blocks.0.0.weight (UNet input channels) has shape [32, 9, 3, 3]" in failure.details()
    loaded = (await collect(stack.inference.LoadCheckpoint(inference_pb2.LoadCheckpointRequest(checkpoint=a))))[-1]
    assert loaded.result.loaded_from == "device"
    assert result_of(await collect(stack.inference.Generate(generate_request()))).png == good.png


async def test_sd15_checkpoint_is_refused_as_not_sdxl(stack, tiny):
    # The registry refuses to register one; the default checkpoint's file is not registered.
    folder = stack.models / "illustrious-xl"
    folder.mkdir()
    shutil.copy(tiny.sd15, folder / "Illustrious-XL-v0.1.safetensors")
    failure = await expect_error(
        collect(stack.inference.Generate(generate_request())),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHECKPOINT_LOAD_FAILED",
    )
    assert "Illustrious-XL-v0.1.safetensors is an SD 1.x/2.x checkpoint, not SDXL" in failure.details()


async def test_missing_default_checkpoint_fails_per_request(stack):
    failure = await expect_error(
        collect(stack.inference.Generate(generate_request())), grpc.StatusCode.NOT_FOUND, "CHECKPOINT_NOT_FOUND"
    )
    assert "Illustrious-XL-v0.1.safetensors" in failure.details()


async def test_default_checkpoint_on_the_models_volume(stack, tiny):
    folder = stack.models / "illustrious-xl"
    folder.mkdir()
    shutil.copy(tiny.checkpoint_a, folder / "Illustrious-XL-v0.1.safetensors")
    result = result_of(await collect(stack.inference.Generate(generate_request())))
    assert result.checkpoint == "illustrious-xl"


async def test_default_checkpoint_as_a_diffusers_folder(stack, tiny):
    single = await stack.add_checkpoint(tiny.checkpoint_a)
    expected = result_of(await collect(stack.inference.Generate(generate_request(checkpoint=single))))
    # The folder itself in place of Illustrious-XL-v0.1.safetensors.
    shutil.copytree(tiny.diffusers_a, stack.models / "illustrious-xl")
    active = result_of(await collect(stack.inference.Generate(generate_request())))
    override = result_of(await collect(stack.inference.Generate(generate_request(checkpoint="illustrious-xl"))))
    assert active.checkpoint == override.checkpoint == "illustrious-xl"
    assert override.png == active.png
    # The same weights as the single file (from_pretrained's float noise aside).
    assert np.abs(pixels(active.png) - pixels(expected.png)).max() <= 1
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert sorted(c.checkpoint for c in status.checkpoints) == ["illustrious-xl", single]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"width": 65}, "INVALID_SIZE"),
        ({"height": 4096}, "INVALID_SIZE"),
        ({"steps": 500}, "OUT_OF_RANGE_VALUE"),
        ({"guidance_scale": 31.0}, "OUT_OF_RANGE_VALUE"),
        ({"scheduler": "nope"}, "UNKNOWN_SCHEDULER"),
    ],
)
async def test_bad_generate_input_is_invalid_argument(stack, fields, reason):
    await expect_error(
        collect(stack.inference.Generate(generate_request(**fields))), grpc.StatusCode.INVALID_ARGUMENT, reason
    )


async def test_upscale_output_size_is_bounded(stack):
    big = io.BytesIO()
    Image.new("RGB", (4000, 8)).save(big, format="PNG")
    await expect_error(
        collect(stack.inference.Upscale(inference_pb2.UpscaleRequest(image=big.getvalue(), scale_factor=4.0))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_SIZE",
    )


async def test_bad_upscale_input_is_invalid_argument(stack):
    await expect_error(
        collect(stack.inference.Upscale(inference_pb2.UpscaleRequest(image=b"not an image"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_IMAGE",
    )
    png = io.BytesIO()
    Image.new("RGB", (32, 32)).save(png, format="PNG")
    for fields, reason in (
        ({"scale_factor": 8.0}, "OUT_OF_RANGE_VALUE"),
        ({"tile_size": 100}, "INVALID_SIZE"),
        ({"tile_size": 64, "tile_overlap": 40}, "INVALID_SIZE"),
        ({"strength": 1.5}, "OUT_OF_RANGE_VALUE"),
        ({"strength": 0.01, "steps": 20}, "OUT_OF_RANGE_VALUE"),  # no denoising step would run
    ):
        await expect_error(
            collect(stack.inference.Upscale(inference_pb2.UpscaleRequest(image=png.getvalue(), **fields))),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )


@pytest.mark.parametrize(("tile", "overlap"), [(0, 128), (1024, 128), (512, 128), (256, 64), (128, 32), (48, 8), (32, 8)])
def test_unset_tile_overlap_fits_the_tile_size(tile, overlap):
    from inference_svc.validation import upscale_params

    params = upscale_params(inference_pb2.UpscaleRequest(image=b"", tile_size=tile))
    assert params.tile_overlap == overlap


async def test_upscale_with_only_a_small_tile_size_set(stack, tiny):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    request = inference_pb2.UpscaleRequest(image=small_image(), scale_factor=2.0, steps=2, strength=0.5, seed=3,
                                           tile_size=48)
    events = await collect(stack.inference.Upscale(request))
    tiles = {e.progress.total_tiles for e in events if e.WhichOneof("event") == "progress" and e.progress.total_tiles}
    assert tiles == {4}  # 64x64 in 48 px tiles overlapping by 8
    assert result_of(events).width == 64


def small_image() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_controlnet(folder: Path, reference) -> None:
    """A ControlNet tile model that changes the image: from_unet zero-initialises its output layers."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(reference.unet)
    # The zero convs (and the conditioning embedding's last conv, so the tile image reaches the
    # model) get seeded random weights; with zeros the ControlNet would add nothing at all.
    generator = torch.Generator().manual_seed(0)
    zeroed = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
              controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for module in zeroed:
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    controlnet.save_pretrained(folder)


async def test_upscale_streams_per_tile_progress_and_uses_the_controlnet_when_present(stack, tiny, reference_a):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    request = inference_pb2.UpscaleRequest(
        image=small_image(), prompt="sharp", scale_factor=2.0, steps=2, strength=0.5, seed=3,
        tile_size=48, tile_overlap=16,
    )
    events = await collect(stack.inference.Upscale(request))
    tiles = [(e.progress.tile, e.progress.total_tiles) for e in events
             if e.WhichOneof("event") == "progress" and e.progress.stage == "upscaling"]
    assert tiles == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 64x64 in 48px tiles: 2x2, one step each
    result = result_of(events)
    assert (result.width, result.height) == (64, 64)
    assert Image.open(io.BytesIO(result.png)).size == (64, 64)
    again = result_of(await collect(stack.inference.Upscale(request)))
    assert again.png == result.png
    tiny_controlnet(stack.models / "controlnet-tile", reference_a)
    controlled = result_of(await collect(stack.inference.Upscale(request)))
    # Pixels, not PNG bytes: the PNG's parameters chunk says "controlnet" whether or not it did anything.
    assert np.abs(pixels(controlled.png) - pixels(result.png)).mean() > 1.0


async def test_two_jobs_queue_one_behind_the_other(stack, tiny):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    first = stack.inference.Generate(generate_request(steps=30))
    first_events = []
    async for event in first:  # wait until the first job runs
        first_events.append(event)
        if event.WhichOneof("event") == "progress" and event.progress.stage == "denoising":
            break
    second_events = []
    positions = []
    async for event in stack.inference.Generate(generate_request(seed=8)):
        second_events.append(event)
        if event.WhichOneof("event") == "queued":
            positions.append(event.queued.position)
    first_events += [e async for e in first]
    assert positions == [1, 0]
    assert result_of(first_events).seed == 7 and result_of(second_events).seed == 8


async def test_cancelled_client_stops_its_job_within_one_step(stack, tiny, monkeypatch):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    steps_run: list[int] = []
    cancelled_at: list[int] = []
    original = pipelines.step_callback

    def counting(on_step, cancelled, total):
        def recording_on_step(step, total_):
            steps_run.append(step)
            on_step(step, total_)

        def recording_cancelled():
            if cancelled() and not cancelled_at:
                cancelled_at.append(len(steps_run))
            return cancelled()

        return original(recording_on_step, recording_cancelled, total)

    monkeypatch.setattr(pipelines, "step_callback", counting)
    call = stack.inference.Generate(generate_request(steps=150))
    async for event in call:
        if event.WhichOneof("event") == "progress" and event.progress.step >= 2:
            break
    call.cancel()
    # The worker becomes free again (polled, not timed) and the job did not run on.
    for _ in range(600):
        status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
        if not status.busy:
            break
        await asyncio.sleep(0.05)
    assert not status.busy
    assert cancelled_at and len(steps_run) <= cancelled_at[0] + 1
    assert len(steps_run) < 150
    assert result_of(await collect(stack.inference.Generate(generate_request()))).png


async def test_out_of_memory_is_resource_exhausted_and_the_service_keeps_serving(stack, tiny, monkeypatch):
    from inference_svc import engine

    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    real_generate = engine.generate

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(engine, "generate", out_of_memory)
    await expect_error(
        collect(stack.inference.Generate(generate_request())), grpc.StatusCode.RESOURCE_EXHAUSTED, "OUT_OF_MEMORY"
    )
    monkeypatch.setattr(engine, "generate", real_generate)
    assert result_of(await collect(stack.inference.Generate(generate_request()))).png


async def test_out_of_memory_while_loading_a_lora_is_resource_exhausted(stack, tiny, monkeypatch):
    from diffusers import StableDiffusionXLPipeline

    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    lora = await stack.add_lora(tiny.lora_kohya)
    real = StableDiffusionXLPipeline.load_lora_weights
    calls = []

    def fails_once(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "load_lora_weights", fails_once)
    request = generate_request(loras=[model_pb2.LoraSelection(name=lora, weight=1.0)])
    # Not the LoRA's fault: not LORA_INCOMPATIBLE, and the next request loads it.
    await expect_error(collect(stack.inference.Generate(request)), grpc.StatusCode.RESOURCE_EXHAUSTED, "OUT_OF_MEMORY")
    assert result_of(await collect(stack.inference.Generate(request))).png
    status = await stack.inference.GetStatus(inference_pb2.GetStatusRequest())
    assert list(status.checkpoints[0].adapters) == [lora] and len(calls) == 2


def cpu_allocation_failure() -> None:
    torch.empty(2**50, dtype=torch.uint8)  # 1 PiB: torch's real "DefaultCPUAllocator: can't allocate memory"


def memory_error() -> None:
    raise MemoryError


@pytest.mark.parametrize("fail", [cpu_allocation_failure, memory_error])
async def test_out_of_memory_while_loading_a_checkpoint_is_resource_exhausted(stack, tiny, monkeypatch, fail):
    from diffusers import StableDiffusionXLPipeline

    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    real = StableDiffusionXLPipeline.from_single_file
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            fail()
        return real(*args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_single_file", fails_once)
    # Not the file's fault: not CHECKPOINT_LOAD_FAILED.
    await expect_error(
        collect(stack.inference.Generate(generate_request())), grpc.StatusCode.RESOURCE_EXHAUSTED, "OUT_OF_MEMORY"
    )
    assert result_of(await collect(stack.inference.Generate(generate_request()))).png
    assert len(calls) == 2


async def test_schedulers(stack, tiny):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    names = (await stack.inference.ListSchedulers(inference_pb2.ListSchedulersRequest())).schedulers
    assert {"euler", "euler_a", "dpmpp_2m_karras", "ddim"} <= set(names)
    default = result_of(await collect(stack.inference.Generate(generate_request())))
    ancestral = result_of(await collect(stack.inference.Generate(generate_request(scheduler="euler_a"))))
    assert ancestral.png != default.png
    assert result_of(await collect(stack.inference.Generate(generate_request(scheduler="euler_a")))).png == ancestral.png
    assert result_of(await collect(stack.inference.Generate(generate_request()))).png == default.png


async def test_unknown_lora_is_not_found(stack, tiny):
    await stack.add_checkpoint(tiny.checkpoint_a, activate=True)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await collect(stack.inference.Generate(generate_request(loras=[model_pb2.LoraSelection(name="nope")])))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in failure.value.details()


async def test_registry_down_is_unavailable(volumes, channel_factory, tmp_path):
    user_models, models = volumes
    server = await create_server(
        InferenceSettings(listen="127.0.0.1:0", registry="127.0.0.1:1", models_dir=models,
                          user_models_dir=user_models, registry_timeout_s=2.0)
    )
    await server.start()
    try:
        stub = inference_pb2_grpc.InferenceServiceStub(channel_factory(server.address))
        await expect_error(
            collect(stub.Generate(generate_request())), grpc.StatusCode.UNAVAILABLE, "REGISTRY_UNAVAILABLE"
        )
    finally:
        await server.stop(0)
