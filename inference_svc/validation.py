"""Request messages -> checked job parameters (defaults as documented in inference.proto)."""

from __future__ import annotations

import secrets

from inference_svc.errors import EmptyLoraName, InvalidSize
from inference_svc.images import MAX_OUTPUT_SIDE, check_range, check_size
from inference_svc.pipelines import GenerateParams, check_scheduler
from inference_svc.upscaler import UpscaleParams, target_size
from modelmanager.v1 import inference_pb2


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
    )


def check_upscale_output(width: int, height: int, params: UpscaleParams) -> None:
    """The enlarged image must stay within MAX_OUTPUT_SIDE on each side."""
    out_w, out_h = target_size(width, height, params.scale_factor)
    if max(out_w, out_h) > MAX_OUTPUT_SIDE:
        raise InvalidSize(
            f"{width}x{height} scaled by {params.scale_factor} is {out_w}x{out_h}, over {MAX_OUTPUT_SIDE} pixels a side",
            metadata={"field": "scale_factor", "value": params.scale_factor},
        )
