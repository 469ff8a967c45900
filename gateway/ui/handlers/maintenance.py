"""Library health (issue 13) in the UI: duplicates with a delete action, disk use per type and root,
free space, the biggest files; and bulk actions on a selection of gallery cards (delete, refresh from
CivitAI, add/remove tags). A selection is filenames the gallery's filters let through; the registry
checks every one again."""

from __future__ import annotations

from typing import Any

import gradio as gr

from gateway.errors import ApiError
from gateway.ui.error_display import NeedsInput, describe_error, shows_errors
from gateway.ui.handlers.gallery import GalleryHandlers
from gateway.ui.handlers.library import LibraryHandlers
from gateway.ui.maintenance_rendering import disk_usage_html, duplicates_html
from gateway.ui.rendering import error_html, ok_html
from gateway.ui.services import UiServices
from modelmanager.v1 import registry_pb2

MAX_SELECTION = 1_000  # BatchUpdateTags' own limit
BIGGEST = 20


def split_tags(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


class MaintenanceHandlers:
    def __init__(self, services: UiServices, gallery: GalleryHandlers, library: LibraryHandlers) -> None:
        self.services = services
        self.gallery = gallery
        self.library = library

    @shows_errors(lambda message: (error_html(message), error_html(message), gr.update()))
    async def health(self) -> tuple[str, str, Any]:
        """The duplicates, the disk use, and the duplicates' entries as the delete action's choices."""
        dups = await self.services.unary("registry", "ListDuplicates", registry_pb2.ListDuplicatesRequest())
        usage = await self.services.unary("registry", "GetDiskUsage", registry_pb2.GetDiskUsageRequest(biggest=BIGGEST))
        names = [e.model.filename for g in dups.groups for e in g.entries]
        return duplicates_html(dups), disk_usage_html(usage), gr.update(choices=names, value=[])

    async def _delete(self, filenames: list[str], delete_file: bool) -> str:
        names = _selection(filenames)
        done, failed = 0, []
        for name in names:  # one at a time: one refusal (the active checkpoint) must not stop the others
            req = registry_pb2.DeleteModelRequest(filename=name, delete_file=bool(delete_file))
            try:
                await self.services.unary("registry", "DeleteModel", req)
                done += 1
            except ApiError as exc:
                if exc.http_status in (503, 504):
                    raise
                failed.append(f"{name}: {describe_error(exc)}")
        text = f"Deleted {done} of {len(names)} model(s)."
        return ok_html(text) if not failed else error_html(f"{text} Not deleted: " + "; ".join(failed))

    @shows_errors(error_html)
    async def delete_duplicates(self, filenames: list[str], delete_file: bool) -> str:
        return await self._delete(filenames, delete_file)

    @shows_errors(lambda message: (gr.update(), error_html(message)))
    async def select_shown(self, type_filter: str, base: str, place: str, tag: str, nsfw: str, sort: str,
                           query: str, *_rest: Any) -> tuple[Any, str]:
        """Every card the gallery's filters show becomes the selection (and its choices)."""
        updates_only = bool(_rest[-1]) if _rest else False
        models = await self.gallery.shown(type_filter, base, place, tag, nsfw, sort, query, updates_only)
        names = [m.filename for m in models][:MAX_SELECTION]
        return gr.update(choices=names, value=names), ok_html(f"{len(names)} card(s) selected.")

    @shows_errors(error_html)
    async def bulk_delete(self, filenames: list[str], delete_file: bool) -> str:
        return await self._delete(filenames, delete_file)

    @shows_errors(error_html)
    async def bulk_refresh(self, filenames: list[str], force: bool) -> str:
        return await self.library.refresh_from_civitai(_selection(filenames), force)

    @shows_errors(error_html)
    async def bulk_tags(self, filenames: list[str], add: str, remove: str) -> str:
        names = _selection(filenames)
        added, removed = split_tags(add), split_tags(remove)
        if not added and not removed:
            raise NeedsInput("Give tags to add or remove, separated by commas.")
        req = registry_pb2.BatchUpdateTagsRequest(filenames=names, add_tags=added, remove_tags=removed)
        resp = await self.services.unary("registry", "BatchUpdateTags", req)
        return ok_html(f"Tags changed on {len(resp.models)} model(s).")


def _selection(filenames: list[str] | None) -> list[str]:
    names = list(dict.fromkeys(f for f in filenames or [] if isinstance(f, str) and f))
    if not names:
        raise NeedsInput("Select models first.")
    if len(names) > MAX_SELECTION:
        raise NeedsInput(f"Select at most {MAX_SELECTION} models at once; narrow the filter.")
    return names


__all__ = ["MaintenanceHandlers"]
