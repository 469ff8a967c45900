"""A1111's "infotext": generation parameters as A1111's PNG Info, CivitAI and sd-parsers read them.

    a castle at dusk, wtrclr style
    Negative prompt: blurry, lowres
    Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 12345, Size: 1024x1024,
    Model hash: 1a2b3c4d5e, Model: dreamForgeXl_v20, Lora hashes: "wtrclr: 0123456789ab"

(the last line is one line). As A1111 writes it (modules/processing.py create_infotext): the prompt,
a `Negative prompt:` line only when there is one, then `key: value` pairs joined by ", ", a value
holding `,`, `:` or a newline written JSON-quoted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath

from inference_svc.outputs import OutputParameters

# This service's scheduler names (pipelines.SCHEDULERS) -> A1111's (Sampler, Schedule type).
A1111_SAMPLERS: dict[str, tuple[str, str]] = {
    "euler": ("Euler", ""),
    "euler_a": ("Euler a", ""),
    "dpmpp_2m": ("DPM++ 2M", ""),
    "dpmpp_2m_karras": ("DPM++ 2M", "Karras"),
    "dpmpp_2m_sde_karras": ("DPM++ 2M SDE", "Karras"),
    "ddim": ("DDIM", ""),
    "unipc": ("UniPC", ""),
    "heun": ("Heun", ""),
    "lms": ("LMS", ""),
}


def quote(value: str) -> str:
    """A1111's infotext_utils.quote: JSON-quoted when a parser would otherwise split the value."""
    if "," not in value and ":" not in value and "\n" not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


def model_name(filename: str) -> str:
    """What A1111 calls a model in infotext: its file name without the extension."""
    name = PurePath(filename).name
    return name.rsplit(".", 1)[0] if name.lower().endswith((".safetensors", ".ckpt", ".pt", ".bin")) else name


def lora_hashes(loras: Sequence[tuple[str, str]]) -> str:
    """`name: autov3, ...` for the LoRAs with a hash; a name loses `:` and `,` (A1111's Lora script does
    the same, so the pairs split back)."""
    pairs = [f"{model_name(name).replace(':', '').replace(',', '')}: {digest}" for name, digest in loras if digest]
    return ", ".join(pairs)


def number(value: float) -> str:
    return f"{value:g}"


def format_infotext(prompt: str, negative_prompt: str, fields: Sequence[tuple[str, str]]) -> str:
    """The text of the `parameters` chunk; fields with an empty value are left out."""
    params = ", ".join(f"{key}: {quote(value)}" for key, value in fields if value != "")
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{params}".strip()


def output_infotext(kind: str, parameters: OutputParameters, width: int, height: int, scheduler: str) -> str:
    """The infotext of one output; `scheduler` is the SCHEDULERS name of what ran (the checkpoint's own
    when the request named none)."""
    p = parameters
    sampler, schedule = A1111_SAMPLERS.get(scheduler, ("", ""))
    # The prompt the model got (trigger words included), as A1111 writes it.
    return format_infotext(p.final_prompt or p.prompt, p.negative_prompt, [
        ("Steps", str(p.steps)),
        ("Sampler", sampler),
        ("Schedule type", schedule),
        ("CFG scale", number(p.guidance_scale)),
        ("Seed", str(p.seed)),
        ("Size", f"{width}x{height}"),
        ("Model hash", p.checkpoint_hash),
        ("Model", model_name(p.checkpoint)),
        ("VAE", p.vae),  # A1111 writes the VAE's file name when one was chosen
        ("Denoising strength", number(p.strength) if kind == "upscale" else ""),
        ("Upscaler", model_name(p.upscaler) if p.upscaler else ("Lanczos" if kind == "upscale" else "")),
        ("Lora hashes", lora_hashes([(lora.filename, lora.hash) for lora in p.loras])),
    ])
