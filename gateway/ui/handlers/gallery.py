"""Issue 13's gallery of installed models: filtered, sorted, paged cards; a card's details (edit, delete,
open on CivitAI, copy trigger words, use in Generate); "Refresh from CivitAI" for one or all shown.

Type, base model, root/folder and search are the registry's ListModels filters; tag and NSFW level are
applied here, then the sort and one page of cards (only a page of cards goes to the browser, each
thumbnail a cached URL, never inline bytes). The first page by name with only the registry's filters,
what a page load shows, is one ListModels page of PAGE_SIZE per type: the gallery's name order is
ListModels' own within a type. Other pages and orders sort every match (without base model, place or
search: the listing kept between changes).
"""

from __future__ import annotations

import asyncio
import heapq
import html
import math
from collections import Counter
from typing import Any

import gradio as gr

from gateway.api_library import highest_level
from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.handlers.library import LibraryHandlers
from gateway.ui.handlers.models import ModelHandlers
from gateway.ui.handlers.updates import KnownUpdates
from gateway.ui.library_rendering import NSFW_LEVELS, gallery_html
from gateway.ui.rendering import error_html, md_link, md_text, model_facts, ok_html
from gateway.ui.services import LIST_PAGE_SIZE, TYPE_FILTER, UiServices
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit.display import type_name
from service_kit.peer import paged

PAGE_SIZE = 48
SORTS = ("name", "date added", "size")
NSFW_FILTERS = ("any", *NSFW_LEVELS)  # "PG-13": models rated PG-13 or lower (unknown included)
MATURE_CHOICES = ("blur", "hide", "show")
ALL = "All"
MAX_FACET_TAGS = 300
# The place filter's values: "" all, "volume", "<root id>", "<root id>/<folder>".
VOLUME = "volume"

# The details panel, empty: filename, display name, trigger words, weight, tags, facts, links, copy box,
# delete-file checkbox, Generate label, kind.
NO_CARD = ("", "", "", 1.0, "", "", "", "", gr.update(visible=False, value=False), "", "")


def sort_key(sort: str) -> Any:
    if sort == "date added":
        return lambda m: -(m.added_at.seconds + m.added_at.nanos / 1e9)
    if sort == "size":
        return lambda m: -m.file_size_bytes
    # ListModels' order within a type (a display name is never empty there): a first page can be merged
    # from each type's first page.
    return lambda m: ((m.display_name or m.filename).lower(), m.filename)


def asked_page(page: float | None) -> int:
    """The page asked for, from 1 (not yet clamped to what exists)."""
    return max(1, int(page) if page is not None and math.isfinite(page) else 1)


def page_of(count: int, page: float | None) -> tuple[int, int]:
    """(page number from 1, page count), the page clamped to what exists."""
    pages = max(1, math.ceil(count / PAGE_SIZE))
    return min(asked_page(page), pages), pages


def split_place(place: str) -> tuple[str, str]:
    root_id, _, folder = (place or "").partition("/")
    return root_id, folder


class GalleryHandlers:
    def __init__(self, services: UiServices, models: ModelHandlers, library: LibraryHandlers,
                 updates: KnownUpdates | None = None) -> None:
        self.services = services
        self.models = models
        self.library = library
        self.updates = updates or KnownUpdates()  # the last "Check for updates": badges, the filter

    async def _list(self, type_filter: str = ALL, base: str = "", place: str = "", query: str = "") -> list[Any]:
        if not (base or place or (query or "").strip()):
            return await self.services.listing.of_type(TYPE_FILTER.get(type_filter, 0))
        root_id, folder = split_place(place)
        request = registry_pb2.ListModelsRequest(
            page_size=LIST_PAGE_SIZE, type=TYPE_FILTER.get(type_filter, 0), base_model=base or "",
            query=query or "", root_id=root_id, folder=folder)
        pages = paged(lambda page: self.services.unary("registry", "ListModels", page), request, "models")
        return [m async for m in pages]

    async def shown(self, type_filter: str, base: str, place: str, tag: str, nsfw: str, sort: str,
                    query: str, updates_only: bool = False) -> list[Any]:
        """Every model the filters let through, sorted."""
        models = await self._list(type_filter, "" if base in ("", ALL) else base, place, query)
        if updates_only:
            models = [m for m in models if self.updates.available(m.filename)]
        if tag and tag != ALL:
            wanted = tag.casefold()
            models = [m for m in models if any(t.casefold() == wanted for t in m.tags)]
        if nsfw in NSFW_LEVELS:
            models = [m for m in models if highest_level(m.nsfw_level) <= NSFW_LEVELS[nsfw]]
        return sorted(models, key=sort_key(sort))

    async def _first_page(self, type_filter: str, base: str, place: str, query: str) -> tuple[list[Any], int] | None:
        """The first PAGE_SIZE by name and the count: one ListModels page per type asked for, at once; None
        when a page came back short of PAGE_SIZE with more to come (the registry's byte budget)."""
        root_id, folder = split_place(place)
        wanted = TYPE_FILTER.get(type_filter, 0)
        types = [wanted] if wanted else [t for t in TYPE_FILTER.values() if t]

        async def first(model_type: int) -> Any:
            return await self.services.unary("registry", "ListModels", registry_pb2.ListModelsRequest(
                page_size=PAGE_SIZE, type=model_type, base_model=base, query=query or "", root_id=root_id,
                folder=folder))

        pages = await asyncio.gather(*(first(t) for t in types))
        if any(p.next_page_token and len(p.models) < PAGE_SIZE for p in pages):
            return None
        total = sum(p.total_size for p in pages)
        if not (base or place or (query or "").strip()):
            self.services.listing.note_total(total)  # a model added or removed elsewhere
        key = sort_key("name")
        merged = heapq.merge(*(sorted(p.models, key=key) for p in pages), key=key)
        return [m for _, m in zip(range(PAGE_SIZE), merged, strict=False)], total

    # ------------------------------------------------------------ cards

    @shows_errors(lambda message: (error_html(message), message, 1))
    async def cards(self, type_filter: str, base: str, place: str, tag: str, nsfw: str, sort: str, query: str,
                    page: float | None, mature: str, selected: str, updates_only: bool = False) -> tuple[str, str, int]:
        """One page of cards, the status line and the page number shown."""
        base = "" if base in ("", ALL) else base
        registry_filters_only = not updates_only and tag in ("", ALL, None) and nsfw not in NSFW_LEVELS
        first = None
        if registry_filters_only and sort not in SORTS[1:] and asked_page(page) == 1:
            first = await self._first_page(type_filter, base, place, query)
        if first is not None:
            shown, count = first
        else:
            models = await self.shown(type_filter, base, place, tag, nsfw, sort, query, bool(updates_only))
            number, _ = page_of(len(models), page)
            shown, count = models[(number - 1) * PAGE_SIZE:number * PAGE_SIZE], len(models)
        number, pages = page_of(count, page)
        limit = self.services.settings.preview_nsfw_max
        html = gallery_html(shown, mature if mature in MATURE_CHOICES else "blur", limit, selected or "",
                            self.updates.badges())
        status = (f"{count} model(s) · page {number} of {pages}" if count else "0 model(s)")
        return html, status, number

    @shows_errors(lambda message: (gr.update(), gr.update(), gr.update(), error_html(message)))
    async def facets(self) -> tuple[Any, Any, Any, str]:
        """The choices of the base-model, root/folder and tag filters, from what is installed."""
        models = await self._list()
        bases = sorted({m.base_model for m in models if m.base_model}, key=str.casefold)
        tags = [t for t, _ in Counter(t for m in models for t in m.tags).most_common(MAX_FACET_TAGS)]
        roots = (await self.services.unary("registry", "ListLibraryRoots",
                                           registry_pb2.ListLibraryRootsRequest())).roots
        paths = {r.id: r.path for r in roots}
        places: list[tuple[str, str]] = [("All places", "")]
        if any(not m.root_id for m in models):
            places.append(("Volume (loras/, checkpoints/)", VOLUME))
        folders: dict[str, set[str]] = {}
        for m in models:
            if m.root_id:
                folders.setdefault(m.root_id, set()).add(m.folder)
        for root_id in sorted(folders, key=lambda r: paths.get(r, r)):
            places.append((paths.get(root_id, root_id), root_id))
            places.extend((f"{paths.get(root_id, root_id)}/{f}", f"{root_id}/{f}") for f in sorted(folders[root_id]) if f)
        return (gr.update(choices=[ALL, *bases]), gr.update(choices=places), gr.update(choices=[ALL, *sorted(tags)]),
                "")

    async def reload_facets(self) -> tuple[Any, Any, Any, str]:
        """The Refresh button: the choices from a fresh listing (models may have come from the CLI)."""
        self.services.listing.invalidate()
        return await self.facets()

    # ------------------------------------------------------------ a card's details

    async def select_card(self, evt: gr.EventData) -> tuple[Any, ...]:
        data = getattr(evt, "_data", None)
        filename = data.get("filename") if isinstance(data, dict) else None
        if not isinstance(filename, str) or not filename:
            return (*NO_CARD, "Click a card to see its details.")
        return await self.details(filename)

    @shows_errors(lambda message: (*NO_CARD, error_html(message)))
    async def details(self, filename: str) -> tuple[Any, ...]:
        m = (await self.services.unary("registry", "GetModel", registry_pb2.GetModelRequest(filename=filename))).model
        links = " · ".join(x for x in (
            md_link("Open on CivitAI", m.civitai_url),
            f"AutoV2 <code>{html.escape(m.autov2)}</code>" if m.autov2 else "",
            (f"in library root <code>{html.escape(m.root_id)}</code>, folder <code>{html.escape(m.folder or '/')}</code>"
             if m.root_id else ""),
        ) if x)
        in_root = bool(m.root_id)
        return (m.filename, m.display_name, ", ".join(m.trigger_words), m.recommended_weight or 1.0,
                ", ".join(m.tags), model_facts(m), links, ", ".join(m.trigger_words),
                gr.update(visible=in_root, value=False), m.display_name or m.filename, type_name(m.type), "")

    async def save(self, filename: str, display_name: str, triggers: str, weight: float, tags: str) -> str:
        return await self.models.save_details(filename, display_name, triggers, weight, tags)

    @shows_errors(lambda message: (gr.update(visible=False), message))
    async def ask_delete(self, filename: str) -> tuple[Any, str]:
        """The confirmation row; for an entry in a library root its checkbox asks whether the file goes too."""
        if not filename:
            return gr.update(visible=False), ""
        m = (await self.services.unary("registry", "GetModel", registry_pb2.GetModelRequest(filename=filename))).model
        if m.root_id:
            return gr.update(visible=True), (f"Remove **{md_text(filename)}** from the index? Its file stays in the "
                                             "library folder unless you tick the box.")
        return gr.update(visible=True), f"Delete **{md_text(filename)}** and its file? This cannot be undone."

    @shows_errors(error_html)
    async def delete(self, filename: str, delete_file: bool) -> str:
        if not filename:
            raise NeedsInput("Select a card first.")
        req = registry_pb2.DeleteModelRequest(filename=filename, delete_file=bool(delete_file))
        m = (await self.services.unary("registry", "DeleteModel", req)).model
        if m.root_id and not delete_file:
            return ok_html(f"Removed {filename} from the index; its file stays in the library folder.")
        return ok_html(f"Deleted {filename} and its file.")

    @shows_errors(error_html)
    async def use_in_generate(self, filename: str, _label: str, kind: str) -> str:
        """A checkpoint becomes the active one (a LoRA is ticked in Generate by the page itself)."""
        if not filename:
            raise NeedsInput("Select a card first.")
        if kind != type_name(model_pb2.MODEL_TYPE_CHECKPOINT):
            return ok_html(f"{filename} is selected in Generate.")
        await self.services.unary("registry", "SetActiveCheckpoint",
                                  registry_pb2.SetActiveCheckpointRequest(checkpoint=filename))
        return ok_html(f"Active checkpoint set to {filename}; Generate loads it.")

    # ------------------------------------------------------------ refresh from CivitAI

    async def refresh_selected(self, filename: str, force: bool) -> str:
        return await self.library.refresh_from_civitai([filename] if filename else [], force)

    @shows_errors(error_html)
    async def refresh_shown(self, type_filter: str, base: str, place: str, tag: str, nsfw: str, sort: str,
                            query: str, force: bool, updates_only: bool = False) -> str:
        models = await self.shown(type_filter, base, place, tag, nsfw, sort, query, bool(updates_only))
        return await self.library.refresh_from_civitai([m.filename for m in models], force)


__all__ = ["MATURE_CHOICES", "NO_CARD", "NSFW_FILTERS", "PAGE_SIZE", "SORTS", "GalleryHandlers"]
