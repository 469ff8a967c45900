"""`modelmgr upscale IMAGE -o OUT`: Upscale with an upscaler model (Lanczos when none), the VAE, Ultimate SD
Upscale's tile padding, mask blur and seams fix, and regions ("x,y,w,h:prompt") with their own prompt."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.markup import escape

from modelmanager.v1 import inference_pb2, model_pb2
from modelmgr.output import console, err_console
from modelmgr.progress import steps_bar
from modelmgr.services import Services

SEAMS_FIX = {"band": inference_pb2.SEAMS_FIX_BAND_PASS, "half-tile": inference_pb2.SEAMS_FIX_HALF_TILE}


def parse_lora(spec: str) -> model_pb2.LoraSelection:
    """NAME[:WEIGHT]; no weight: the LoRA's recommended one."""
    name, sep, weight = spec.rpartition(":")
    if sep and name:
        try:
            return model_pb2.LoraSelection(name=name, weight=float(weight))
        except ValueError:
            pass
    return model_pb2.LoraSelection(name=spec)


def parse_region(spec: str) -> inference_pb2.UpscaleRegion:
    """ "x,y,w,h:prompt" (pixels of the source image); whether it fits the image is the service's to say."""
    box, sep, prompt = spec.partition(":")
    parts = [p.strip() for p in box.split(",")]
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: a region is x,y,w,h:prompt (whole pixels)") from None
    if not sep or min(x, y, w, h) < 0 or max(x, y, w, h) >= 2**31:
        raise argparse.ArgumentTypeError(f"{spec!r}: a region is x,y,w,h:prompt (whole pixels, 0 or more)")
    return inference_pb2.UpscaleRegion(x=x, y=y, width=w, height=h, prompt=prompt.strip())


def add_parser(sub: Any) -> None:
    p = sub.add_parser("upscale", help="enlarge an image (upscaler model, then a tiled refine), with progress")
    p.add_argument("image", type=Path, help="PNG, JPEG or WebP")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--prompt", default="")
    p.add_argument("--negative", default="")
    p.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]")
    p.add_argument("--upscaler", default="", metavar="NAME", help="an upscaler entry; default: a Lanczos resize")
    p.add_argument("--vae", default="", metavar="NAME", help="a VAE entry; default: the checkpoint's default")
    p.add_argument("--checkpoint", default="", help="override the active checkpoint for this job")
    p.add_argument("--scale", type=float, default=0.0, help="1..4 (default 2)")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--scheduler", default="")
    p.add_argument("--tile-size", type=int, default=0)
    p.add_argument("--tile-overlap", type=int, default=None)
    p.add_argument("--tile-padding", type=int, default=0, metavar="N", help="context around each tile, pixels")
    p.add_argument("--mask-blur", type=int, default=0, metavar="N")
    p.add_argument("--seams-fix", choices=list(SEAMS_FIX), default=None)
    p.add_argument("--seams-fix-width", type=int, default=0, metavar="N", help="the band's width (default 64)")
    p.add_argument("--region", action="append", default=[], type=parse_region, metavar="X,Y,W,H:PROMPT",
                   help="a rectangle of the source image redrawn with its own prompt (repeatable)")


def request(args: argparse.Namespace, image: bytes) -> inference_pb2.UpscaleRequest:
    req = inference_pb2.UpscaleRequest(
        image=image, prompt=args.prompt, negative_prompt=args.negative, loras=[parse_lora(s) for s in args.lora],
        scale_factor=args.scale, steps=args.steps, scheduler=args.scheduler, tile_size=args.tile_size,
        checkpoint=args.checkpoint, vae=args.vae, upscaler=args.upscaler, tile_padding=args.tile_padding,
        mask_blur=args.mask_blur, seams_fix=SEAMS_FIX.get(args.seams_fix or "", 0),
        seams_fix_width=args.seams_fix_width, regions=args.region)
    for name in ("strength", "guidance", "seed", "tile_overlap"):
        value = getattr(args, name)
        if value is not None:
            setattr(req, "guidance_scale" if name == "guidance" else name, value)
    return req


async def cmd_upscale(s: Services, args: argparse.Namespace) -> int:
    try:
        image = await asyncio.to_thread(args.image.read_bytes)
    except OSError as err:
        err_console.print(f"[red]✗[/] cannot read {escape(str(args.image))}: {escape(err.strerror or str(err))}")
        return 1
    result = await image_job(s, s.inference_stub.Upscale(request(args, image)), args.output)
    if result is None:
        return 1
    console.print(f"  upscaler: {escape(result.upscaler or 'Lanczos')}"
                  + (f" · VAE: {escape(result.vae)}" if result.vae else "")
                  + (f" · embeddings: {escape(', '.join(result.embeddings))}" if result.embeddings else ""))
    return 0


async def image_job(s: Services, call: Any, output: Path) -> Any:
    """Follow a Generate or Upscale stream with a steps bar, write the image to `output` and print its
    line; the ImageResult, or None (said on stderr) when the stream ended without one."""
    result: Any = None
    with steps_bar(console) as progress:
        task = progress.add_task("queued", total=None)
        async for msg in s.inference.stream(call):
            kind = msg.WhichOneof("event")
            if kind == "queued":
                progress.update(task, description=f"queued (position {msg.queued.position})")
            elif kind == "progress":
                p = msg.progress
                where = f" tile {p.tile}/{p.total_tiles}" if p.total_tiles else ""
                progress.update(task, description=f"{p.stage}{where}", completed=p.step, total=p.total_steps or None)
            elif kind == "result":
                result = msg.result
    if result is None:
        err_console.print("[red]✗[/] the stream ended without an image")
        return None
    await asyncio.to_thread(output.write_bytes, result.png)
    console.print(f"[green]✓[/] {escape(str(output))} ({result.width}×{result.height}, seed {result.seed}, "
                  f"{result.timings.total_seconds:.1f} s)")
    return result
