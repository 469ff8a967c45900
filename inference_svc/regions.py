"""Regional prompts (the original app's upscale_regions): rectangles redrawn with their own prompt and LoRAs.

A region is given in the source image's pixels and scaled with it. It is redrawn in pieces of at most
one tile (with the job's tile padding as context), and blended in with a mask that is 0 outside the
rectangle and rises to 1 inside it over `mask_blur` pixels (none along the image's own edges): nothing
outside the rectangle changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inference_svc.patches import Patch, aligned, fade_in
from inference_svc.tile_canvas import Tile, positions

MAX_REGIONS = 16


@dataclass(frozen=True)
class RegionRequest:
    """As the client sent it (source pixels), checked against the source image's size."""

    x: int
    y: int
    width: int
    height: int
    prompt: str
    loras: tuple[Any, ...] = ()


def scaled_rect(region: RegionRequest, src: tuple[int, int], out: tuple[int, int]) -> Tile:
    sx, sy = out[0] / src[0], out[1] / src[1]
    x0, y0 = round(region.x * sx), round(region.y * sy)
    x1 = min(out[0], round((region.x + region.width) * sx))
    y1 = min(out[1], round((region.y + region.height) * sy))
    return Tile(x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def _inside(lo: int, hi: int, r0: int, r1: int, limit: int, ramp: int) -> np.ndarray:
    """Over [lo, hi): 0 outside [r0, r1), rising to 1 over `ramp` pixels from each edge not at the image's."""
    coords = np.arange(lo, hi)
    w = ((coords >= r0) & (coords < r1)).astype(np.float64)
    if ramp > 0:
        if r0 > 0:
            w = np.minimum(w, np.clip((coords - r0 + 0.5) / ramp, 0, 1))
        if r1 < limit:
            w = np.minimum(w, np.clip((r1 - coords - 0.5) / ramp, 0, 1))
    return w


def region_patches(rect: Tile, width: int, height: int, tile: int, overlap: int, mask_blur: int) -> list[Patch]:
    x0, x1 = aligned(rect.x, rect.x + rect.width, width)
    y0, y1 = aligned(rect.y, rect.y + rect.height, height)
    xs, tw = positions(x1 - x0, tile, overlap)
    ys, th = positions(y1 - y0, tile, overlap)
    patches = []
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            ax, ay = x0 + x, y0 + y
            wx = _inside(ax, ax + tw, rect.x, rect.x + rect.width, width, mask_blur)
            wy = _inside(ay, ay + th, rect.y, rect.y + rect.height, height, mask_blur)
            # Later pieces fade in over the earlier ones they overlap.
            wx = wx * fade_in(tw, (xs[i - 1] + tw - x) if i else 0)
            wy = wy * fade_in(th, (ys[j - 1] + th - y) if j else 0)
            patches.append(Patch(Tile(ax, ay, tw, th), wy[:, None] * wx[None, :]))
    return patches
