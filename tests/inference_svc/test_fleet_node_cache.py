"""A fleet whose worker does not mount the shared volume (issue 16): a real Ray cluster on 127.0.0.1, the real
registry; the worker's user-models folder is not there, so it fetches the checkpoint by sha256 into its
node cache, verified, and serves the next job from it without fetching again.

Skipped when ray is not installed (the `fleet` extra: `make test-fleet` installs it)."""

from __future__ import annotations

import hashlib

import pytest
import pytest_asyncio

pytest.importorskip("ray.serve", reason="the fleet extra (ray[serve]) is not installed: make test-fleet")

from inference_helpers import SIZE, copy_into
from inference_registry import start_registry

from inference_svc.fleet import cluster
from inference_svc.fleet.config import FleetSettings
from inference_svc.fleet.front import create_front
from modelmanager.v1 import inference_pb2, inference_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import insecure_channel

pytestmark = [pytest.mark.fleet, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet-cache")
    user_models, models = root / "registry-volume", root / "models"
    (user_models / "checkpoints").mkdir(parents=True)
    models.mkdir()
    registry = await start_registry(user_models, models)
    registry_stub = registry_pb2_grpc.ModelRegistryServiceStub(insecure_channel(registry.address))
    copy_into(tiny.checkpoint_a, user_models / "checkpoints")
    created = await registry_stub.CreateModel(registry_pb2.CreateModelRequest(
        model=model_pb2.Model(filename=tiny.checkpoint_a.name, type=model_pb2.MODEL_TYPE_CHECKPOINT)))
    settings = FleetSettings(
        listen="127.0.0.1:0", registry=registry.address, user_models_dir=root / "not-mounted", models_dir=models,
        device="cpu", cpu_park_bytes=-1, config_cache_dir=root / "configs", outputs_dir=root / "outputs",
        workers=1, app_name="test-fleet-cache", node_cache_dir=root / "node-cache",
        node_cache_bytes=4 * tiny.checkpoint_a.stat().st_size,
    )
    workers = cluster.deploy(settings)
    front = await create_front(settings, workers)
    await front.start()
    channel = insecure_channel(front.address)
    yield (inference_pb2_grpc.InferenceServiceStub(channel), workers, created.model.sha256, root)
    await channel.close()
    await front.stop(0)
    cluster.shutdown(stop_ray=True)
    await registry.stop(0)


async def test_a_worker_without_the_volume_fetches_by_sha256_once(fleet, tiny):
    stub, workers, sha, root = fleet
    request = inference_pb2.GenerateRequest(prompt="a cat", width=SIZE, height=SIZE, steps=2, guidance_scale=5.0,
                                            seed=3, checkpoint=tiny.checkpoint_a.name)
    for _ in range(2):
        messages = [m async for m in stub.Generate(request)]
        assert messages[-1].WhichOneof("event") == "result"
    cached = root / "node-cache" / "worker-0" / f"{sha}.safetensors"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    stats = await workers.node_cache_stats.remote()
    assert stats["fetches"] == 1 and stats["fetched_bytes"] == tiny.checkpoint_a.stat().st_size
