"""The CivitAI browser's and the updates' handlers called directly (no browser), against the real registry
and CivitAI service over the fake CivitAI on 127.0.0.1; the ignore/unignore routes over real HTTP.

Search with cursor paging, cards whose images go through the gateway's proxy (never CivitAI's URL as a
src), escaped names, stats, a version picker, download with progress, "installed" then "update
available" badges; Check for updates, the gallery's badge and filter, early access marked, ignore and
stop ignoring, Download update deleting the old version; Fetch Info's image through the proxy.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from gw_helpers import running_gateway, settings_for, start_server

import civitai_svc.app as civitai_app
import civitai_svc.config as civitai_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from devtools.fake_civitai import FakeCivitai, make_safetensors
from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.ui.guard import UploadedFiles
from gateway.ui.handlers import Handlers
from gateway.ui.handlers.browser import PAGE_SIZE
from gateway.ui.services import UiServices
from modelmanager.v1 import model_pb2, registry_pb2

NO_FILTER = ("All", "All", "", "All", "any", "name", "")
SEARCH = ("All", "All", "Highest Rated", "AllTime", False, "blur")


@dataclass
class Env:
    h: Handlers
    fake: FakeCivitai
    settings: GatewaySettings
    clients: ServiceClients


async def collect(updates: AsyncIterator[Any]) -> list[Any]:
    return [u async for u in updates]


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    models.mkdir()
    fake = FakeCivitai()
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    civitai = await start_server(civitai_app.create_server(civitai_config.CivitaiSettings(
        listen="127.0.0.1:0", registry=registry.address, user_models_dir=user_models, base_url=fake.base_url,
        retry_backoff_base=0.2)))
    settings = settings_for(registry=registry.address, civitai=civitai.address, civitai_base_url=fake.base_url)
    clients = ServiceClients.connect(settings)
    try:
        yield Env(Handlers.of(UiServices(lambda: clients, settings, UploadedFiles(tmp_path / "uploads"))), fake,
                  settings, clients)
    finally:
        await clients.close()
        for server in (civitai, registry):
            await server.stop(0)
        await asyncio.to_thread(fake.close)


def srcs(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


async def test_search_pages_cards_and_download(env: Env) -> None:
    h, fake = env.h, env.fake
    ink = fake.add_lora(name="Ink <i>Wash</i>", data=make_safetensors("lora", 4096, seed=1),
                        trained_words=["inkwash"], filename="ink_wash.safetensors", previews=(1, 1))
    for i in range(PAGE_SIZE + 2):
        fake.add_lora(name=f"Pager {i:02d}", data=make_safetensors("lora", 1024, seed=100 + i))

    cards, status, paging = await h.browser.search("Ink", *SEARCH)
    assert "Page 1 · 1 model(s)" in status and "last page" in status
    assert "Ink &lt;i&gt;Wash&lt;/i&gt;" in cards and "<i>" not in cards
    assert f'data-model-id="{ink.model_id}"' in cards and "⬇ 12" in cards
    assert srcs(cards) and all(s.startswith("ui-civitai-images?url=http%3A%2F%2F127.0.0.1") for s in srcs(cards))
    assert fake.base_url not in cards  # never a src the browser would load from CivitAI's host

    # Cursor paging: 20, then the rest, and back.
    first, status, paging = await h.browser.search("Pager", *SEARCH)
    assert first.count('class="mm-card"') == PAGE_SIZE and "more on the next page" in status
    second, status, paging = await h.browser.next_page(paging, "blur")
    assert second.count('class="mm-card"') == 2 and "Page 2" in status and "last page" in status
    again, status, paging = await h.browser.previous_page(paging, "blur")
    assert again == first and "Page 1" in status
    _, status, _ = await h.browser.next_page(dict(paging, next=""), "blur")
    assert "last page" in status.lower()

    # A card: its versions, then download it with progress.
    fake.add_version(ink.model_id, version_name="v2.0", data=make_safetensors("lora", 4096, seed=2))
    details, image, versions, button, model_id = await h.browser.details(ink.model_id)
    assert model_id == ink.model_id and button["interactive"] is True
    assert [label.split(" · ")[0] for label, _ in versions["choices"]] == ["v2.0", "v1.0"]
    assert "Ink \\&lt;i\\&gt;Wash\\&lt;/i\\&gt;" in details or "&lt;i&gt;" in details
    assert srcs(image)[0].startswith("ui-civitai-images?url=")
    details, _, versions, button, _ = await h.browser.pick_version(ink.model_id, ink.version_id)
    assert versions["value"] == ink.version_id and "inkwash" in details
    updates = await collect(h.browser.download(ink.model_id, ink.version_id))
    assert "Queued" in updates[0] and "installed as ink_wash.safetensors" in updates[-1], updates[-1]
    # The old version installed: the card says an update is there; the installed version's details say so.
    cards, _, _ = await h.browser.search("Wash", *SEARCH)  # not "Ink": the service caches that answer a while
    assert "update available" in cards
    details, _, _, button, _ = await h.browser.pick_version(ink.model_id, ink.version_id)
    assert "installed as ink_wash.safetensors" in details and button["interactive"] is False
    # Nothing asked, nothing done.
    assert "pick a version" in (await collect(h.browser.download(0, None)))[-1]


async def test_check_updates_badges_ignore_and_download_update(env: Env) -> None:
    h, fake = env.h, env.fake
    ink = fake.add_lora(name="Ink Wash", data=make_safetensors("lora", 4096, seed=1), filename="ink_wash.safetensors")
    soft = fake.add_lora(name="Soft Light", data=make_safetensors("lora", 4096, seed=3),
                         filename="soft_light.safetensors")
    for model in (ink, soft):
        assert "installed as" in (await collect(h.browser.download(model.model_id, model.version_id)))[-1]
    # A user's edit, to be carried over.
    await env.clients.unary("registry", env.clients.registry.UpdateModel, registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="ink_wash.safetensors", trigger_words=["my ink"]),
        update_mask={"paths": ["trigger_words"]}))
    new_ink = fake.add_version(ink.model_id, version_name="v2.0", data=make_safetensors("lora", 4096, seed=2),
                               filename="ink_wash_v2.safetensors")
    new_soft = fake.add_version(soft.model_id, version_name="v2.0", data=make_safetensors("lora", 4096, seed=4))
    fake.early_access(new_soft.version_id)

    table, pick, status = await h.updates.check()
    assert "2 update(s) available (1 in early access)" in status, status
    rows = {row[0]: row for row in table["value"]}
    assert rows["ink_wash.safetensors"][5] == "update available"
    assert rows["soft_light.safetensors"][5].startswith("early access")
    assert set(pick["choices"]) == {"ink_wash.safetensors", "soft_light.safetensors"}

    # The gallery: a badge per card, early access marked; the "update available" filter.
    cards, _, _ = await h.gallery.cards(*NO_FILTER, 1, "blur", "")
    assert "update: v2.0" in cards and "early access" in cards
    only, _, _ = await h.gallery.cards(*NO_FILTER, 1, "blur", "", True)
    assert only.count('class="mm-card"') == 2

    # Ignore this version: no badge, out of the filter; and back.
    table, pick, message = await h.updates.ignore("soft_light.safetensors")
    assert "ignored" in message and {r[0]: r for r in table["value"]}["soft_light.safetensors"][5] == "ignored"
    only, _, _ = await h.gallery.cards(*NO_FILTER, 1, "blur", "", True)
    assert 'data-filename="soft_light.safetensors"' not in only and 'data-filename="ink_wash.safetensors"' in only
    table, pick, status = await h.updates.check()  # the service keeps it ignored
    assert "1 ignored" in status
    _, _, message = await h.updates.unignore("soft_light.safetensors")
    assert "shows again" in message

    # Download update, deleting the old version: the edit is carried over.
    updates = await collect(h.updates.download_update("ink_wash.safetensors", True))
    last = updates[-1]
    assert "the old version was deleted" in last and "ink_wash_v2.safetensors" in last, last
    assert "trigger_words" in last
    listed = {m.filename: m for m in await env.h.services.list_models()}
    assert "ink_wash.safetensors" not in listed and list(listed["ink_wash_v2.safetensors"].trigger_words) == ["my ink"]
    assert listed["ink_wash_v2.safetensors"].civitai_version_id == new_ink.version_id
    table, pick = await h.updates.table()
    assert "ink_wash.safetensors" not in (pick["choices"] or [])
    # Nothing picked: said plainly.
    assert "Check for updates" in (await collect(h.updates.download_update(None, False)))[-1]


async def test_fetch_info_image_goes_through_the_proxy(env: Env) -> None:
    lora = env.fake.add_lora(name="Ink Wash", data=make_safetensors("lora", 1024, seed=1))
    _, image, _, _ = await env.h.civitai.fetch_info(lora.url)
    assert srcs(image) and srcs(image)[0].startswith("ui-civitai-images?url=")
    assert env.fake.base_url not in image


async def test_ignore_routes_over_http(env: Env) -> None:
    lora = env.fake.add_lora(name="Ink Wash", data=make_safetensors("lora", 1024, seed=1))
    async with running_gateway(env.settings) as http:
        body = {"model_id": lora.model_id, "version_id": lora.version_id}
        resp = await http.post("/api/v1/civitai/ignore-update", json=body)
        assert resp.status_code == 200 and resp.json()["ignored_version_ids"] == [str(lora.version_id)]
        resp = await http.post("/api/v1/civitai/unignore-update", json=body)
        assert resp.status_code == 200 and resp.json()["ignored_version_ids"] == []
        bad = await http.post("/api/v1/civitai/ignore-update", json={"model_id": 0, "version_id": 1})
        assert bad.status_code == 400 and bad.json()["error"]["details"][0]["reason"] == "INVALID_ID"
        junk = await http.post("/api/v1/civitai/ignore-update", json=["x"])
        assert junk.status_code == 400
