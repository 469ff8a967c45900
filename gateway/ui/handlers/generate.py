"""Generate and Upscale: the LoRAs, embeddings, VAEs and upscalers to pick from, the live prompt preview
and the inference jobs (Upscale with Ultimate SD Upscale's settings and regions)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.rendering import composed_prompt, error_html, image_info, job_progress, progress_html
from gateway.ui.services import UiServices
from modelmanager.v1 import inference_pb2, model_pb2, registry_pb2

JobUpdate = tuple[str, Any, str]  # (progress html, image, info markdown)
# The Generate form's checkpoint choice meaning "the registry's active one" (no override).
ACTIVE_CHECKPOINT = "(active checkpoint)"
# The VAE choice meaning none (the checkpoint's default VAE, else its own), the upscaler choice meaning none.
DEFAULT_VAE = "(checkpoint's default)"
LANCZOS = "Lanczos (no model)"
SEAMS_FIX = {"None": inference_pb2.SEAMS_FIX_UNSPECIFIED, "Band pass": inference_pb2.SEAMS_FIX_BAND_PASS,
             "Half tile": inference_pb2.SEAMS_FIX_HALF_TILE}
# Upscale's regions table: one rectangle a row, LoRAs as "name:weight, name".
REGION_HEADERS = ["x", "y", "width", "height", "prompt", "loras"]


def _job_failed(message: str) -> JobUpdate:
    return error_html(message), gr.update(), ""


def selections(selected: dict[str, float] | None) -> list[model_pb2.LoraSelection]:
    return [model_pb2.LoraSelection(name=name, weight=float(w)) for name, w in (selected or {}).items()]


def prune(loras: list[dict[str, Any]], current: dict[str, float]) -> dict[str, float]:
    """The selection {filename: weight} without LoRAs that are no longer installed."""
    names = {lora["filename"] for lora in loras or []}
    return {k: v for k, v in (current or {}).items() if k in names}


def select(enabled: bool, weight: float, current: dict[str, float], filename: str) -> dict[str, float]:
    """The selection after one LoRA's checkbox or weight changed."""
    current = dict(current or {})
    if enabled:
        current[filename] = float(weight)
    else:
        current.pop(filename, None)
    return current


def insert_token(text: str, token: str) -> str:
    """`text` with `token` appended (comma-separated), unless it is there already."""
    text = (text or "").rstrip()
    if not token or token in text.replace(",", " ").split():
        return text
    return f"{text}, {token}" if text else token


def insert_embedding(filename: str | None, embeddings: dict[str, dict[str, Any]] | None, prompt: str,
                     negative: str) -> tuple[str, str, Any]:
    """A pick in the embeddings list: its token goes in the prompt, a negative one's in the negative
    prompt; the list is cleared for the next pick."""
    chosen = (embeddings or {}).get(filename or "")
    if not chosen:
        return prompt, negative, gr.update(value=None)
    if chosen["negative"]:
        return prompt, insert_token(negative, chosen["token"]), gr.update(value=None)
    return insert_token(prompt, chosen["token"]), negative, gr.update(value=None)


def parse_loras(text: str) -> list[model_pb2.LoraSelection]:
    """ "name:0.8, other" as LoRA selections (no weight: the LoRA's recommended one)."""
    out = []
    for spec in (p.strip() for p in (text or "").split(",")):
        if not spec:
            continue
        name, sep, weight = spec.rpartition(":")
        try:
            out.append(model_pb2.LoraSelection(name=name.strip(), weight=float(weight)) if sep and name.strip()
                       else model_pb2.LoraSelection(name=spec))
        except ValueError:
            out.append(model_pb2.LoraSelection(name=spec))
    return out


def _whole(value: Any, what: str, row: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NeedsInput(f"Region {row}: {what} must be a number of pixels.") from None
    if not number.is_integer() or not 0 <= number < 2**31:
        raise NeedsInput(f"Region {row}: {what} must be a whole number of pixels, 0 or more.")
    return int(number)


def parse_regions(rows: Any) -> list[inference_pb2.UpscaleRegion]:
    """The regions table (rows of x, y, width, height, prompt, loras; blank rows skipped) as regions.
    Whether a rectangle fits the image is the inference service's to say (INVALID_REGION)."""
    if hasattr(rows, "values") and hasattr(rows.values, "tolist"):  # a pandas DataFrame
        rows = rows.values.tolist()
    regions = []
    for i, row in enumerate(rows or [], 1):
        cells = [("" if c is None else c) for c in list(row)[:len(REGION_HEADERS)]]
        cells += [""] * (len(REGION_HEADERS) - len(cells))
        if all(str(c).strip() in ("", "nan") for c in cells):
            continue
        x, y, w, h = (_whole(c, name, i) for c, name in zip(cells[:4], REGION_HEADERS[:4], strict=True))
        regions.append(inference_pb2.UpscaleRegion(x=x, y=y, width=w, height=h, prompt=str(cells[4]).strip(),
                                                   loras=parse_loras(str(cells[5]))))
    return regions


def _named(choice: str | None, none: str) -> str:
    return "" if choice in (None, "", none) else choice


class GenerateHandlers:
    def __init__(self, services: UiServices) -> None:
        self.services = services

    # No LoRAs to offer while the registry is unreachable (the rows say none are installed).
    @shows_errors(lambda _message: [])
    async def loras(self) -> list[dict[str, Any]]:
        models = await self.services.list_models("LoRAs", "")
        return [{"filename": m.filename, "name": m.display_name or m.filename,
                 "weight": m.recommended_weight or 1.0, "triggers": list(m.trigger_words)} for m in models]

    async def reload_loras(self) -> list[dict[str, Any]]:
        self.services.listing.invalidate()  # the Refresh button: LoRAs may have come from elsewhere (the CLI)
        return await self.loras()

    async def _filenames(self, type_filter: str) -> list[str]:
        return [m.filename for m in await self.services.list_models(type_filter, "")]

    # The pickers of embeddings, VAEs and upscalers: empty while the registry is unreachable.
    @shows_errors(lambda _message: ({}, gr.update(choices=[]), gr.update(choices=[DEFAULT_VAE]),
                                    gr.update(choices=[DEFAULT_VAE]), gr.update(choices=[LANCZOS])))
    async def typed_models(self) -> tuple[Any, ...]:
        """→ (the embeddings {filename: {token, negative}}, the Generate embeddings picker, Generate's and
        Upscale's VAE choices, Upscale's upscaler choice)."""
        embeddings = await self.services.list_models("Embeddings", "")
        known = {m.filename: {"token": m.embedding_token or (m.trigger_words[0] if m.trigger_words else ""),
                              "negative": m.negative_embedding} for m in embeddings}
        picks = [(f"{m.display_name or m.filename} ({known[m.filename]['token']})"
                  + (" · negative" if m.negative_embedding else ""), m.filename) for m in embeddings]
        vaes = [DEFAULT_VAE, *await self._filenames("VAEs")]
        upscalers = [LANCZOS, *await self._filenames("Upscalers")]
        return (known, gr.update(choices=picks, value=None), gr.update(choices=vaes), gr.update(choices=vaes),
                gr.update(choices=upscalers))

    @shows_errors(error_html)
    async def preview(self, prompt: str, selected: dict[str, float] | None) -> str:
        req = registry_pb2.ComposePromptRequest(prompt=prompt or "", loras=selections(selected))
        return composed_prompt(await self.services.unary("registry", "ComposePrompt", req))

    @shows_errors(lambda _message: gr.update(choices=["default"]))
    async def schedulers(self) -> Any:
        resp = await self.services.unary("inference", "ListSchedulers", inference_pb2.ListSchedulersRequest())
        return gr.update(choices=["default", *resp.schedulers])

    async def run_job(self, method_name: str, request: Any) -> AsyncIterator[JobUpdate]:
        """Shared by Generate and Upscale."""
        async for msg in self.services.stream("inference", method_name, request):
            event = msg.WhichOneof("event")
            if event == "queued":
                text = "Starting…" if msg.queued.position == 0 else f"Queued (position {msg.queued.position})"
                yield progress_html(0, text), gr.update(), ""
            elif event == "progress":
                yield job_progress(msg.progress), gr.update(), ""
            elif event == "result":
                r = msg.result
                yield progress_html(1, "Done"), Image.open(io.BytesIO(r.png)), image_info(r)

    @shows_errors(_job_failed)
    async def generate(self, prompt: str, negative: str, selected: dict[str, float] | None, width: float,
                       height: float, steps: float, guidance: float, seed: float, scheduler: str,
                       checkpoint: str = ACTIVE_CHECKPOINT, vae: str = DEFAULT_VAE) -> AsyncIterator[JobUpdate]:
        req = inference_pb2.GenerateRequest(prompt=prompt or "", negative_prompt=negative or "",
                                            loras=selections(selected), width=int(width), height=int(height),
                                            steps=int(steps), guidance_scale=float(guidance),
                                            scheduler=scheduler if scheduler and scheduler != "default" else "",
                                            checkpoint=_named(checkpoint, ACTIVE_CHECKPOINT),
                                            vae=_named(vae, DEFAULT_VAE))
        if seed is not None and int(seed) >= 0:
            req.seed = int(seed)
        async for update in self.run_job("Generate", req):
            yield update

    @shows_errors(_job_failed)
    async def upscale(self, image_path: str | None, prompt: str, negative: str, selected: dict[str, float] | None,
                      scale: float, strength: float, steps: float, tile: float, seed: float,
                      upscaler: str = LANCZOS, vae: str = DEFAULT_VAE, tile_padding: float = 0,
                      mask_blur: float = 0, seams_fix: str = "None", seams_fix_width: float = 64,
                      regions: Any = None) -> AsyncIterator[JobUpdate]:
        if not image_path:
            raise NeedsInput("Choose an image to upscale.")
        if seams_fix not in SEAMS_FIX:
            raise NeedsInput(f"Seams fix is one of {', '.join(SEAMS_FIX)}.")
        req = inference_pb2.UpscaleRequest(
            prompt=prompt or "", negative_prompt=negative or "", loras=selections(selected),
            scale_factor=float(scale), strength=float(strength), steps=int(steps), tile_size=int(tile),
            upscaler=_named(upscaler, LANCZOS), vae=_named(vae, DEFAULT_VAE), tile_padding=int(tile_padding or 0),
            mask_blur=int(mask_blur or 0), seams_fix=SEAMS_FIX[seams_fix],
            seams_fix_width=int(seams_fix_width or 0) if SEAMS_FIX[seams_fix] else 0,
            regions=parse_regions(regions))
        req.image = await asyncio.to_thread(Path(image_path).read_bytes)
        if seed is not None and int(seed) >= 0:
            req.seed = int(seed)
        async for update in self.run_job("Upscale", req):
            yield update
