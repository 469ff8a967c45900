"""Request messages -> checked job parameters (defaults as documented in inference.proto)."""

from __future__ import annotations

import secrets

from inference_svc.errors import EmptyLoraName, InvalidRegion, InvalidSize, OutOfRangeValue
from inference_svc.images import MAX_OUTPUT_SIDE, check_range, check_size
from inference_svc.pipelines import GenerateParams, check_scheduler
from inference_svc.regions import MAX_REGIONS, RegionRequest
from inference_svc.seams import BAND, HALF_TILE
from inference_svc.upscaler import UpscaleParams, target_size
from modelmanager.v1 import inference_pb2

SEAMS_FIX = {inference_pb2.SEAMS_FIX_UNSPECIFIED: "", inference_pb2.SEAMS_FIX_BAND_PASS: BAND,
             inference_pb2.SEAMS_FIX_HALF_TILE: HALF_TILE}


def _seed(message: inference_pb2.GenerateRequest | inference_pb2.UpscaleRequest) -> int:
    # Absent: a random one, reported in the result so the image can be made again.
    return message.seed if message.HasField("seed") else secrets.randbelow(2**32)


def check_loras(message: inference_pb2.GenerateRequest | inference_pb2.UpscaleRequest) -> None:
    for i, lora in enumerate(message.loras):
        if not lora.name.strip():
            raise EmptyLoraName(f"loras[{i}].name is empty", metadata={"field": f"loras[{i}].name"})
        if lora.HasField("weight"):
            check_range(f"loras[{i}].weight", lora.weight, -4.0, 4.0)


def generate_params(request: inference_pb2.GenerateRequest) -> GenerateParams:
    width = request.width or 1024
    height = request.height or 1024
    steps = request.steps or 30
    guidance = request.guidance_scale if request.HasField("guidance_scale") else 7.0
    check_size("width", width)
    check_size("height", height)
    check_range("steps", steps, 1, 150)
    check_range("guidance_scale", guidance, 0.0, 30.0)
    check_scheduler(request.scheduler)
    check_loras(request)
    return GenerateParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        width=width,
        height=height,
        steps=steps,
        guidance_scale=guidance,
        seed=_seed(request),
        scheduler=request.scheduler,
    )


def default_tile_overlap(tile: int) -> int:
    """128 px for the default 1024 px tiles, a quarter of smaller ones (a multiple of 8, as the VAE needs).

    A fixed 128 would exceed the tile_size/2 limit below tiles of 256 px: a client setting only
    tile_size would be refused for a field it never set.
    """
    return min(128, tile // 4) // 8 * 8


def upscale_params(request: inference_pb2.UpscaleRequest) -> UpscaleParams:
    scale = request.scale_factor or 2.0
    steps = request.steps or 20
    strength = request.strength if request.HasField("strength") else 0.35
    guidance = request.guidance_scale if request.HasField("guidance_scale") else 7.0
    tile = request.tile_size or 1024
    overlap = request.tile_overlap if request.HasField("tile_overlap") else default_tile_overlap(tile)
    check_range("scale_factor", scale, 1.0, 4.0)
    check_range("steps", steps, 1, 150)
    check_range("strength", strength, 0.0, 1.0)
    check_range("guidance_scale", guidance, 0.0, 30.0)
    check_size("tile_size", tile, minimum=32, maximum=2048)
    if overlap % 8 != 0 or not 0 <= overlap <= tile // 2:
        raise InvalidSize(
            f"tile_overlap must be a multiple of 8 between 0 and tile_size/2 ({tile // 2}), got {overlap}",
            metadata={"field": "tile_overlap", "value": overlap},
        )
    if int(steps * strength) < 1:
        check_range("strength", strength, 1.0 / steps, 1.0)
    check_scheduler(request.scheduler)
    check_loras(request)
    padding = _multiple_of_8("tile_padding", request.tile_padding, 0, 256)
    check_range("mask_blur", request.mask_blur, 0, 64)
    if request.seams_fix not in SEAMS_FIX:
        raise OutOfRangeValue(f"unknown seams_fix {request.seams_fix}", metadata={"field": "seams_fix"})
    seams_width = _multiple_of_8("seams_fix_width", request.seams_fix_width or 64, 8, 512)
    # The default strength, 0.35, denoises at least one step whatever `steps` is; a strength the client
    # chose is checked as given.
    seams_strength = (request.seams_fix_strength if request.HasField("seams_fix_strength")
                      else max(0.35, 1.0 / steps))
    check_range("seams_fix_strength", seams_strength, 0.0, 1.0)
    if request.seams_fix and int(steps * seams_strength) < 1:
        check_range("seams_fix_strength", seams_strength, 1.0 / steps, 1.0)
    seams_blur = request.seams_fix_mask_blur if request.HasField("seams_fix_mask_blur") else 4
    check_range("seams_fix_mask_blur", seams_blur, 0, 64)
    seams_padding = _multiple_of_8("seams_fix_padding",
                                   request.seams_fix_padding if request.HasField("seams_fix_padding") else 16, 0, 256)
    if len(request.regions) > MAX_REGIONS:
        raise InvalidRegion(f"{len(request.regions)} regions, at most {MAX_REGIONS}",
                            metadata={"field": "regions", "limit": MAX_REGIONS})
    regions = []
    for i, region in enumerate(request.regions):
        for j, lora in enumerate(region.loras):
            if not lora.name.strip():
                raise EmptyLoraName(f"regions[{i}].loras[{j}].name is empty",
                                    metadata={"field": f"regions[{i}].loras[{j}].name"})
            if lora.HasField("weight"):
                check_range(f"regions[{i}].loras[{j}].weight", lora.weight, -4.0, 4.0)
        regions.append(RegionRequest(region.x, region.y, region.width, region.height, region.prompt,
                                     tuple(region.loras)))
    return UpscaleParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        scale_factor=scale,
        steps=steps,
        strength=strength,
        guidance_scale=guidance,
        seed=_seed(request),
        tile_size=tile,
        tile_overlap=overlap,
        scheduler=request.scheduler,
        tile_padding=padding,
        mask_blur=request.mask_blur,
        seams_fix=SEAMS_FIX[request.seams_fix],
        seams_fix_width=seams_width,
        seams_fix_strength=seams_strength,
        seams_fix_mask_blur=seams_blur,
        seams_fix_padding=seams_padding,
        regions=tuple(regions),
    )


def _multiple_of_8(field: str, value: int, low: int, high: int) -> int:
    if value % 8 != 0 or not low <= value <= high:
        raise InvalidSize(f"{field} must be a multiple of 8 between {low} and {high}, got {value}",
                          metadata={"field": field, "value": value})
    return value


def check_regions(width: int, height: int, params: UpscaleParams) -> None:
    """Each region must be a non-empty rectangle inside the source image (its pixels)."""
    for i, r in enumerate(params.regions):
        if r.width <= 0 or r.height <= 0 or r.x < 0 or r.y < 0 or r.x + r.width > width or r.y + r.height > height:
            raise InvalidRegion(
                f"regions[{i}] ({r.x},{r.y} {r.width}x{r.height}) is empty or not inside the {width}x{height} image",
                metadata={"field": f"regions[{i}]"})


def check_upscale_output(width: int, height: int, params: UpscaleParams) -> None:
    """The enlarged image must stay within MAX_OUTPUT_SIDE on each side; regions inside the image."""
    check_regions(width, height, params)
    out_w, out_h = target_size(width, height, params.scale_factor)
    if max(out_w, out_h) > MAX_OUTPUT_SIDE:
        raise InvalidSize(
            f"{width}x{height} scaled by {params.scale_factor} is {out_w}x{out_h}, over {MAX_OUTPUT_SIDE} pixels a side",
            metadata={"field": "scale_factor", "value": params.scale_factor},
        )
