"""Upscale figures (issue 14): peak memory at 2048x2048 and 4096x4096 output, and stage one's upscaler model
against Lanczos on the same image.

    python -m bench upscale            (MODELMGR_BENCH_UPSCALE_QUICK=1: 1024x1024 and 2048x2048 instead)

* memory: each size runs in a child process of its own (a fresh interpreter: peaks do not carry over) that
          loads the tiny SDXL-shaped checkpoint (devtools.tiny_models) and a tiny Real-ESRGAN Compact, then
          runs Upscale's job body (stage one through the upscaler model in 256 px tiles, then the img2img refine
          in 512 px tiles overlapping by 64, one denoising step each) on a gradient image of half the size.
          Reported: the child's peak RSS (getrusage), its RSS once the models are loaded, and the numpy peak
          during the job (tracemalloc). Target: the 4096x4096 peak at most 1.5x the 2048x2048 one.
* stage one: the upscaler model over tiles vs a Lanczos resize of the same image to the same size: time and
          the numpy peak of each.
On the CPU, float32. The tiny models keep the run to a couple of minutes; their weights are random, so the
figures are about memory and time, not image quality.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TILE, OVERLAP = 512, 64


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _gradient(size: int):
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size, dtype=np.float32)
    rgb = np.stack([np.broadcast_to(ramp[None, :], (size, size)), np.broadcast_to(ramp[:, None], (size, size)),
                    np.full((size, size), 128, np.float32)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def child(output: int, root: Path) -> dict[str, float]:
    """One Upscale job body at `output` px a side; what it measured."""
    import torch

    from inference_svc.checkpoint_cache import CachedCheckpoint
    from inference_svc.checkpoint_loader import CheckpointLoader
    from inference_svc.device import resolve_device
    from inference_svc.upscale_models import enlarge, load_upscaler
    from inference_svc.upscaler import UpscaleParams, upscale

    torch.set_num_threads(1)
    device = resolve_device("cpu")
    pipe = CheckpointLoader(device, config_cache_dir=root / "configs").load(root / "tiny.safetensors")
    pipe.set_progress_bar_config(disable=True)
    entry = CachedCheckpoint("tiny", root / "tiny.safetensors", (0, 0), pipe, 0, 0.0,
                             scheduler_config=dict(pipe.scheduler.config))
    descriptor = load_upscaler(root / "tiny-2x.safetensors", device.device, device.dtype)
    image = _gradient(output // 2)
    params = UpscaleParams(prompt="a photo", negative_prompt="", scale_factor=2.0, steps=2, strength=0.5,
                           guidance_scale=5.0, seed=1, tile_size=TILE, tile_overlap=OVERLAP)
    loaded_kib = _rss_kib()
    tracemalloc.start()
    started = time.perf_counter()
    enlarged = enlarge(descriptor, image, (output, output), lambda i, n: None, lambda: False)
    result = upscale(entry, image, params, lambda *a, **k: None, lambda: False, enlarged=enlarged)
    seconds = time.perf_counter() - started
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.size == (output, output)
    return {"output": output, "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loaded_rss_mib": loaded_kib / 1024, "numpy_peak_mib": numpy_peak / 2**20}


def stage_one(root: Path, source: int) -> None:
    import torch

    from inference_svc.device import resolve_device
    from inference_svc.upscale_models import enlarge, load_upscaler

    torch.set_num_threads(1)
    device = resolve_device("cpu")
    descriptor = load_upscaler(root / "tiny-2x.safetensors", device.device, device.dtype)
    image = _gradient(source)
    size = (2 * source, 2 * source)
    for name, model in (("lanczos", None), ("upscaler model (Compact 2x, 256 px tiles)", descriptor)):
        tracemalloc.start()
        started = time.perf_counter()
        enlarge(model, image, size, lambda i, n: None, lambda: False)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"  stage one {source}->{2 * source}: {name:42s} {seconds:7.2f} s   numpy peak {peak:7.1f} MiB", flush=True)


def main() -> None:
    from devtools.tiny_models import write_tiny_checkpoint, write_tiny_esrgan

    quick = os.environ.get("MODELMGR_BENCH_UPSCALE_QUICK") == "1"
    sizes = (1024, 2048) if quick else (2048, 4096)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tiny_checkpoint(root / "tiny.safetensors", seed=1)
        write_tiny_esrgan(root / "tiny-2x.safetensors")
        figures = []
        for size in sizes:
            out = subprocess.run([sys.executable, "-m", "bench.bench_upscale", "--child", str(size), str(root)],
                                 check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            figures.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for f in figures:
            print(f"  Upscale to {f['output']}x{f['output']}: peak RSS {f['peak_rss_mib']:7.1f} MiB "
                  f"(models loaded: {f['loaded_rss_mib']:.1f} MiB, job +{f['peak_rss_mib'] - f['loaded_rss_mib']:.1f} MiB), "
                  f"numpy peak {f['numpy_peak_mib']:.1f} MiB, {f['seconds']:.1f} s", flush=True)
        small, large = figures
        ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
        job_ratio = ((large["peak_rss_mib"] - large["loaded_rss_mib"])
                     / max(small["peak_rss_mib"] - small["loaded_rss_mib"], 1e-6))
        print(f"  peak RSS {large['output']}² / {small['output']}²: {ratio:.2f}x (target <= 1.5x: "
              f"{'met' if ratio <= 1.5 else 'NOT met'}); the job's own increment {job_ratio:.2f}x for 4x the pixels",
              flush=True)
        stage_one(root, sizes[0] // 2)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), Path(sys.argv[3]))))
    else:
        main()
