"""Upscale: enlarge, then refine with img2img over overlapping tiles blended with feathered masks.

Each tile is refined on its own (so any output size fits in memory), with a
seed derived from the job's seed and the tile index (so a seed reproduces the
image). Where tiles overlap, each one's weight ramps linearly from ~0 at its
edge to 1 over the overlap, and the sum is normalised, so no seam shows.
When a ControlNet tile model lies on the models volume it conditions every
tile on its own low-resolution content, which keeps the refinement faithful
at higher strengths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inference_svc.checkpoint_cache import CachedCheckpoint
from inference_svc.device import DeviceInfo
from inference_svc.errors import ControlNetLoadFailed, shown_path
from inference_svc.pipelines import generator_for, set_scheduler, step_callback
from service_kit import get_logger

log = get_logger("inference_svc.upscaler")

# (step, total steps, tile 1-based, tile count)
TileStepFn = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class UpscaleParams:
    prompt: str
    negative_prompt: str
    scale_factor: float
    steps: int
    strength: float
    guidance_scale: float
    seed: int
    tile_size: int
    tile_overlap: int
    scheduler: str = ""


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The enlarged size, rounded to multiples of 8 (what the VAE needs)."""
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)


def _positions(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    if length <= tile:
        return [0], length
    stride = tile - overlap
    positions = [*range(0, length - tile, stride), length - tile]
    return positions, tile


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    xs, tw = _positions(width, tile, overlap)
    ys, th = _positions(height, tile, overlap)
    return [Tile(x, y, tw, th) for y in ys for x in xs]


def feather_mask(tile: Tile, width: int, height: int, overlap: int) -> np.ndarray:
    """Weights (h, w, 1): a linear ramp over `overlap` pixels on every side that borders another tile."""
    ramp = (np.arange(max(overlap, 1)) + 0.5) / max(overlap, 1)

    def axis(size: int, start: int, total: int) -> np.ndarray:
        w = np.ones(size)
        n = min(overlap, size // 2)
        if n > 0 and start > 0:
            w[:n] = np.minimum(w[:n], ramp[:n])
        if n > 0 and start + size < total:
            w[size - n :] = np.minimum(w[size - n :], ramp[:n][::-1])
        return w

    wx = axis(tile.width, tile.x, width)
    wy = axis(tile.height, tile.y, height)
    return (wy[:, None] * wx[None, :])[:, :, None]


def img2img_steps(steps: int, strength: float) -> int:
    """Denoising steps img2img actually runs (diffusers' get_timesteps)."""
    return min(int(steps * strength), steps)


class ControlNetTile:
    """The optional ControlNet tile model from the models volume (a diffusers folder), loaded once."""

    def __init__(self, folder: Path, device: DeviceInfo):
        self.folder = folder
        self.device = device
        self._model: Any = None

    @property
    def present(self) -> bool:
        return (self.folder / "config.json").is_file()

    def get(self) -> Any:
        if not self.present:
            return None
        if self._model is None:
            from diffusers import ControlNetModel

            try:
                model = ControlNetModel.from_pretrained(
                    self.folder, dtype=self.device.dtype, local_files_only=True
                )
            except Exception as exc:
                raise ControlNetLoadFailed(
                    f"ControlNet tile model in {shown_path(self.folder)} could not be loaded: {exc}"[:1000],
                    metadata={"path": shown_path(self.folder)},
                ) from exc
            self._model = model.to(self.device.device)
            log.info("controlnet.loaded", path=str(self.folder))
        return self._model


def upscale(
    entry: CachedCheckpoint,
    image: Image.Image,
    params: UpscaleParams,
    on_step: TileStepFn,
    cancelled: Callable[[], bool],
    controlnet: Any = None,
) -> Image.Image:
    from diffusers import StableDiffusionXLControlNetImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

    width, height = target_size(image.width, image.height, params.scale_factor)
    enlarged = image.resize((width, height), Image.Resampling.LANCZOS)
    tiles = plan_tiles(width, height, params.tile_size, params.tile_overlap)
    set_scheduler(entry, params.scheduler)
    # from_pipe shares the loaded modules (and their LoRA adapters); nothing is copied.
    if controlnet is not None:
        refiner = StableDiffusionXLControlNetImg2ImgPipeline.from_pipe(entry.pipe, controlnet=controlnet)
    else:
        refiner = StableDiffusionXLImg2ImgPipeline.from_pipe(entry.pipe)
    refiner.set_progress_bar_config(disable=True)

    total_steps = img2img_steps(params.steps, params.strength)
    accumulated = np.zeros((height, width, 3), dtype=np.float64)
    weights = np.zeros((height, width, 1), dtype=np.float64)
    for index, tile in enumerate(tiles, start=1):
        crop = enlarged.crop((tile.x, tile.y, tile.x + tile.width, tile.y + tile.height))
        extra: dict[str, Any] = {"control_image": crop} if controlnet is not None else {}

        def tile_step(step: int, total: int, index: int = index) -> None:
            on_step(step, total, index, len(tiles))

        with torch.inference_mode():
            result = refiner(
                prompt=params.prompt,
                negative_prompt=params.negative_prompt or None,
                image=crop,
                strength=params.strength,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                # One seed per tile, derived from the job's: reproducible, not repeated across tiles.
                generator=generator_for(params.seed + index - 1),
                callback_on_step_end=step_callback(tile_step, cancelled, total_steps),
                output_type="np",
                **extra,
            ).images[0]
        mask = feather_mask(tile, width, height, params.tile_overlap)
        accumulated[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] += result * mask
        weights[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] += mask
    blended = accumulated / np.maximum(weights, 1e-8)
    return Image.fromarray((blended.clip(0, 1) * 255).round().astype(np.uint8))
