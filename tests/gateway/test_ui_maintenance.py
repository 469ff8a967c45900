"""The UI's "Library health" handlers called directly (no browser) against the real registry on 127.0.0.1:
duplicates and disk use as escaped HTML, deleting duplicates, and bulk actions on the gallery's cards."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from gw_helpers import dead_address, settings_for, start_server

import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from devtools.model_files import write_safetensors
from gateway.clients import ServiceClients
from gateway.ui.guard import UploadedFiles
from gateway.ui.handlers import Handlers
from gateway.ui.services import UiServices
from modelmanager.v1 import registry_pb2
from service_kit.display import human_size

NO_FILTER = ("All", "All", "", "All", "any", "name", "")
EVIL = "<img src=x onerror=alert(1)>.safetensors"


@pytest_asyncio.fixture
async def ui(tmp_path: Path) -> AsyncIterator[tuple[Handlers, ServiceClients, Path]]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    loras = user_models / "loras"
    loras.mkdir(parents=True)
    models.mkdir()
    a = write_safetensors(loras / "ink.safetensors", "lora", 64 << 10, seed=1)
    shutil.copyfile(a, loras / EVIL)
    os.link(a, loras / "ink-link.safetensors")
    write_safetensors(loras / "solo.safetensors", "lora", 16 << 10, seed=2)
    # The CivitAI peer is a refused port, never the default 127.0.0.1:50052: on a shared machine something
    # may listen there (a demo, a service starting), and the refresh below then talks to it or waits out
    # gRPC's 20 s connect timeout.
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models, civitai=dead_address())))
    settings = settings_for(registry=registry.address)
    clients = ServiceClients.connect(settings)
    h = Handlers.of(UiServices(lambda: clients, settings, UploadedFiles(tmp_path / "uploads")))
    for _ in range(3000):  # files found at start are hashed in the background; a guard, not a timing
        listed = (await clients.registry.ListModels(registry_pb2.ListModelsRequest(page_size=10))).models
        if len(listed) == 4 and all(m.sha256 for m in listed):
            break
        await asyncio.sleep(0.01)
    try:
        yield h, clients, loras
    finally:
        await clients.close()
        await registry.stop(0)


async def test_health_shows_duplicates_and_disk_use_escaped(ui) -> None:
    h, _, loras = ui
    dups, usage, pick = await h.maintenance.health()
    size = human_size((loras / "ink.safetensors").stat().st_size)
    assert "<b>1</b> group(s)" in dups and f"{size} each" in dups and f"frees {size}" in dups
    assert "<img" not in dups and "&lt;img src=x" in dups  # a file name is text, never markup
    assert "file #1" in dups and "file #2" in dups
    assert set(pick["choices"]) == {"ink.safetensors", "ink-link.safetensors", EVIL} and pick["value"] == []
    assert "LoRA" in usage and "the volume" in usage and " free of " in usage
    assert usage.index("ink") < usage.index("solo.safetensors")  # biggest first
    assert "<img" not in usage


async def test_delete_duplicates_then_health_again(ui) -> None:
    h, _, loras = ui
    msg = await h.maintenance.delete_duplicates([EVIL, "nope.safetensors"], False)
    assert "Deleted 1 of 2" in msg and "nope.safetensors" in msg and "MODEL_NOT_FOUND" in msg
    assert not (loras / EVIL).exists()
    dups, _, _ = await h.maintenance.health()
    assert "frees 0 B" in dups  # the link left: one file, two names
    assert "Select models first" in await h.maintenance.delete_duplicates([], False)


async def test_bulk_actions_on_the_gallery_selection(ui) -> None:
    h, clients, loras = ui
    selection, msg = await h.maintenance.select_shown(*NO_FILTER, 1, "blur", "", False)
    assert len(selection["value"]) == 4 and "4 card(s) selected" in msg
    chosen = ["ink.safetensors", "solo.safetensors"]
    assert "Tags changed on 2" in await h.maintenance.bulk_tags(chosen, "style, ink", "")
    assert "Tags changed on 2" in await h.maintenance.bulk_tags(chosen, "", "INK")
    got = await clients.registry.GetModel(registry_pb2.GetModelRequest(filename="solo.safetensors"))
    assert list(got.model.tags) == ["style"]
    assert "Give tags" in await h.maintenance.bulk_tags(chosen, " , ", "")
    refused = await h.maintenance.bulk_tags(["solo.safetensors", "nope.safetensors"], "x", "")
    assert "mm-error" in refused and "MODEL_NOT_FOUND" in refused
    # The registry's CivitAI service is not running here: the refresh's refusal is text, not a toast.
    assert "mm-error" in await h.maintenance.bulk_refresh(chosen, False)
    msg = await h.maintenance.bulk_delete(["solo.safetensors"], False)
    assert "Deleted 1 of 1" in msg and not (loras / "solo.safetensors").exists()
    assert "at most 1000" in await h.maintenance.bulk_delete([f"m{i}" for i in range(1001)], False)
