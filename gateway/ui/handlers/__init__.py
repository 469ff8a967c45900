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
        the LoRA lists of Generate and Upscale, from a fresh listing."""
        self.services.listing.invalidate()
        table, status = await self.models.refresh_models(type_filter, query)
        checkpoints, active = await self.checkpoints.refresh_checkpoints()
        loras = await self.generate.loras()
        return table, status, checkpoints, active, loras, loras

    async def load_listing(self, type_filter: str, query: str, page: float | None) -> tuple[Any, ...]:
        """On page load and after a change: the table's page, its status and page number, the checkpoint
        choices and the active one (the LoRA lists wait for their tab: `open_loras`)."""
        table, status, number = await self.models.show_table(type_filter, query, page)
        checkpoints, active = await self.checkpoints.refresh_checkpoints()
        return table, status, number, checkpoints, active

    async def models_changed(self) -> None:
        """The first step after an event that may have changed the installed models: the kept listing goes."""
        self.services.listing.invalidate()

    async def open_loras(self) -> tuple[list[dict[str, Any]], bool]:
        """A LoRA panel's tab opened: its list (thousands of rows are seconds of rendering, in the page and
        here, so not on page load) and that it is open."""
        return await self.generate.loras(), True

    async def shown_loras(self, opened: bool, current: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """After a change: a panel's list again once its tab has been opened; unchanged (no new rows) before."""
        return await self.generate.loras() if opened else (current or [])


__all__ = ["BrowserHandlers", "CheckpointHandlers", "CivitaiHandlers", "GalleryHandlers", "GenerateHandlers", "Handlers", "LibraryHandlers", "MaintenanceHandlers",
           "ModelHandlers", "OutputHandlers", "UpdateHandlers"]
