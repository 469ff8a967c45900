"""The UI's callbacks: plain async methods, one class per concept, each holding the UiServices.

A new feature (a picture gallery, a CivitAI browser, "Import a folder") is one more module here with
its handler class, added to `Handlers`, and its layout module in gateway.ui.layout. Every handler that
calls a service is decorated with `error_display.shows_errors`, the one path from a failure to what
the user reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.ui.handlers.browser import BrowserHandlers
from gateway.ui.handlers.checkpoints import CheckpointHandlers
from gateway.ui.handlers.civitai import CivitaiHandlers
from gateway.ui.handlers.gallery import GalleryHandlers
from gateway.ui.handlers.generate import GenerateHandlers
from gateway.ui.handlers.library import LibraryHandlers
from gateway.ui.handlers.maintenance import MaintenanceHandlers
from gateway.ui.handlers.models import ModelHandlers
from gateway.ui.handlers.outputs import OutputHandlers
from gateway.ui.handlers.updates import KnownUpdates, UpdateHandlers
from gateway.ui.services import UiServices


@dataclass
class Handlers:
    services: UiServices
    civitai: CivitaiHandlers
    models: ModelHandlers
    checkpoints: CheckpointHandlers
    generate: GenerateHandlers
    outputs: OutputHandlers
    library: LibraryHandlers
    gallery: GalleryHandlers
    browser: BrowserHandlers
    updates: UpdateHandlers
    maintenance: MaintenanceHandlers

    @classmethod
    def of(cls, services: UiServices) -> Handlers:
        models, library, civitai = ModelHandlers(services), LibraryHandlers(services), CivitaiHandlers(services)
        known = KnownUpdates()  # the last update check: the gallery's badges and filter
        gallery = GalleryHandlers(services, models, library, known)
        return cls(services, civitai, models, CheckpointHandlers(services),
                   GenerateHandlers(services), OutputHandlers(services), library,
                   gallery, BrowserHandlers(civitai),
                   UpdateHandlers(civitai, known), MaintenanceHandlers(services, gallery, library))

    async def reload_all(self, type_filter: str, query: str) -> tuple[Any, ...]:
        """After anything that may change the installed models: the table, the checkpoint choices and
        the LoRA lists of Generate and Upscale."""
        table, status = await self.models.refresh_models(type_filter, query)
        checkpoints, active = await self.checkpoints.refresh_checkpoints()
        loras = await self.generate.loras()
        return table, status, checkpoints, active, loras, loras


__all__ = ["BrowserHandlers", "CheckpointHandlers", "CivitaiHandlers", "GalleryHandlers", "GenerateHandlers", "Handlers", "LibraryHandlers", "MaintenanceHandlers",
           "ModelHandlers", "OutputHandlers", "UpdateHandlers"]
