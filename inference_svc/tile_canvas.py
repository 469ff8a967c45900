"""Blending a grid of overlapping tiles into an image while holding only a band of float rows.

A tile's blend weight is separable: a profile along x (ramps over the overlap on edges shared with
another tile, optionally blurred) times one along y. Over a full grid the weights' sum is separable too
(the column profiles' sum times the row profiles' sum), so each profile is normalised on its own and a
tile's contribution is final as soon as it is added: no weight image. Tiles come row by row, so rows
above the current tile row receive nothing more and are written out as 8-bit at once: the floats held
never exceed two tile rows, whatever the image size (what keeps a 4096x4096 upscale's memory near a
2048x2048 one's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int


def positions(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Tile starts along one axis (the last flush with the end) and the tile length."""
    if length <= tile:
        return [0], length
    stride = tile - overlap
    return [*range(0, length - tile, stride), length - tile], tile


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    xs, tw = positions(width, tile, overlap)
    ys, th = positions(height, tile, overlap)
    return [Tile(x, y, tw, th) for y in ys for x in xs]


def axis_profile(size: int, start: int, total: int, overlap: int, blur: float = 0.0) -> np.ndarray:
    """One tile's weights along an axis: 1, ramping linearly to ~0 over `overlap` pixels on each side that
    borders another tile; `blur` (pixels, a Gaussian's sigma) softens the ramps, never the image's edges."""
    w = np.ones(size)
    n = min(overlap, size // 2)
    ramp = (np.arange(max(overlap, 1)) + 0.5) / max(overlap, 1)
    inner_start, inner_end = start > 0, start + size < total
    if n > 0 and inner_start:
        w[:n] = np.minimum(w[:n], ramp[:n])
    if n > 0 and inner_end:
        w[size - n :] = np.minimum(w[size - n :], ramp[:n][::-1])
    if blur > 0 and (inner_start or inner_end):
        radius = int(3 * blur)
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / blur) ** 2)
        kernel /= kernel.sum()
        # Outside the tile: nothing on a shared edge (0), the tile's own value at the image's edge.
        padded = np.concatenate([np.full(radius, 0.0 if inner_start else w[0]), w,
                                 np.full(radius, 0.0 if inner_end else w[-1])])
        w = np.convolve(padded, kernel, mode="valid")
        w = np.maximum(w, 1e-6)  # stays a weight where the tile is the only one
    return w


def feather_mask(tile: Tile, width: int, height: int, overlap: int) -> np.ndarray:
    """Weights (h, w, 1) of one tile before normalisation."""
    wx = axis_profile(tile.width, tile.x, width, overlap)
    wy = axis_profile(tile.height, tile.y, height, overlap)
    return (wy[:, None] * wx[None, :])[:, :, None]


def normalised_profiles(length: int, starts: list[int], size: int, overlap: int, blur: float) -> list[np.ndarray]:
    """Each tile's axis profile divided by the sum of all profiles at that pixel."""
    profiles = [axis_profile(size, s, length, overlap, blur) for s in starts]
    total = np.zeros(length)
    for s, p in zip(starts, profiles, strict=True):
        total[s : s + size] += p
    return [p / total[s : s + size] for s, p in zip(starts, profiles, strict=True)]


class TileCanvas:
    """Accumulates the tiles of `plan_tiles(width, height, tile, overlap)`, in that order, into uint8 RGB."""

    def __init__(self, width: int, height: int, tile: int, overlap: int, blur: float = 0.0):
        self.width, self.height = width, height
        xs, tw = positions(width, tile, overlap)
        ys, th = positions(height, tile, overlap)
        self._nx = dict(zip(xs, normalised_profiles(width, xs, tw, overlap, blur), strict=True))
        self._ny = dict(zip(ys, normalised_profiles(height, ys, th, overlap, blur), strict=True))
        self.image = np.zeros((height, width, 3), dtype=np.uint8)
        self._band = np.zeros((min(2 * th, height), width, 3), dtype=np.float32)
        self._lo = 0  # the first row not yet written out; the band holds rows [lo, lo + len(band))

    def add(self, tile: Tile, pixels: np.ndarray) -> None:
        """`pixels`: (tile.height, tile.width, 3) floats in 0..1."""
        if tile.y > self._lo:
            self._flush(tile.y)
        weight = self._ny[tile.y][:, None, None] * self._nx[tile.x][None, :, None]
        top = tile.y - self._lo
        self._band[top : top + tile.height, tile.x : tile.x + tile.width] += (pixels * weight).astype(np.float32)

    def _flush(self, until: int) -> None:
        n = until - self._lo
        rows = self._band[:n]
        self.image[self._lo : until] = (rows.clip(0, 1) * 255).round().astype(np.uint8)
        self._band[:-n] = self._band[n:].copy()
        self._band[-n:] = 0
        self._lo = until

    def finish(self) -> np.ndarray:
        if self._lo < self.height:
            self._flush(self.height)
        return self.image
