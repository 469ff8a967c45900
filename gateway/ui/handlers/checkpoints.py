"""The active checkpoint: the choices, switching it and loading it on the inference service live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from gateway.ui.error_display import shows_errors
from gateway.ui.rendering import checkpoint_loaded, error_html, progress_html
from gateway.ui.services import UiServices
from modelmanager.v1 import inference_pb2, registry_pb2
from service_kit.config import DEFAULT_CHECKPOINT


class CheckpointHandlers:
    def __init__(self, services: UiServices) -> None:
        self.services = services

    # The registry unreachable: only the default, which is always there (the page still loads).
    @shows_errors(lambda _message: ([DEFAULT_CHECKPOINT], DEFAULT_CHECKPOINT))
    async def checkpoint_choices(self) -> tuple[list[str], str]:
        checkpoints = await self.services.list_models("Checkpoints", "")
        active = await self.services.unary("registry", "GetActiveCheckpoint",
                                           registry_pb2.GetActiveCheckpointRequest())
        return [DEFAULT_CHECKPOINT, *(m.filename for m in checkpoints)], active.checkpoint or DEFAULT_CHECKPOINT

    async def refresh_checkpoints(self) -> tuple[Any, str]:
        choices, active = await self.checkpoint_choices()
        return gr.update(choices=choices, value=active), f"Active checkpoint: **{active}**"

    @shows_errors(error_html)
    async def set_active(self, checkpoint: str) -> AsyncIterator[str]:
        if not checkpoint:
            yield "Pick a checkpoint."
            return
        await self.services.unary("registry", "SetActiveCheckpoint",
                                  registry_pb2.SetActiveCheckpointRequest(checkpoint=checkpoint))
        yield progress_html(0, f"Active checkpoint set to {checkpoint}; loading it on the inference service…")
        async for msg in self.services.stream("inference", "LoadCheckpoint",
                                              inference_pb2.LoadCheckpointRequest(checkpoint=checkpoint)):
            kind = msg.WhichOneof("event")
            if kind == "queued":
                yield progress_html(0, f"Waiting for the GPU (position {msg.queued.position})…")
            elif kind == "progress":
                yield progress_html(msg.progress.fraction, f"Loading {checkpoint}: {msg.progress.stage}")
            elif kind == "result":
                yield checkpoint_loaded(msg.result)
