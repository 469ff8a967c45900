"""The inference fleet (issue 16): a real Ray cluster on 127.0.0.1 with two CPU workers, the real registry,
tiny checkpoints, and the fleet's gRPC front; clients call it as they call inference_svc.

Skipped when ray is not installed (the `fleet` extra: `make test-fleet` installs it)."""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

pytest.importorskip("ray.serve", reason="the fleet extra (ray[serve]) is not installed: make test-fleet")

from grpc_health.v1 import health_pb2, health_pb2_grpc
from inference_helpers import SIZE, copy_into
from inference_registry import start_registry

from inference_svc.fleet import cluster
from inference_svc.fleet.config import FleetSettings
from inference_svc.fleet.front import create_front
from modelmanager.v1 import inference_pb2, inference_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import insecure_channel
from service_kit.errors import error_info_of

pytestmark = [pytest.mark.fleet, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


class Fleet:
    def __init__(self, front, registry, stub, registry_stub, channel, outputs: Path):
        self.front, self.registry, self.stub, self.registry_stub = front, registry, stub, registry_stub
        self.channel, self.outputs = channel, outputs

    async def generate(self, checkpoint: str, *, steps: int = 2, seed: int = 7) -> tuple[str, int, list]:
        """(worker id, the worker's checkpoint loads after the job, the response messages)."""
        call = self.stub.Generate(inference_pb2.GenerateRequest(
            prompt="a photo of a cat", width=SIZE, height=SIZE, steps=steps, guidance_scale=5.0, seed=seed,
            checkpoint=checkpoint))
        messages = [m async for m in call]
        worker = dict(await call.initial_metadata())["modelmgr-worker"]
        loads = int(dict(await call.trailing_metadata())["modelmgr-worker-loads"])
        return worker, loads, messages


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    user_models, models = root / "user-models", root / "models"
    for sub in ("loras", "checkpoints"):
        (user_models / sub).mkdir(parents=True)
    models.mkdir()
    registry = await start_registry(user_models, models)
    registry_stub = registry_pb2_grpc.ModelRegistryServiceStub(insecure_channel(registry.address))
    for src in (tiny.checkpoint_a, tiny.checkpoint_b):
        copy_into(src, user_models / "checkpoints")
        await registry_stub.CreateModel(registry_pb2.CreateModelRequest(
            model=model_pb2.Model(filename=src.name, type=model_pb2.MODEL_TYPE_CHECKPOINT)))
    one_pipeline = int(tiny.checkpoint_a.stat().st_size * 2.5)  # float32 on the CPU: room for one, not two
    settings = FleetSettings(
        listen="127.0.0.1:0", registry=registry.address, user_models_dir=user_models, models_dir=models,
        device="cpu", device_cache_bytes=one_pipeline, cpu_park_bytes=-1, config_cache_dir=root / "configs",
        workers=2, checkpoints_per_worker=1, app_name="test-fleet",
    )
    workers = cluster.deploy(settings)
    front = await create_front(settings, workers)
    await front.start()
    channel = insecure_channel(front.address)
    yield Fleet(front, registry, inference_pb2_grpc.InferenceServiceStub(channel), registry_stub, channel,
                settings.outputs_path)
    await channel.close()
    await front.stop(0)
    cluster.shutdown(stop_ray=True)
    await registry.stop(0)


async def test_each_checkpoint_stays_on_one_worker(fleet, tiny):
    a, b = tiny.checkpoint_a.name, tiny.checkpoint_b.name
    for checkpoint in (a, b):  # warm-up: each lands on a worker holding nothing yet
        await fleet.generate(checkpoint)
    served: dict[str, set[str]] = defaultdict(set)
    loads: dict[str, int] = {}
    for i in range(6):
        checkpoint = (a, b)[i % 2]
        worker, worker_loads, messages = await fleet.generate(checkpoint, seed=i)
        served[checkpoint].add(worker)
        result = messages[-1].result
        assert result.checkpoint == checkpoint and result.png.startswith(b"\x89PNG")
        if worker in loads:
            assert worker_loads == loads[worker], "a warm worker loaded a checkpoint again"
        loads[worker] = worker_loads
    assert len(served[a]) == 1 and len(served[b]) == 1
    assert served[a] != served[b]


async def test_progress_and_queue_positions_stream_through_the_fleet(fleet, tiny):
    _, _, messages = await fleet.generate(tiny.checkpoint_a.name, steps=3)
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds[0] == "queued" and kinds[-1] == "result"
    steps = [m.progress.step for m in messages if m.HasField("progress") and m.progress.stage == "denoising"]
    assert steps == [1, 2, 3]
    assert messages[0].queued.job_id == messages[-1].result.job_id


async def test_a_worker_error_keeps_its_code_and_reason(fleet):
    call = fleet.stub.Generate(inference_pb2.GenerateRequest(prompt="x", width=SIZE, height=SIZE, steps=2,
                                                             checkpoint="no-such.safetensors"))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        [m async for m in call]
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info_of(failed.value)
    assert info.reason == "CHECKPOINT_NOT_FOUND" and info.domain == "inference.modelmanager"


async def test_cancel_through_the_fleet_stops_the_job(fleet, tiny):
    checkpoint = tiny.checkpoint_b.name
    before = len(list(fleet.outputs.glob("**/*.png")))
    call = fleet.stub.Generate(inference_pb2.GenerateRequest(
        prompt="a long one", width=SIZE, height=SIZE, steps=150, guidance_scale=5.0, seed=1, checkpoint=checkpoint))
    async for message in call:
        if message.HasField("progress") and message.progress.step >= 2:
            break
    call.cancel()
    # The same worker (by checkpoint), one job at a time: once this one is done, the cancelled one has ended.
    _, _, messages = await fleet.generate(checkpoint)
    assert messages[-1].HasField("result")
    assert len(list(fleet.outputs.glob("**/*.png"))) == before + 1, "the cancelled job ran to the end"


async def test_a_killed_worker_fails_its_job_cleanly_and_the_next_is_served(fleet, tiny):
    checkpoint = tiny.checkpoint_a.name
    call = fleet.stub.Generate(inference_pb2.GenerateRequest(
        prompt="doomed", width=SIZE, height=SIZE, steps=150, guidance_scale=5.0, seed=1, checkpoint=checkpoint))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for message in call:
            if message.HasField("progress") and message.progress.stage == "denoising":
                os.kill(int(dict(await call.initial_metadata())["modelmgr-worker-pid"]), signal.SIGKILL)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info_of(failed.value).reason == "WORKER_LOST"
    assert "went away" in failed.value.details()
    # The next request is served (by the other worker, or the dead one's replacement) and the front is healthy.
    _, _, messages = await fleet.generate(checkpoint)
    assert messages[-1].HasField("result")
    health = health_pb2_grpc.HealthStub(fleet.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="modelmanager.v1.InferenceService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
