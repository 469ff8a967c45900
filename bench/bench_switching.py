"""Checkpoint and LoRA switch figures (issue 15), each a ratio against a baseline measured in the same run.

    python -m bench switching           (MODELMGR_BENCH_DEVICE=auto by default: auto, cpu, cuda, cuda:N)

* cold switch: an in-place switch between two same-architecture checkpoints (every byte differs, so
               every tensor is read: the cache holds one pipeline, nothing parked)
               vs  safetensors.torch.load_file of the same file onto the device, cast, every byte read;
               at "medium" (283 MB float16) and "large" (SDXL's widths, 1.9 GB float16; when memory allows)
* shared:      a switch to a fine-tune with the same text encoders and VAE: bytes read, and time vs load_file
* LoRA step:   one UNet denoising step (CFG batch) with a two-LoRA set merged   vs  the bare model
               (also the set unmerged, for the switch-over), on two pipelines of the same file
* LoRA switch: first request with a new set (load two files + merge), and a switch between two loaded
               sets (restore + merge); MERGE_MIN_STEPS's break-even = switch cost / unmerged per-step overhead

Page cache warm on both sides (the files are read before timing). Best of a few runs, interleaved.
"""

from __future__ import annotations

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

from bench.bench_inference import _available_bytes, _load_file_to, _sync, best_of_pairs, line, timed
from devtools.model_files import save_tensors
from devtools.tiny_models import write_tiny_checkpoint, write_tiny_lora
from inference_svc.checkpoint_cache import CheckpointCache
from inference_svc.checkpoint_loader import CheckpointLoader, read_header
from inference_svc.device import DeviceInfo, resolve_device
from inference_svc.lora_manager import MERGE_MIN_STEPS, LoraManager, LoraSpec

SIZE = 256


def _rewrite(src: Path, dst: Path, negate: Callable[[str], bool]) -> Path:
    """A copy of `src` with the tensors `negate` picks negated: other bytes, same shapes."""
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        metadata = f.metadata()
    state = load_file(str(src))
    for key in state:
        if negate(key) and state[key].is_floating_point():
            state[key] = -state[key]
    return save_tensors(dst, state, metadata)


def _tensor_bytes(path: Path, prefix: str = "") -> int:
    return sum(t["data_offsets"][1] - t["data_offsets"][0] for k, t in read_header(path)[0].items()
               if k.startswith(prefix))


def _one_pipeline_cache(loader: CheckpointLoader, path: Path) -> CheckpointCache:
    size = loader.estimate_bytes(path)
    return CheckpointCache(loader, loader.device, device_budget=int(size * 1.5), park_budget=0)


def bench_cold_switch(loader: CheckpointLoader, a: Path, b: Path, label: str, runs: int) -> None:
    cache = _one_pipeline_cache(loader, a)
    cache.acquire("a", a)
    cache.acquire("b", b)
    # Digests off the request path, done before timing (they would find nothing shared here anyway).
    cache.digests.wait(a)
    cache.digests.wait(b)
    turn = {"next": "a"}
    read = []

    def switch() -> None:
        name = turn["next"]
        turn["next"] = "b" if name == "a" else "a"
        acquired = cache.acquire(name, a if name == "a" else b)
        assert acquired.in_place, "expected an in-place switch"
        read.append(acquired.bytes_read)

    with torch.inference_mode():
        load_file(str(a)), load_file(str(b))
        ours, base = best_of_pairs(runs, lambda: _load_file_to(b, loader.device), switch)
    line(f"cold switch {label}, in place: vs load_file (all bytes read)", ours, base, "(target <= 1.15 / 1.3)")
    print(f"  bytes read per switch {statistics.median(read) / 1e6:.1f} MB of {_tensor_bytes(b) / 1e6:.1f} MB",
          flush=True)
    cache.clear()


def bench_shared_switch(loader: CheckpointLoader, a: Path, shared: Path) -> None:
    cache = _one_pipeline_cache(loader, a)
    cache.acquire("a", a)
    cache.acquire("fine-tune", shared)
    cache.digests.wait(a)
    cache.digests.wait(shared)
    results = []

    def switch() -> None:
        target = shared if len(results) % 2 else a  # "fine-tune" is resident: a first
        results.append(cache.acquire(target.name, target))
        assert results[-1].in_place, "expected an in-place switch"

    with torch.inference_mode():
        ours, base = best_of_pairs(5, lambda: _load_file_to(shared, loader.device), switch)
    unet = _tensor_bytes(shared, "model.diffusion_model.")
    read = {r.bytes_read for r in results}
    line("switch to a fine-tune sharing text encoders + VAE: vs load_file", ours, base)
    print(f"  bytes read per switch {sorted(read)} (UNet {unet}, whole file {_tensor_bytes(shared)}): "
          f"{'only the UNet' if read == {unet} else 'MORE than the UNet'}", flush=True)
    cache.clear()


def _unet_inputs(pipe, device: DeviceInfo) -> dict:
    unet = pipe.unet
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device.device, device.dtype)

    return {
        "sample": randn(2, unet.config.in_channels, SIZE // 8, SIZE // 8),
        "timestep": torch.tensor(500, device=device.device),
        "encoder_hidden_states": randn(2, 77, unet.config.cross_attention_dim),
        "added_cond_kwargs": {
            "text_embeds": randn(2, pipe.text_encoder_2.config.projection_dim),
            "time_ids": randn(2, 6),
        },
    }


def bench_lora(loader: CheckpointLoader, checkpoint: Path, loras: list[Path]) -> None:
    device = loader.device
    cache = CheckpointCache(loader, device, device_budget=10**12, park_budget=0, in_place=False)
    bare = loader.load(checkpoint)
    entry = cache.acquire("a", checkpoint).entry
    inputs = _unet_inputs(bare, device)

    def step(pipe) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return pipe.unet(**inputs)
        return run

    set_one = [LoraSpec(p.name, p, w) for p, w in zip(loras, (0.8, 0.5), strict=True)]
    set_two = [LoraSpec(p.name, p, w) for p, w in zip(loras, (0.6, 0.9), strict=True)]
    merged = LoraManager(merge_min_steps=1)
    unmerged = LoraManager(merge_min_steps=10**9)
    step(bare)()  # warm-up
    started = time.perf_counter()
    merged.apply(entry, set_one, steps=30)
    _sync()
    first = time.perf_counter() - started
    bare_step, merged_step = [], []
    for _ in range(5):
        bare_step.append(timed(step(bare)))
        merged_step.append(timed(step(entry.pipe)))
    line("LoRA: one denoising step, two-LoRA set merged vs the bare model (best)", min(merged_step), min(bare_step),
         "(target <= 1.05)")
    line("LoRA: one denoising step, two-LoRA set merged vs the bare model (median)", statistics.median(merged_step),
         statistics.median(bare_step))
    unmerged.apply(entry, set_one, steps=1)
    unmerged_step = [timed(step(entry.pipe)) for _ in range(3)]
    line("LoRA: one denoising step, the set unmerged vs the bare model", min(unmerged_step), min(bare_step))
    line("LoRA: first request with a new set (load 2 files + merge) vs one bare step", first, min(bare_step))
    switch = min(timed(lambda s=s: merged.apply(entry, s, steps=30)) for s in (set_two, set_one, set_two))
    line("LoRA: switch between two loaded sets, merged (restore + merge) vs one bare step", switch, min(bare_step))
    repeat = min(timed(lambda: merged.apply(entry, set_two, steps=30)) for _ in range(3))
    line("LoRA: the same set again (stays merged) vs one bare step", repeat, min(bare_step), "(target ~0)")
    overhead = max(min(unmerged_step) - min(bare_step), 1e-9)
    print(f"  LoRA merge + restore vs the unmerged overhead of one step: break-even at {switch / overhead:.1f} "
          f"steps (MERGE_MIN_STEPS = {MERGE_MIN_STEPS})", flush=True)
    cache.clear()


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes skew CPU figures)",
          flush=True)
    from inference_svc.app import quiet_libraries
    from service_kit import configure_logging

    configure_logging("bench", level="WARNING", json=False)
    quiet_libraries()
    device = resolve_device(os.environ.get("MODELMGR_BENCH_DEVICE", "auto"))
    print(f"device {device.device}, dtype {device.dtype_name}, torch threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-switching-") as tmp:
        root = Path(tmp)
        loader = CheckpointLoader(device, config_cache_dir=root / "configs")
        started = time.perf_counter()
        a = write_tiny_checkpoint(root / "medium-a.safetensors", seed=1, variant="medium")
        b = _rewrite(a, root / "medium-b.safetensors", lambda key: True)
        shared = _rewrite(a, root / "medium-a-unet.safetensors", lambda key: key.startswith("model.diffusion_model."))
        loras = [write_tiny_lora(root / f"lora-{i}.safetensors", seed=i, variant="medium") for i in (1, 2)]
        print(f"medium models written in {time.perf_counter() - started:.1f} s: {a.stat().st_size / 1e6:.0f} MB "
              f"float16", flush=True)
        bench_cold_switch(loader, a, b, f"medium {a.stat().st_size / 1e6:.0f} MB float16", runs=5)
        bench_shared_switch(loader, a, shared)
        bench_lora(loader, a, loras)
        for path in (a, b, shared):
            path.unlink()
        # In place, one pipeline (3.8 GB in float32) and the baseline's copy, plus both files cached.
        if _available_bytes() < 12 * 1024**3:
            print("cold switch, large variant: skipped (needs 12 GB of free memory)", flush=True)
            return
        started = time.perf_counter()
        a = write_tiny_checkpoint(root / "large-a.safetensors", seed=1, variant="large")
        b = _rewrite(a, root / "large-b.safetensors", lambda key: True)
        print(f"large models written in {time.perf_counter() - started:.1f} s: {a.stat().st_size / 1e9:.2f} GB "
              "float16", flush=True)
        bench_cold_switch(loader, a, b, f"large {a.stat().st_size / 1e9:.2f} GB float16", runs=3)


if __name__ == "__main__":
    sys.exit(main())
