"""Fleet figures (issue 16), through a real local fleet: a Ray cluster on 127.0.0.1, two CPU workers each
holding one pipeline, the real registry, tiny SDXL-shaped checkpoints.

    python -m bench fleet            (skipped with a message when ray is not installed: pip install -e '.[fleet]')

* loads:    checkpoint loads per 100 requests, a mixed workload of 4 checkpoints with Zipf popularity
            (s = 1) from two clients at once, routed by checkpoint (model multiplexing)   vs  routed with
            no checkpoint key (routing=any: Ray's least-loaded choice, which for requests drawn independently
            loads as often as round-robin does: each worker sees an independent draw of the same mix).
            Target: ≤ 1/3.
* generate: one Generate through the fleet front (front -> Ray handle -> worker)  vs  the same request to a
            single inference_svc, both warm, at a size where compute dominates. Target: ≤ 1.05.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REQUESTS = 60
CHECKPOINTS = 4
ZIPF_S = 1.0
SIZE, STEPS = 256, 20  # a few seconds of CPU compute per image: the front's and Ray's hops are small beside it
TINY = 64


async def _setup_registry(root: Path) -> tuple[object, object, list[str]]:
    from devtools.tiny_models import write_tiny_checkpoint
    from metadata_svc.app import create_server
    from metadata_svc.config import RegistrySettings
    from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
    from service_kit import insecure_channel

    user_models, models = root / "user-models", root / "models"
    (user_models / "checkpoints").mkdir(parents=True)
    (user_models / "loras").mkdir()
    models.mkdir()
    registry = await create_server(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models,
                                                    models_dir=models))
    await registry.start()
    stub = registry_pb2_grpc.ModelRegistryServiceStub(insecure_channel(registry.address))
    names = []
    for i in range(CHECKPOINTS):
        path = await asyncio.to_thread(write_tiny_checkpoint, user_models / "checkpoints" / f"ckpt-{i}.safetensors",
                                       seed=i + 1)
        names.append(path.name)
    for name in names:
        await stub.CreateModel(registry_pb2.CreateModelRequest(
            model=model_pb2.Model(filename=name, type=model_pb2.MODEL_TYPE_CHECKPOINT)))
    return registry, stub, names


class Client:
    def __init__(self, address: str):
        from modelmanager.v1 import inference_pb2_grpc
        from service_kit import insecure_channel

        self.channel = insecure_channel(address)
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)

    async def generate(self, checkpoint: str, *, size: int = TINY, steps: int = 2, seed: int = 1) -> dict[str, str]:
        from modelmanager.v1 import inference_pb2

        call = self.stub.Generate(inference_pb2.GenerateRequest(
            prompt="a photo of a cat", width=size, height=size, steps=steps, guidance_scale=5.0, seed=seed,
            checkpoint=checkpoint))
        messages = [m async for m in call]
        if not messages or not messages[-1].HasField("result"):
            raise RuntimeError(f"no result for {checkpoint}")
        return {**dict(await call.initial_metadata()), **dict(await call.trailing_metadata())}


async def _workload(client: Client, names: list[str], seen: dict[str, int], seed: int) -> int:
    """REQUESTS Zipf-drawn requests from two concurrent clients; the workers' checkpoint loads meanwhile."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**ZIPF_S) for rank in range(1, len(names) + 1)]
    draws = rng.choices(names, weights=weights, k=REQUESTS)
    before = dict(seen)

    async def run(part: list[str]) -> None:
        for i, checkpoint in enumerate(part):
            meta = await client.generate(checkpoint, seed=i)
            worker, loads = meta["modelmgr-worker"], int(meta["modelmgr-worker-loads"])
            seen[worker] = max(seen.get(worker, 0), loads)

    await asyncio.gather(run(draws[0::2]), run(draws[1::2]))
    return sum(loads - before.get(worker, 0) for worker, loads in seen.items())


async def _best_of_pairs(n: int, base: Callable[[], Awaitable[object]],
                         ours: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    times: dict[str, list[float]] = {"base": [], "ours": []}
    for i in range(n):
        order = (("base", base), ("ours", ours)) if i % 2 == 0 else (("ours", ours), ("base", base))
        for name, fn in order:
            started = time.perf_counter()
            await fn()
            times[name].append(time.perf_counter() - started)
    return min(times["ours"]), min(times["base"])


async def _run() -> None:
    import torch

    from inference_svc.app import create_server
    from inference_svc.config import InferenceSettings
    from inference_svc.fleet import cluster
    from inference_svc.fleet.config import FleetSettings
    from inference_svc.fleet.front import create_front

    torch.set_num_threads(1)  # as each Ray worker (OMP_NUM_THREADS=1 for a 1-CPU actor): the same compute
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        registry, _, names = await _setup_registry(root)
        one_pipeline = int((root / "user-models" / "checkpoints" / names[0]).stat().st_size * 2.5)
        common = {
            "listen": "127.0.0.1:0", "registry": registry.address,  # type: ignore[attr-defined]
            "user_models_dir": root / "user-models", "models_dir": root / "models", "device": "cpu",
            "device_cache_bytes": one_pipeline, "cpu_park_bytes": -1, "config_cache_dir": root / "configs",
        }
        settings = FleetSettings(**common, workers=2, checkpoints_per_worker=1, app_name="bench-fleet")
        print("starting a local Ray cluster with 2 workers …", flush=True)
        workers = cluster.deploy(settings)  # blocks for seconds; nothing needs this loop meanwhile
        affinity = await create_front(settings, workers)
        anyone = await create_front(FleetSettings(**common, routing="any"), workers)
        single = await create_server(InferenceSettings(**common))
        servers = (affinity, anyone, single)
        try:
            for server in servers:
                await server.start()
            by_checkpoint, by_load, alone = (Client(s.address) for s in servers)
            seen: dict[str, int] = {}
            for name in names:  # warm-up: every worker process has imported and built something
                await by_load.generate(name)
                await by_checkpoint.generate(name)
            await _workload(by_load, names, seen, seed=1)  # the same kind of start for both
            any_loads = await _workload(by_load, names, seen, seed=2)
            await _workload(by_checkpoint, names, seen, seed=1)
            affinity_loads = await _workload(by_checkpoint, names, seen, seed=2)
            ratio = affinity_loads / any_loads if any_loads else 0.0
            print(f"{'checkpoint loads per 100 requests (4 checkpoints, Zipf s=1, 2 workers × 1)':<74} "
                  f"affinity {100 * affinity_loads / REQUESTS:5.1f}  vs  routing=any {100 * any_loads / REQUESTS:5.1f}"
                  f"  ratio {ratio:.3f} (target ≤ 0.333)", flush=True)

            hot = names[0]
            await by_checkpoint.generate(hot, size=SIZE, steps=STEPS)
            await alone.generate(hot, size=SIZE, steps=STEPS)
            fleet_s, single_s = await _best_of_pairs(
                3, lambda: alone.generate(hot, size=SIZE, steps=STEPS),
                lambda: by_checkpoint.generate(hot, size=SIZE, steps=STEPS))
            print(f"{f'Generate {SIZE}² {STEPS} steps, warm: fleet front vs one inference_svc':<74} "
                  f"{fleet_s * 1000:8.1f} ms  vs {single_s * 1000:8.1f} ms  ratio {fleet_s / single_s:.3f} "
                  "(target ≤ 1.05)", flush=True)
            for client in (by_checkpoint, by_load, alone):
                await client.channel.close()
        finally:
            for server in servers:
                await server.stop(0)
            cluster.shutdown(stop_ray=True)
            await registry.stop(0)  # type: ignore[attr-defined]


def main() -> None:
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        print("bench fleet: skipped: ray is not installed (pip install -e '.[fleet]', or make install)", flush=True)
        return
    asyncio.run(_run())


if __name__ == "__main__":
    main()
