"""Inference figures, each a ratio against a baseline measured in the same run, on the same device.

    python -m bench inference           (MODELMGR_BENCH_DEVICE=auto by default: auto, cpu, cuda, cuda:N)

* load:     CheckpointLoader.load (diffusers' single-file loader, offline)   vs  safetensors.torch.load_file
            onto the same device, cast to the same dtype
* switch:   switching back to a device-resident / a parked (host memory) checkpoint  vs  a cold load of it
* lora:     changing LoRA weights / switching to a loaded adapter            vs  loading the LoRA the first time
* generate: Generate through gRPC (registry, queue, PNG, wire)               vs  the same pipeline called in-process

The device is resolved as the service resolves --device ("auto": CUDA when
present, in float16), and both sides of every figure use it: the gRPC server
is started with it too. The model is the "medium" SDXL-shaped one from
devtools.tiny_models (~0.5 GB in float32), big enough for reading and compute
to dominate fixed costs. Times are the best (load, lora), best and median
(switch, generate) of a few runs, interleaved where two things are compared.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import load_file

from devtools.tiny_models import write_tiny_checkpoint, write_tiny_lora
from inference_svc.checkpoint_cache import CheckpointCache
from inference_svc.checkpoint_loader import CheckpointLoader
from inference_svc.device import DeviceInfo, resolve_device
from inference_svc.lora_manager import LoraManager, LoraSpec
from inference_svc.pipelines import GenerateParams, generate

VARIANT = "medium"
SIZE, STEPS = 256, 8
SWITCHES = 7  # switch figures: best and median of this many


def _sync() -> None:
    # CUDA work is asynchronous: a timer must wait for it. A no-op without CUDA.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - started


def best_of(n: int, fn: Callable[[], object]) -> float:
    return min(timed(fn) for _ in range(n))


def best_of_pairs(n: int, base: Callable[[], object], ours: Callable[[], object]) -> tuple[float, float]:
    """(best ours, best base), measured alternately so load from other processes hits both."""
    times: dict[str, list[float]] = {"base": [], "ours": []}
    for i in range(n):
        # Alternate which goes first, so neither always finds the page cache the other warmed.
        order = (("base", base), ("ours", ours)) if i % 2 == 0 else (("ours", ours), ("base", base))
        for name, fn in order:
            times[name].append(timed(fn))
    return min(times["ours"]), min(times["base"])


def line(name: str, ours: float, base: float, target: str = "") -> None:
    ratio = ours / base if base else float("inf")
    print(f"{name:<58} {ours * 1000:10.1f} ms  vs {base * 1000:10.1f} ms  ratio {ratio:7.3f} {target}", flush=True)


def _touch(tensors) -> None:
    """Read every byte once: safetensors (and so the loader) map the file lazily on the CPU."""
    for t in tensors:
        t.sum()


def _load_file_to(path: Path, device: DeviceInfo) -> dict[str, torch.Tensor]:
    """The baseline: the file's tensors on the loader's device, in its dtype, every byte read."""
    # Kept alive until touched, like a model's weights: a fair baseline allocates as much memory.
    tensors = {k: v.to(device.dtype) for k, v in load_file(str(path), device=str(device.device)).items()}
    _touch(tensors.values())
    return tensors


def _weights(pipe) -> list[torch.Tensor]:
    return [p for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2) for p in m.parameters()]


def bench_load(loader: CheckpointLoader, fp16: Path, fp32: Path) -> None:
    device = loader.device
    with torch.inference_mode():
        for file_dtype, path in (("float32", fp32), ("float16", fp16)):
            label = f"{file_dtype} file -> {device.dtype_name}" + (" (CivitAI file)" if file_dtype == "float16" else "")
            load_file(str(path))  # warm the page cache for both sides
            if not device.is_cuda:  # on a GPU nothing is lazy: the weights are copied to it
                lazy, lazy_base = best_of_pairs(5, lambda p=path: load_file(str(p)), lambda p=path: loader.load(p))
                line(f"load {label}, lazy: vs load_file", lazy, lazy_base)
            # The same work on both sides: tensors of the target dtype on the device, every byte read.
            ours, base = best_of_pairs(
                5, lambda p=path: _load_file_to(p, device), lambda p=path: _touch(_weights(loader.load(p)))
            )
            line(f"load {label}, all bytes read: vs load_file", ours, base, "(target <= 1.5)")


def _available_bytes() -> int:
    for row in Path("/proc/meminfo").read_text().splitlines():
        if row.startswith("MemAvailable:"):
            return int(row.split()[1]) * 1024
    return 0


def bench_load_large(loader: CheckpointLoader, root: Path) -> None:
    """SDXL's widths (fewer layers): bytes weigh more against the loader's fixed costs."""
    if _available_bytes() < 14 * 1024**3:
        print("load, large variant: skipped (needs 14 GB of free memory)", flush=True)
        return
    started = time.perf_counter()
    path = write_tiny_checkpoint(root / "large.safetensors", seed=1, variant="large")
    print(f"large checkpoint written in {time.perf_counter() - started:.1f} s: {path.stat().st_size / 1e9:.2f} GB",
          flush=True)
    with torch.inference_mode():
        load_file(str(path))
        ours, base = best_of_pairs(
            3, lambda: _load_file_to(path, loader.device), lambda: _touch(_weights(loader.load(path))))
    line(f"load large float16 file -> {loader.device.dtype_name}, all bytes read: vs load_file", ours, base,
         "(target <= 1.5)")
    path.unlink()


def _switches(cache: CheckpointCache, a: Path, b: Path) -> list[float]:
    """Times of SWITCHES switches between two cached checkpoints, alternately to a and to b."""
    cache.acquire("a", a)
    cache.acquire("b", b)
    return [timed(lambda i=i: cache.acquire(*(("a", a) if i % 2 == 0 else ("b", b)))) for i in range(SWITCHES)]


def bench_switch(loader: CheckpointLoader, a: Path, b: Path) -> None:
    cold = []
    for _ in range(3):
        cache = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
        cold.append(timed(lambda c=cache: c.acquire("a", a)))
        cache.clear()
    base = statistics.median(cold)
    line("cold load through the checkpoint cache: best of 3 vs median of 3", min(cold), base)

    resident = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    times = _switches(resident, a, b)
    resident.clear()
    label = "switch back to a device-resident checkpoint vs cold load"
    line(f"{label} (best of {SWITCHES})", min(times), base, "(target <= 0.05)")
    line(f"{label} (median of {SWITCHES})", statistics.median(times), base)

    # Room for one on the device, one parked in host memory: every switch is an unpark (host to
    # device copy, and parking the other). On the CPU both tiers are the same memory (the service
    # does not park there by default): the figure is the bookkeeping.
    size = loader.estimate_bytes(a)
    parked = CheckpointCache(loader, loader.device, device_budget=int(size * 1.5), park_budget=int(size * 1.5))
    times = _switches(parked, a, b)
    assert {e.location for e in parked.snapshot()} == {"device", "cpu"}
    parked.clear()
    label = "switch back to a parked (host memory) checkpoint vs cold load"
    line(f"{label} (best of {SWITCHES})", min(times), base)
    line(f"{label} (median of {SWITCHES})", statistics.median(times), base)


def bench_lora(loader: CheckpointLoader, checkpoint: Path, loras: list[Path]) -> None:
    cache = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
    entry = cache.acquire("a", checkpoint).entry
    manager = LoraManager()
    spec = [LoraSpec(p.name, p, 1.0) for p in loras]
    first = best_of(1, lambda: manager.apply(entry, [spec[0]]))
    manager.apply(entry, [spec[1]])
    weights = best_of(5, lambda: manager.apply(entry, [LoraSpec(spec[0].filename, spec[0].path, 0.7)]))
    switch = best_of(5, lambda: (manager.apply(entry, [spec[1]]), manager.apply(entry, [spec[0]])))
    bare = best_of(5, lambda: manager.apply(entry, []))
    line("LoRA: change weight of a loaded adapter", weights, first)
    line("LoRA: switch between two loaded adapters (x2)", switch, first)
    line("LoRA: back to the bare model (disable adapters)", bare, first)
    cache.clear()


async def bench_generate(loader: CheckpointLoader, device_name: str, checkpoint: Path, root: Path) -> None:
    import shutil

    from inference_svc.app import create_server
    from inference_svc.config import InferenceSettings
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings
    from modelmanager.v1 import inference_pb2, inference_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
    from service_kit import insecure_channel

    user_models, models = root / "user-models", root / "models"
    (user_models / "checkpoints").mkdir(parents=True)
    (user_models / "loras").mkdir()
    models.mkdir()
    registry = await create_registry(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models))
    await registry.start()
    shutil.copy(checkpoint, user_models / "checkpoints" / checkpoint.name)
    server = await create_server(
        # The device the baseline below runs on: "auto" alone would be CUDA float16 on a GPU host.
        InferenceSettings(listen="127.0.0.1:0", registry=registry.address, models_dir=models,
                          user_models_dir=user_models, config_cache_dir=root / "configs", device=device_name)
    )
    await server.start()
    channel, reg_channel = insecure_channel(server.address), insecure_channel(registry.address)
    try:
        reg = registry_pb2_grpc.ModelRegistryServiceStub(reg_channel)
        await reg.CreateModel(registry_pb2.CreateModelRequest(
            model=model_pb2.Model(filename=checkpoint.name, type=model_pb2.MODEL_TYPE_CHECKPOINT)))
        await reg.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=checkpoint.name))
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        async for _ in stub.LoadCheckpoint(inference_pb2.LoadCheckpointRequest()):
            pass
        request = inference_pb2.GenerateRequest(prompt="a photo of a cat", width=SIZE, height=SIZE, steps=STEPS,
                                                guidance_scale=5.0, seed=1)

        async def over_grpc() -> float:
            started = time.perf_counter()
            async for _ in stub.Generate(request):
                pass  # the result holds the PNG: the server's work is done
            return time.perf_counter() - started

        status = await stub.GetStatus(inference_pb2.GetStatusRequest())
        assert (status.device, status.dtype) == (str(loader.device.device), loader.device.dtype_name), status

        # The baseline: the same checkpoint, loaded the same way, called directly.
        cache = CheckpointCache(loader, loader.device, device_budget=10**12, park_budget=0)
        entry = cache.acquire("a", user_models / "checkpoints" / checkpoint.name).entry
        params = GenerateParams("a photo of a cat", "", SIZE, SIZE, STEPS, 5.0, 1)

        def in_process() -> float:
            with torch.inference_mode():
                return timed(lambda: entry.pipe(prompt=params.prompt, width=SIZE, height=SIZE, num_inference_steps=STEPS,
                                                guidance_scale=5.0, generator=torch.Generator().manual_seed(1)))

        generate(entry, params, lambda s, t: None, lambda: False)  # warm-up both sides
        await over_grpc()
        ours, base = [], []
        for _ in range(5):  # interleaved, so drift (other load on the machine) hits both sides
            base.append(in_process())
            ours.append(await over_grpc())
        label = f"Generate {SIZE}x{SIZE}, {STEPS} steps: gRPC vs in-process"
        line(f"{label} (best of 5)", min(ours), min(base), "(target <= 1.05)")
        line(f"{label} (median of 5)", statistics.median(ours), statistics.median(base))
        cache.clear()
    finally:
        await channel.close()
        await reg_channel.close()
        await server.stop(0)
        await registry.stop(0)


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes skew CPU figures)",
          flush=True)
    from inference_svc.app import quiet_libraries
    from service_kit import configure_logging

    configure_logging("bench", level="WARNING", json=False)
    quiet_libraries()
    device_name = os.environ.get("MODELMGR_BENCH_DEVICE", "auto")
    device = resolve_device(device_name)
    device_name = str(device.device)  # what "auto" resolved to, for the gRPC server too
    print(f"device {device.device}, dtype {device.dtype_name}, torch threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        fp16 = write_tiny_checkpoint(root / "medium-a.safetensors", seed=1, variant=VARIANT)
        fp32 = write_tiny_checkpoint(root / "medium-a-fp32.safetensors", seed=1, variant=VARIANT, dtype=torch.float32)
        b = write_tiny_checkpoint(root / "medium-b.safetensors", seed=2, variant=VARIANT)
        loras = [write_tiny_lora(root / f"lora-{i}.safetensors", seed=i, variant=VARIANT) for i in (1, 2)]
        print(f"models written in {time.perf_counter() - started:.1f} s: checkpoint {fp16.stat().st_size / 1e6:.0f} MB "
              f"(float16), {fp32.stat().st_size / 1e6:.0f} MB (float32); LoRA {loras[0].stat().st_size / 1e6:.1f} MB",
              flush=True)
        loader = CheckpointLoader(device, config_cache_dir=root / "configs")
        bench_load(loader, fp16, fp32)
        bench_load_large(loader, root)
        bench_switch(loader, fp16, b)
        bench_lora(loader, fp16, loras)
        asyncio.run(bench_generate(loader, device_name, fp16, root / "stack"))


if __name__ == "__main__":
    sys.exit(main())
