"""Generate and Upscale: the LoRAs to pick from, the live prompt preview and the inference jobs."""

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
        return await self.loras()

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
                       checkpoint: str = ACTIVE_CHECKPOINT) -> AsyncIterator[JobUpdate]:
        req = inference_pb2.GenerateRequest(prompt=prompt or "", negative_prompt=negative or "",
                                            loras=selections(selected), width=int(width), height=int(height),
                                            steps=int(steps), guidance_scale=float(guidance),
                                            scheduler=scheduler if scheduler and scheduler != "default" else "",
                                            checkpoint="" if checkpoint in ("", None, ACTIVE_CHECKPOINT)
                                            else checkpoint)
        if seed is not None and int(seed) >= 0:
            req.seed = int(seed)
        async for update in self.run_job("Generate", req):
            yield update

    @shows_errors(_job_failed)
    async def upscale(self, image_path: str | None, prompt: str, negative: str, selected: dict[str, float] | None,
                      scale: float, strength: float, steps: float, tile: float, seed: float
                      ) -> AsyncIterator[JobUpdate]:
        if not image_path:
            raise NeedsInput("Choose an image to upscale.")
        req = inference_pb2.UpscaleRequest(image=await asyncio.to_thread(Path(image_path).read_bytes),
                                           prompt=prompt or "", negative_prompt=negative or "",
                                           loras=selections(selected), scale_factor=float(scale),
                                           strength=float(strength), steps=int(steps), tile_size=int(tile))
        if seed is not None and int(seed) >= 0:
            req.seed = int(seed)
        async for update in self.run_job("Upscale", req):
            yield update
