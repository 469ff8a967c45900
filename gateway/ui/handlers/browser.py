"""The CivitAI browser: search the catalogue (query, type, base model, sort, period, NSFW) with CivitAI's
cursor paging; result cards with the first image (through the gateway's proxy), stats and "installed" /
"update available" badges; a card's version picker; one-click download with live progress.

A search's paging lives in the session's state: the filters and the cursor of each page seen (CivitAI's
cursors only go forward, so "previous" asks again with the earlier page's cursor).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from gateway.ui.browser_rendering import (
    INSTALLED,
    UPDATE_AVAILABLE,
    browse_card_html,
    browse_cards_html,
    browse_details_markdown,
    civitai_preview_html,
    version_label,
)
from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.handlers.civitai import CIVITAI_DEADLINE, CivitaiHandlers
from gateway.ui.rendering import error_html
from modelmanager.v1 import civitai_pb2

ALL = "All"
TYPES = {ALL: [], "LoRA (LORA, LoCon, DoRA)": ["LORA", "LoCon", "DoRA"], "Checkpoint": ["Checkpoint"],
         "Embedding (TextualInversion)": ["TextualInversion"], "VAE": ["VAE"], "Upscaler": ["Upscaler"]}
BASE_MODELS = (ALL, "Illustrious", "Pony", "NoobAI", "SDXL 1.0")
SORTS = ("Highest Rated", "Most Downloaded", "Most Liked", "Newest")
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
MATURE_CHOICES = ("blur", "hide", "show")
PAGE_SIZE = 20
MAX_PAGES_KEPT = 500  # cursors remembered per search (a guard, not a limit anyone meets)

# The details panel, empty: markdown, image, version picker, download button, model id.
NO_SELECTION = ("_Click a card to see its versions._", "", gr.update(choices=[], value=None),
                gr.update(interactive=False), 0)


def civitai_reference(model_id: int, version_id: int) -> str:
    return f"https://civitai.com/models/{model_id}?modelVersionId={version_id}"


def _positive_int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return number if 0 < number < 2**63 else 0


class BrowserHandlers:
    def __init__(self, civitai: CivitaiHandlers) -> None:
        self.civitai = civitai
        self.services = civitai.services

    async def _installed(self) -> tuple[dict[int, set[int]], dict[int, str]]:
        """(CivitAI model id → installed version ids, version id → registry filename)."""
        versions: dict[int, set[int]] = {}
        files: dict[int, str] = {}
        for m in await self.services.list_models():
            if m.civitai_model_id:
                versions.setdefault(m.civitai_model_id, set()).add(m.civitai_version_id)
            if m.civitai_version_id:
                files.setdefault(m.civitai_version_id, m.filename)
        return versions, files

    @staticmethod
    def state_of(info: civitai_pb2.CivitaiModelInfo, installed: dict[int, set[int]]) -> str:
        """"installed" when the newest version is, "update available" when only an older one is."""
        have = installed.get(info.model_id)
        if not have:
            return ""
        return INSTALLED if info.version_id in have else UPDATE_AVAILABLE

    # ------------------------------------------------------------ search and pages

    @shows_errors(lambda message: (error_html(message), message, gr.update()))
    async def search(self, query: str, type_choice: str, base: str, sort: str, period: str, nsfw: bool,
                     mature: str) -> tuple[str, str, dict[str, Any]]:
        """A new search from its first page → (cards, status, paging state)."""
        state = {"query": (query or "").strip()[:500], "types": TYPES.get(type_choice, []),
                 "base": "" if base in ("", ALL, None) else str(base)[:100],
                 "sort": sort if sort in SORTS else "", "period": period if period in PERIODS else "",
                 "nsfw": bool(nsfw), "cursors": [""], "page": 0, "next": ""}
        return await self._show(state, mature)

    @shows_errors(lambda message: (error_html(message), message, gr.update()))
    async def step(self, state: dict[str, Any] | None, delta: int, mature: str) -> tuple[str, str, dict[str, Any]]:
        """The next (delta 1) or previous (-1) page of the current search."""
        if not state:
            raise NeedsInput("Search first.")
        state = dict(state, cursors=list(state["cursors"]))
        page = state["page"] + delta
        if delta > 0:
            if not state["next"]:
                raise NeedsInput("That was the last page.")
            if page >= len(state["cursors"]):
                state["cursors"] = (state["cursors"] + [state["next"]])[-MAX_PAGES_KEPT:]
                page = len(state["cursors"]) - 1
        state["page"] = max(0, page)
        return await self._show(state, mature)

    async def _show(self, state: dict[str, Any], mature: str) -> tuple[str, str, dict[str, Any]]:
        request = civitai_pb2.SearchModelsRequest(
            query=state["query"], types=state["types"], base_models=[state["base"]] if state["base"] else [],
            sort=state["sort"], period=state["period"], nsfw=state["nsfw"], page_size=PAGE_SIZE,
            page_token=state["cursors"][state["page"]])
        resp = await self.services.unary("civitai", "SearchModels", request, deadline=CIVITAI_DEADLINE)
        installed, _ = await self._installed()
        nsfw_max = self.services.settings.preview_nsfw_max
        mature = mature if mature in MATURE_CHOICES else "blur"
        cards = [browse_card_html(info, self.state_of(info, installed), nsfw_max, mature) for info in resp.models]
        state["next"] = resp.next_page_token
        status = (f"Page {state['page'] + 1} · {len(resp.models)} model(s)"
                  + (" · more on the next page" if resp.next_page_token else " · last page"))
        return browse_cards_html(cards), status, state

    async def next_page(self, state: dict[str, Any] | None, mature: str) -> tuple[str, str, dict[str, Any]]:
        return await self.step(state, 1, mature)

    async def previous_page(self, state: dict[str, Any] | None, mature: str) -> tuple[str, str, dict[str, Any]]:
        return await self.step(state, -1, mature)

    # ------------------------------------------------------------ a card, its versions

    async def select_card(self, evt: gr.EventData) -> tuple[Any, ...]:
        data = getattr(evt, "_data", None)
        model_id = _positive_int(data.get("model_id")) if isinstance(data, dict) else 0
        if not model_id:
            return NO_SELECTION
        return await self.details(model_id)

    @shows_errors(lambda message: (error_html(message), "", gr.update(), gr.update(interactive=False), 0))
    async def details(self, model_id: int, version_id: int = 0) -> tuple[Any, ...]:
        """→ (details markdown, image, version picker, download button, model id)."""
        request = (civitai_pb2.GetModelInfoRequest(version_id=version_id) if version_id
                   else civitai_pb2.GetModelInfoRequest(model_id=model_id))
        info = (await self.services.unary("civitai", "GetModelInfo", request, deadline=CIVITAI_DEADLINE)).info
        _, files = await self._installed()
        installed_as = files.get(info.version_id, "")
        choices = [(version_label(v), v.id) for v in info.versions if v.id]
        if info.version_id and all(v != info.version_id for _, v in choices):
            choices.insert(0, (info.version_name or str(info.version_id), info.version_id))
        return (browse_details_markdown(info, installed_as),
                civitai_preview_html(info, self.services.settings.preview_nsfw_max),
                gr.update(choices=choices, value=info.version_id),
                gr.update(interactive=info.supported and not installed_as), info.model_id or model_id)

    async def pick_version(self, model_id: int, version_id: Any) -> tuple[Any, ...]:
        vid = _positive_int(version_id)
        if not vid:
            return NO_SELECTION
        return await self.details(_positive_int(model_id), vid)

    @shows_errors(error_html)
    async def download(self, model_id: int, version_id: Any) -> AsyncIterator[str]:
        mid, vid = _positive_int(model_id), _positive_int(version_id)
        if not (mid and vid):
            raise NeedsInput("Click a card and pick a version first.")
        async for update in self.civitai.progress(civitai_pb2.StartDownloadRequest(
                reference=civitai_reference(mid, vid))):
            yield update


__all__ = ["BASE_MODELS", "MATURE_CHOICES", "NO_SELECTION", "PERIODS", "SORTS", "TYPES", "BrowserHandlers"]
