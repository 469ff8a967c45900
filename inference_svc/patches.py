"""Patches: areas of a finished upscale redrawn once more and blended in with a mask (seams fix, regions).

A patch is an area on the multiple-of-8 grid the VAE needs, and a mask over it (0..1): the redrawn
pixels replace the image's in proportion to the mask, so where the mask is 0 nothing changes. Patches
are applied one after another, each over the result of the ones before, as Ultimate SD Upscale does;
a patch that continues a previous one along a strip fades in over their overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from inference_svc.tile_canvas import Tile


@dataclass(frozen=True)
class Patch:
    area: Tile
    # (area.height, area.width) weights in 0..1.
    mask: np.ndarray


def aligned(lo: int, hi: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown outward to multiples of 8 and clipped to [0, limit) (a multiple of 8)."""
    return max(0, lo // 8 * 8), min(limit, -(-hi // 8) * 8)


def grown(area: Tile, padding: int, width: int, height: int) -> Tile:
    """The area with `padding` pixels of context on each side, within the image, on the 8-pixel grid."""
    x0, x1 = aligned(area.x - padding, area.x + area.width + padding, width)
    y0, y1 = aligned(area.y - padding, area.y + area.height + padding, height)
    return Tile(x0, y0, x1 - x0, y1 - y0)


def blurred(profile: np.ndarray, sigma: float) -> np.ndarray:
    """A 1-D Gaussian blur with zeros outside (a mask's soft edge)."""
    if sigma <= 0:
        return profile
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(profile, radius), kernel, mode="valid")


def fade_in(length: int, ramp: int) -> np.ndarray:
    """Rises linearly from ~0 to 1 over the first `ramp` pixels."""
    w = np.ones(length)
    n = min(ramp, length)
    if n > 0:
        w[:n] = (np.arange(n) + 0.5) / n
    return w


def composite(image: np.ndarray, patch: Patch, pixels: np.ndarray) -> None:
    """Blend `pixels` (the area's redraw, floats 0..1) into the uint8 `image` in place."""
    a = patch.area
    view = image[a.y : a.y + a.height, a.x : a.x + a.width]
    m = patch.mask[:, :, None]
    inside = m[:, :, 0] > 0
    mixed = view.astype(np.float32) / 255.0 * (1 - m) + pixels * m
    new = (mixed.clip(0, 1) * 255).round().astype(np.uint8)
    view[inside] = new[inside]  # where the mask is 0 the pixels stay exactly as they were


# (the image as redrawn so far, the patch, its 1-based index) -> the area's new pixels, floats 0..1.
RedrawFn = Callable[[Image.Image, Patch, int], np.ndarray]


def apply_patches(image: np.ndarray, patches: list[Patch], redraw: RedrawFn) -> None:
    """Redraw and blend in each patch in turn; each sees the pixels its predecessors redrew."""
    for index, patch in enumerate(patches, start=1):
        composite(image, patch, redraw(Image.fromarray(image), patch, index))
