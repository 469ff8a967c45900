"""Upscale: enlarge (stage one: `inference_svc.upscale_models`), then refine with img2img over overlapping
tiles blended with feathered masks; then, as Ultimate SD Upscale does, regions and a seams fix.

Each tile is refined on its own (so any output size fits in memory), with a
seed derived from the job's seed and the tile index (so a seed reproduces the
image). Where tiles overlap, each one's weight ramps linearly from ~0 at its
edge to 1 over the overlap, and the sum is normalised, so no seam shows.
When a ControlNet tile model lies on the models volume it conditions every
tile on its own low-resolution content, which keeps the refinement faithful
at higher strengths.

Ultimate SD Upscale's settings: tile padding gives img2img context around each tile (only the tile is
kept); mask blur softens the blend masks; regions (`inference_svc.regions`) and the seams fix
(`inference_svc.seams`) redraw patches of the finished image and blend them in (`inference_svc.patches`).
Only a band of float rows is held while tiles blend (`inference_svc.tile_canvas`).
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
from inference_svc.patches import Patch, apply_patches, grown
from inference_svc.pipelines import generator_for, set_scheduler, step_callback
from inference_svc.regions import RegionRequest, region_patches
from inference_svc.seams import seam_patches
from inference_svc.tile_canvas import Tile, TileCanvas, feather_mask, plan_tiles
from service_kit import get_logger

log = get_logger("inference_svc.upscaler")

# (step, total steps, tile 1-based, tile count, stage=...)
TileStepFn = Callable[..., None]


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
    tile_padding: int = 0
    mask_blur: int = 0
    # "", seams.BAND or seams.HALF_TILE.
    seams_fix: str = ""
    seams_fix_width: int = 64
    seams_fix_strength: float = 0.35
    seams_fix_mask_blur: int = 4
    seams_fix_padding: int = 16
    regions: tuple[RegionRequest, ...] = ()


@dataclass(frozen=True)
class RegionJob:
    """A region ready to redraw: its rectangle in output pixels, its prompt, and how to switch to its LoRAs."""

    rect: Tile
    prompt: str
    activate: Callable[[], object] = lambda: None


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The enlarged size, rounded to multiples of 8 (what the VAE needs)."""
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)


def patch_count(width: int, height: int, params: UpscaleParams, regions: list[Tile]) -> int:
    """Patches redrawn after the tiles (regions and seams fix): every one's steps count for the LoRA merge."""
    count = len(seam_patches(params.seams_fix, width, height, params.tile_size, params.tile_overlap,
                             params.seams_fix_width, params.seams_fix_mask_blur))
    for rect in regions:
        count += len(region_patches(rect, width, height, params.tile_size, params.tile_overlap, params.mask_blur))
    return count


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
    *,
    enlarged: Image.Image | None = None,
    regions: list[RegionJob] | None = None,
    after_regions: Callable[[], object] | None = None,
) -> Image.Image:
    """Refine `enlarged` (default: `image` Lanczos-resized to the target size) over tiles, then redraw the
    regions (each `activate`s its LoRAs first), then the seams (after `after_regions`, which puts the global
    LoRAs back). `on_step(step, total, tile, tiles)`, with `stage=` for regions and seams."""
    from diffusers import StableDiffusionXLControlNetImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

    width, height = target_size(image.width, image.height, params.scale_factor)
    if enlarged is None:
        enlarged = image.resize((width, height), Image.Resampling.LANCZOS)
    tiles = plan_tiles(width, height, params.tile_size, params.tile_overlap)
    set_scheduler(entry, params.scheduler)
    # from_pipe shares the loaded modules (and their LoRA adapters); nothing is copied.
    if controlnet is not None:
        refiner = StableDiffusionXLControlNetImg2ImgPipeline.from_pipe(entry.pipe, controlnet=controlnet)
    else:
        refiner = StableDiffusionXLImg2ImgPipeline.from_pipe(entry.pipe)
    refiner.set_progress_bar_config(disable=True)

    def redraw(source: Image.Image, area: Tile, seed: int, strength: float, padding: int, prompt: str,
               report: Callable[[int, int], None]) -> np.ndarray:
        """img2img of `area` of `source` with `padding` pixels of context; the area's pixels (floats 0..1)."""
        crop_area = grown(area, padding, width, height) if padding else area
        box = (crop_area.x, crop_area.y, crop_area.x + crop_area.width, crop_area.y + crop_area.height)
        crop = source.crop(box)
        extra: dict[str, Any] = {"control_image": crop} if controlnet is not None else {}
        with torch.inference_mode():
            result = refiner(
                prompt=prompt,
                negative_prompt=params.negative_prompt or None,
                image=crop,
                strength=strength,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                generator=generator_for(seed),
                callback_on_step_end=step_callback(report, cancelled, img2img_steps(params.steps, strength)),
                output_type="np",
                **extra,
            ).images[0]
        dx, dy = area.x - crop_area.x, area.y - crop_area.y
        return result[dy : dy + area.height, dx : dx + area.width]

    canvas = TileCanvas(width, height, params.tile_size, params.tile_overlap, blur=params.mask_blur / 2)
    for index, tile in enumerate(tiles, start=1):

        def tile_step(step: int, total: int, index: int = index) -> None:
            on_step(step, total, index, len(tiles))

        # One seed per tile, derived from the job's: reproducible, not repeated across tiles.
        canvas.add(tile, redraw(enlarged, tile, params.seed + index - 1, params.strength, params.tile_padding,
                                params.prompt, tile_step))
    out = canvas.finish()
    del enlarged

    def run_patches(patches: list[Patch], stage: str, seed: int, strength: float, padding: int, prompt: str) -> None:
        def redraw_patch(source: Image.Image, patch: Patch, index: int) -> np.ndarray:
            def patch_step(step: int, total: int) -> None:
                on_step(step, total, index, len(patches), stage=stage)

            return redraw(source, patch.area, seed + index - 1, strength, padding, prompt, patch_step)

        apply_patches(out, patches, redraw_patch)

    for number, region in enumerate(regions or [], start=1):
        region.activate()
        patches = region_patches(region.rect, width, height, params.tile_size, params.tile_overlap, params.mask_blur)
        run_patches(patches, "regions", params.seed + 1000 * number, params.strength, params.tile_padding,
                    region.prompt)
    seams = seam_patches(params.seams_fix, width, height, params.tile_size, params.tile_overlap,
                         params.seams_fix_width, params.seams_fix_mask_blur)
    if seams and regions and after_regions is not None:
        after_regions()  # the seams are redrawn with the global LoRAs again
    run_patches(seams, "seams_fix", params.seed + 100_000, params.seams_fix_strength, params.seams_fix_padding,
                params.prompt)
    return Image.fromarray(out)


__all__ = ["ControlNetTile", "RegionJob", "Tile", "UpscaleParams", "feather_mask", "img2img_steps", "patch_count",
           "plan_tiles", "target_size", "upscale"]
