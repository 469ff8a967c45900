"""Ultimate SD Upscale's seams fix: redraw the borders between tiles and blend them in.

Band pass: a band `width` pixels wide centred on every border, redrawn in pieces of one tile along it,
blended with a mask that is full on the border and falls to nothing at the band's edges (then blurred
by `mask_blur`). Half-tile offset: the same with a band one tile wide, i.e. tiles offset by half a tile
so each is centred on a border. Vertical borders first, then horizontal ones (their crossings get both).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from inference_svc.patches import Patch, aligned, blurred, fade_in
from inference_svc.tile_canvas import Tile, positions

BAND = "band"
HALF_TILE = "half_tile"


def borders(length: int, tile: int, overlap: int) -> list[int]:
    """Where one tile hands over to the next along an axis: the middle of their overlap."""
    starts, size = positions(length, tile, overlap)
    return [(b + a + size) // 2 for a, b in pairwise(starts)]


def _across(lo: int, hi: int, border: int, half: int, sigma: float) -> np.ndarray:
    coords = np.arange(lo, hi) + 0.5
    triangle = np.clip(1 - np.abs(coords - border) / max(half, 1), 0, 1)
    peak = triangle.max() if triangle.size else 1.0
    soft = blurred(triangle, sigma)
    return soft * (peak / max(soft.max(), 1e-8))  # the border itself stays fully redrawn


def seam_patches(mode: str, width: int, height: int, tile: int, overlap: int, band: int,
                 mask_blur: float) -> list[Patch]:
    if mode not in (BAND, HALF_TILE):
        return []
    span = band if mode == BAND else tile
    patches: list[Patch] = []
    for vertical in (True, False):
        length, across_len = (height, width) if vertical else (width, height)
        for border in borders(across_len, tile, overlap):
            lo, hi = aligned(border - span // 2, border + span // 2, across_len)
            profile = _across(lo, hi, border, span // 2, mask_blur)
            # Pieces of one tile along the border, overlapping by the band so each fades into the last.
            chunk_overlap = min(max(span, 8) // 8 * 8, tile // 2)
            starts, size = positions(length, tile, chunk_overlap)
            for i, start in enumerate(starts):
                along = fade_in(size, (starts[i - 1] + size - start) if i else 0)
                if vertical:
                    patches.append(Patch(Tile(lo, start, hi - lo, size), along[:, None] * profile[None, :]))
                else:
                    patches.append(Patch(Tile(start, lo, size, hi - lo), profile[:, None] * along[None, :]))
    return patches
