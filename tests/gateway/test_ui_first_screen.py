"""What a page load asks of the registry (issue 13's gallery figure), the UI's handlers called directly against
a real registry on 127.0.0.1 holding 130 models of two types with interleaved names: the gallery's first page is
one ListModels page per type and equals the first page of the full sort; the lists that need every model come
from one listing kept between changes, dropped by a change made here and by a count that moved elsewhere;
the table is paged."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from gw_helpers import settings_for, start_server

import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from devtools.model_files import write_safetensors
from gateway.clients import ServiceClients
from gateway.ui.guard import UploadedFiles
from gateway.ui.handlers import Handlers
from gateway.ui.handlers.gallery import PAGE_SIZE
from gateway.ui.handlers.models import TABLE_PAGE_SIZE
from gateway.ui.library_rendering import gallery_html
from gateway.ui.services import UiServices
from metadata_svc.index_store import render
from metadata_svc.inspection import inspect_file
from metadata_svc.models import ModelEntry, now_iso
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit.config import DEFAULT_CHECKPOINT

COUNT = 130  # LoRAs and checkpoints: more than two gallery pages, more than one table page
NO_FILTER = ("All", "All", "", "All", "any", "name", "")


@dataclass
class Screen:
    h: Handlers
    calls: Counter[str]  # the UI's registry calls by method
    user_models: Path
    clients: ServiceClients


class CountedServices(UiServices):
    """The real UiServices, counting what reaches the registry."""

    calls: Counter[str]

    async def unary(self, service: str, method_name: str, request: Any, deadline: float | None = None) -> Any:
        if service == "registry":
            self.calls[method_name] += 1
        return await super().unary(service, method_name, request, deadline)


def seed(user_models: Path) -> None:
    """COUNT entries in the (not yet started) registry's index; every third a checkpoint, names interleaved."""
    templates = {kind: write_safetensors(user_models / f".{kind}.safetensors", kind, 0) for kind in ("lora", "checkpoint")}
    lines = []
    for i in range(COUNT):
        kind = "checkpoint" if i % 3 == 0 else "lora"
        folder = user_models / ("checkpoints" if kind == "checkpoint" else "loras")
        folder.mkdir(exist_ok=True)
        name = f"model_{i:03d}.safetensors"
        os.link(templates[kind], folder / name)
        # Display names run backwards and in mixed case, so the name order is neither the filename's nor the type's.
        display = f"{'Model' if i % 2 else 'model'} {COUNT - i:03d}"
        lines.append(ModelEntry(filename=name, type=kind, display_name=display, source="local", base_model="Illustrious",
                                file_size_bytes=templates[kind].stat().st_size, added_at=now_iso(),
                                sha256=f"{i + 1:064x}", inspection=inspect_file(templates[kind])).json_line())
    for template in templates.values():
        template.unlink()
    (user_models / ".metadata.json").write_bytes(render(DEFAULT_CHECKPOINT, lines))


@pytest_asyncio.fixture
async def screen(tmp_path: Path) -> AsyncIterator[Screen]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    for folder in (user_models, models):
        folder.mkdir()
    seed(user_models)
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    settings = settings_for(registry=registry.address)
    clients = ServiceClients.connect(settings)
    services = CountedServices(lambda: clients, settings, UploadedFiles(tmp_path / "uploads"))
    services.calls = Counter()
    try:
        yield Screen(Handlers.of(services), services.calls, user_models, clients)
    finally:
        await clients.close()
        await registry.stop(0)


async def test_the_first_page_is_one_listmodels_page_per_type_and_the_full_sorts_first_page(screen: Screen) -> None:
    h = screen.h
    cards, status, page = await h.gallery.cards(*NO_FILTER, 1, "blur", "")
    assert screen.calls == {"ListModels": 5}  # one page of PAGE_SIZE per type, none of them all 130
    assert status == f"{COUNT} model(s) · page 1 of 3" and page == 1
    everything = await h.gallery.shown(*NO_FILTER)
    assert len(everything) == COUNT
    assert cards == gallery_html(everything[:PAGE_SIZE], "blur", h.services.settings.preview_nsfw_max, "", {})
    # Page 2 comes from the full sort, continuing where the first page stopped.
    second, status, page = await h.gallery.cards(*NO_FILTER, 2, "blur", "")
    assert page == 2 and second == gallery_html(everything[PAGE_SIZE:2 * PAGE_SIZE], "blur",
                                                h.services.settings.preview_nsfw_max, "", {})
    # One type: one page; the search is the registry's, like the full listing's.
    screen.calls.clear()
    only, status, _ = await h.gallery.cards("Checkpoints", "All", "", "All", "any", "name", "model", 1, "blur", "")
    assert screen.calls == {"ListModels": 1} and status == f"{len(range(0, COUNT, 3))} model(s) · page 1 of 1"
    assert only == gallery_html(await h.gallery.shown("Checkpoints", "All", "", "All", "any", "name", "model"),
                                "blur", h.services.settings.preview_nsfw_max, "", {})


async def test_lists_of_every_model_come_from_one_listing_kept_until_a_change(screen: Screen) -> None:
    h, calls = screen.h, screen.calls
    await h.gallery.cards(*NO_FILTER, 1, "blur", "")
    await h.gallery.facets()
    listed = calls["ListModels"]
    table, status, number, checkpoints, _ = await h.load_listing("All", "", 1)
    await h.generate.typed_models()
    assert await h.shown_loras(False, []) == []  # a LoRA panel whose tab was never opened: nothing built
    loras, opened = await h.open_loras()
    assert opened and len(loras) == COUNT - len(range(0, COUNT, 3))
    await h.gallery.facets()
    assert calls["ListModels"] == listed  # the page load's lists: no second listing
    assert status == f"{COUNT} model(s) · page 1 of 2" and number == 1 and len(table["value"]) == TABLE_PAGE_SIZE
    assert len(checkpoints["choices"]) == 1 + len(range(0, COUNT, 3))

    # A change made here drops it: the edited name is in the next lists.
    assert "Saved" in await h.gallery.save("model_001.safetensors", "Renamed", "", 1.0, "")
    assert {"filename": "model_001.safetensors", "name": "Renamed", "weight": 1.0, "triggers": []} in (
        await h.open_loras())[0]

    # A model deleted elsewhere (another client of the registry): the first page's count no longer matches.
    await screen.clients.unary("registry", screen.clients.registry.DeleteModel,
                               registry_pb2.DeleteModelRequest(filename="model_002.safetensors"))
    _, status, _ = await h.gallery.cards(*NO_FILTER, 1, "blur", "")
    assert status == f"{COUNT - 1} model(s) · page 1 of 3"
    rows, status = await h.models.models_table("All", "", 2)
    assert status == f"{COUNT - 1} model(s) · page 2 of 2" and len(rows) == COUNT - 1 - TABLE_PAGE_SIZE
    assert "model_002.safetensors" not in {m.filename for m in await h.services.list_models("LoRAs")}


async def test_the_table_is_paged_and_refresh_lists_again(screen: Screen) -> None:
    h = screen.h
    first, status, number = await h.models.table_page("All", "", 1)
    assert len(first) == TABLE_PAGE_SIZE and number == 1 and status == f"{COUNT} model(s) · page 1 of 2"
    last, _, number = await h.models.table_page("All", "", 99)  # clamped to what exists
    assert number == 2 and len(last) == COUNT - TABLE_PAGE_SIZE
    assert {r[0] for r in first}.isdisjoint(r[0] for r in last)
    assert (await h.models.table_page("Checkpoints", "", 1))[1] == f"{len(range(0, COUNT, 3))} model(s)"
    # A model edited elsewhere: Refresh lists again (the count did not move, so nothing else would know).
    model = model_pb2.Model(filename="model_004.safetensors", display_name="Edited elsewhere")
    request = registry_pb2.UpdateModelRequest(model=model)
    request.update_mask.paths.append("display_name")
    await screen.clients.unary("registry", screen.clients.registry.UpdateModel, request)
    table, _, _ = await h.models.reload_table("LoRAs", "")
    assert ["model_004.safetensors", "Edited elsewhere"] in [row[:2] for row in table["value"]]
