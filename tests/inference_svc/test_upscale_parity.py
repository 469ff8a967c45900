"""Upscale's parity with Ultimate SD Upscale (issue 14): tile padding, mask blur, seams fix, regions; and the
band-of-rows blending that keeps memory bounded."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from model_types_stack import collect, expect_error, pixels, png_of, result_of, stages, start_stack

from devtools.tiny_models import write_tiny_lora
from inference_svc.patches import Patch, apply_patches, composite
from inference_svc.seams import BAND, HALF_TILE, borders, seam_patches
from inference_svc.tile_canvas import Tile, TileCanvas, feather_mask, plan_tiles
from modelmanager.v1 import inference_pb2, model_pb2

CKPT, LORA = model_pb2.MODEL_TYPE_CHECKPOINT, model_pb2.MODEL_TYPE_LORA


@pytest.fixture
async def stack(volumes, channel_factory, tmp_path, tiny):
    stack, servers = await start_stack(volumes, channel_factory, tmp_path)
    await stack.add(tiny.checkpoint_a, CKPT, activate=True)
    yield stack
    for server in servers:
        await server.stop(0)


def gradient(size: int = 64) -> bytes:
    """A smooth synthetic image: any step across a tile border is the tiles' doing."""
    ramp = np.linspace(0, 255, size)
    return png_of(np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                            255 - (ramp[None, :] + ramp[:, None]) / 2], axis=-1))


def request(**fields) -> inference_pb2.UpscaleRequest:
    # 64 px source, 2x: 128 px in four 64 px tiles that do not overlap, so their borders are hard.
    defaults = {"image": gradient(), "scale_factor": 2.0, "steps": 2, "strength": 0.5, "seed": 3,
                "tile_size": 64, "tile_overlap": 0}
    return inference_pb2.UpscaleRequest(**{**defaults, **fields})


async def upscaled(stack, **fields) -> np.ndarray:
    return pixels(result_of(await collect(stack.inference.Upscale(request(**fields)))).png)


def seam_discontinuity(image: np.ndarray, tile: int = 64, overlap: int = 0) -> float:
    """The mean step between neighbouring pixels across the tile borders (columns and rows), in 8-bit levels."""
    height, width = image.shape[:2]
    image = image.astype(float)
    across = ([np.abs(image[:, b] - image[:, b - 1]).mean() for b in borders(width, tile, overlap)]
              + [np.abs(image[b] - image[b - 1]).mean() for b in borders(height, tile, overlap)])
    return float(np.mean(across))


def tiled_gradient(size: int = 256, tile: int = 64) -> np.ndarray:
    """A smooth gradient as tile-by-tile img2img leaves it: each tile drifted by its own brightness (the seams)."""
    ramp = np.linspace(40, 215, size)
    image = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                      np.full((size, size), 128.0)], axis=-1)
    rng = np.random.default_rng(5)
    for y in range(0, size, tile):
        for x in range(0, size, tile):
            image[y : y + tile, x : x + tile] += rng.uniform(-20, 20)
    return image.clip(0, 255).round().astype(np.uint8)


def smoothing_redraw(source, patch: Patch, index: int) -> np.ndarray:
    """A redraw that keeps content and removes steps, as a denoiser does at low strength: a Gaussian blur of
    the area with 16 px of context (deterministic, so the number below is the pass's, not a model's noise)."""
    from PIL import ImageFilter

    a = patch.area
    box = (max(0, a.x - 16), max(0, a.y - 16), min(source.width, a.x + a.width + 16),
           min(source.height, a.y + a.height + 16))
    blurred = np.asarray(source.crop(box).filter(ImageFilter.GaussianBlur(6))).astype(float) / 255
    dx, dy = a.x - box[0], a.y - box[1]
    return blurred[dy : dy + a.height, dx : dx + a.width]


@pytest.mark.parametrize("mode", [BAND, HALF_TILE])
def test_a_seams_fix_pass_lowers_the_discontinuity_across_tile_borders(mode):
    image = tiled_gradient()
    before = seam_discontinuity(image)
    patches = seam_patches(mode, 256, 256, tile=64, overlap=0, band=32, mask_blur=4)
    fixed = image.copy()
    apply_patches(fixed, patches, smoothing_redraw)
    after = seam_discontinuity(fixed)
    inside = float(np.abs(np.diff(image[:, 8:56].astype(float), axis=1)).mean())  # the gradient's own step
    print(f"seam discontinuity ({mode}): {before:.2f} -> {after:.2f} levels (gradient step {inside:.2f})")
    assert before > 5 * inside  # the drifted tiles show
    assert after < before / 4


async def test_the_seams_fix_pass_runs_through_the_wire_near_the_borders_only(stack):
    """The tiny random model draws noise, not the gradient, so no seam to measure here (see above): the pass
    runs, redraws around the borders, and leaves pixels far from them alone."""
    plain = await upscaled(stack)
    for mode in (inference_pb2.SEAMS_FIX_BAND_PASS, inference_pb2.SEAMS_FIX_HALF_TILE):
        events = await collect(stack.inference.Upscale(request(seams_fix=mode, seams_fix_strength=0.5,
                                                               seams_fix_width=32)))
        assert "seams_fix" in stages(events)
        fixed = pixels(result_of(events).png)
        changed = np.abs(fixed - plain).sum(axis=-1) > 0
        assert changed[:, 60:68].mean() > 0.5 and changed[60:68].mean() > 0.5
        if mode == inference_pb2.SEAMS_FIX_BAND_PASS:  # 32 px bands on the border at 64 (+ mask blur)
            assert not changed[:40, :40].any()


async def test_the_seams_fix_default_strength_works_at_few_steps(stack):
    # The default strength must denoise at least one of the job's steps: at 2 steps 0.35 would be none (refused).
    events = await collect(stack.inference.Upscale(request(seams_fix=inference_pb2.SEAMS_FIX_BAND_PASS,
                                                           seams_fix_width=32)))
    assert "seams_fix" in stages(events) and result_of(events).png


async def test_tile_padding_and_mask_blur_change_the_tiles_and_their_defaults_change_nothing(stack):
    plain = await upscaled(stack, tile_overlap=16)
    assert np.array_equal(await upscaled(stack, tile_overlap=16, tile_padding=0, mask_blur=0), plain)
    padded = await upscaled(stack, tile_overlap=16, tile_padding=16)
    assert np.abs(padded - plain).mean() > 0.5  # img2img saw context around each tile
    blurred = await upscaled(stack, tile_overlap=16, mask_blur=8)
    difference = np.abs(blurred - plain).sum(axis=-1)
    assert difference.max() > 0
    assert difference[:40, :40].max() == 0  # only where tiles overlap: one tile alone is unchanged


async def test_a_region_changes_only_its_rectangle(stack, tiny, tmp_path):
    lora = await stack.add(write_tiny_lora(tmp_path / "region-lora.safetensors", seed=4), LORA)
    plain = await upscaled(stack, tile_overlap=16)
    region = inference_pb2.UpscaleRegion(x=8, y=12, width=20, height=16, prompt="a red brick wall",
                                         loras=[model_pb2.LoraSelection(name=lora, weight=1.0)])
    events = await collect(stack.inference.Upscale(request(tile_overlap=16, regions=[region])))
    assert "regions" in stages(events)
    with_region = pixels(result_of(events).png)
    inside = np.zeros(plain.shape[:2], dtype=bool)
    inside[24:56, 16:56] = True  # (8, 12) 20x16 in the source, 2x
    changed = np.abs(with_region - plain).sum(axis=-1) > 0
    assert not changed[~inside].any()
    assert changed[inside].mean() > 0.5
    # The global set is back for the next job: the same request without regions is the plain image again.
    assert np.array_equal(await upscaled(stack, tile_overlap=16), plain)


async def test_bad_parity_settings_are_invalid_argument(stack):
    outside = inference_pb2.UpscaleRegion(x=40, y=40, width=40, height=8, prompt="x")
    await expect_error(collect(stack.inference.Upscale(request(regions=[outside]))),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REGION")
    empty = inference_pb2.UpscaleRegion(x=4, y=4, width=0, height=8)
    await expect_error(collect(stack.inference.Upscale(request(regions=[empty]))),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REGION")
    many = [inference_pb2.UpscaleRegion(x=0, y=0, width=4, height=4)] * 17
    await expect_error(collect(stack.inference.Upscale(request(regions=many))),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REGION")
    await expect_error(collect(stack.inference.Upscale(request(tile_padding=12))),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SIZE")
    await expect_error(collect(stack.inference.Upscale(request(mask_blur=65))),
                       grpc.StatusCode.INVALID_ARGUMENT, "OUT_OF_RANGE_VALUE")
    await expect_error(collect(stack.inference.Upscale(request(seams_fix=7))),
                       grpc.StatusCode.INVALID_ARGUMENT, "OUT_OF_RANGE_VALUE")
    await expect_error(collect(stack.inference.Upscale(request(seams_fix=1, seams_fix_strength=1.5))),
                       grpc.StatusCode.INVALID_ARGUMENT, "OUT_OF_RANGE_VALUE")


@pytest.mark.parametrize(("width", "height", "tile", "overlap", "blur"),
                         [(112, 80, 64, 16, 0.0), (200, 136, 64, 24, 4.0), (64, 64, 64, 0, 0.0)])
def test_the_band_canvas_equals_a_whole_image_weighted_blend(width, height, tile, overlap, blur):
    rng = np.random.default_rng(1)
    tiles = plan_tiles(width, height, tile, overlap)
    results = [rng.random((t.height, t.width, 3)) for t in tiles]
    canvas = TileCanvas(width, height, tile, overlap, blur=blur)
    for t, r in zip(tiles, results, strict=True):
        canvas.add(t, r)
    banded = canvas.finish().astype(int)
    if blur == 0:
        acc, weight = np.zeros((height, width, 3)), np.zeros((height, width, 1))
        for t, r in zip(tiles, results, strict=True):
            mask = feather_mask(t, width, height, overlap)
            acc[t.y : t.y + t.height, t.x : t.x + t.width] += r * mask
            weight[t.y : t.y + t.height, t.x : t.x + t.width] += mask
        expected = ((acc / weight).clip(0, 1) * 255).round().astype(int)
        assert np.abs(banded - expected).max() <= 1
    # Where one tile alone covers a pixel, the pixel is that tile's.
    first = (results[0][:8, :8].clip(0, 1) * 255).round().astype(int)
    assert np.abs(banded[:8, :8] - first).max() <= 1


def test_a_patch_leaves_every_pixel_its_mask_does_not_touch_unchanged():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    before = image.copy()
    mask = np.zeros((16, 16))
    mask[4:12, 4:12] = np.linspace(0.1, 1, 8)[None, :]
    composite(image, Patch(Tile(8, 8, 16, 16), mask), np.ones((16, 16, 3)))
    changed = np.any(image != before, axis=-1)
    assert not changed[:12].any() and not changed[:, :12].any() and not changed[20:].any()
    assert (image[12:20, 19] == 255).all()  # full weight: the patch's pixels
