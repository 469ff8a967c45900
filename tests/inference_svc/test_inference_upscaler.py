"""Tiling and feathered blending of the upscaler."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference_svc.upscaler import Tile, feather_mask, plan_tiles, target_size


@pytest.mark.parametrize(("width", "height", "tile", "overlap"), [(64, 64, 64, 16), (128, 96, 48, 16), (200, 64, 64, 8)])
def test_tiles_cover_the_image_and_blend_weights_are_positive(width, height, tile, overlap):
    tiles = plan_tiles(width, height, tile, overlap)
    weight = np.zeros((height, width, 1))
    for t in tiles:
        assert t.x + t.width <= width and t.y + t.height <= height
        weight[t.y : t.y + t.height, t.x : t.x + t.width] += feather_mask(t, width, height, overlap)
    assert weight.min() > 0


def test_feather_ramps_only_on_inner_edges():
    mask = feather_mask(Tile(0, 0, 64, 64), 112, 64, 16)[:, :, 0]
    assert mask[32, 0] == 1.0  # image border: no ramp
    assert mask[32, 63] < 0.1  # edge shared with the next tile: ramps down
    assert mask[32, 40] == 1.0


def test_blending_a_constant_image_is_seamless():
    # Every tile returning the same colour must give exactly that colour back.
    width, height, overlap = 112, 80, 16
    acc = np.zeros((height, width, 3))
    weight = np.zeros((height, width, 1))
    for t in plan_tiles(width, height, 64, overlap):
        mask = feather_mask(t, width, height, overlap)
        acc[t.y : t.y + t.height, t.x : t.x + t.width] += 0.25 * mask
        weight[t.y : t.y + t.height, t.x : t.x + t.width] += mask
    np.testing.assert_allclose(acc / weight, 0.25)


def test_target_size_is_a_multiple_of_8():
    assert target_size(33, 20, 2.0) == (64, 40)
    assert target_size(Image.new("RGB", (64, 48)).width, 48, 1.5) == (96, 72)
