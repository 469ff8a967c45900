"""The UI's "Import a folder" and gallery handlers called directly (no browser), against the real registry and
CivitAI service (over the fake CivitAI) on 127.0.0.1; and the thumbnails' route for a signed-in UI session
over real HTTP (a gateway with an API key and the UI mounted)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pytest_asyncio
from gw_helpers import running_gateway, settings_for, start_server

import civitai_svc.app as civitai_app
import civitai_svc.config as civitai_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from devtools.fake_civitai import FakeCivitai
from devtools.model_files import make_safetensors, truncated, write_safetensors
from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.ui.guard import UploadedFiles
from gateway.ui.handlers import Handlers
from gateway.ui.handlers.gallery import PAGE_SIZE
from gateway.ui.library_rendering import card_html
from gateway.ui.services import UiServices
from modelmanager.v1 import model_pb2
from service_kit import insecure_channel
from service_kit.peer import Peer

KEY = "ui-library-test-key-1b2c3d"
NO_FILTER = ("All", "All", "", "All", "any", "name", "")


@dataclass
class Lib:
    h: Handlers
    fake: FakeCivitai
    libs: Path  # the registry's --library-allow folder
    settings: GatewaySettings
    clients: ServiceClients


async def collect(updates: AsyncIterator[Any]) -> list[Any]:
    return [u async for u in updates]


def library_folder(libs: Path, fake: FakeCivitai) -> Path:
    """An A1111-style folder: a LoRA CivitAI knows (with a preview), one it does not, a checkpoint, a nested
    folder, an SD 1.5 checkpoint, a pickle and a truncated file (skipped with reasons)."""
    root = libs / "webui" / "models"
    known = write_safetensors(root / "Lora" / "ink_wash.safetensors", "lora", payload_bytes=2048, seed=1)
    fake.register_hash(hashlib.sha256(known.read_bytes()).hexdigest(), name="Ink <b>Wash</b>",
                       trained_words=["inkwash", "bold lines"], tags=["style", "ink"], base_model="Illustrious")
    write_safetensors(root / "Lora" / "styles" / "mystery.safetensors", "lora", payload_bytes=2048, seed=2)
    write_safetensors(root / "Stable-diffusion" / "base_xl.safetensors", "checkpoint", payload_bytes=4096, seed=3)
    write_safetensors(root / "Stable-diffusion" / "old_sd15.safetensors", "sd15-checkpoint", payload_bytes=1024, seed=4)
    (root / "Lora" / "pickled.ckpt").write_bytes(b"\x80\x04not really")
    (root / "Lora" / "cut.safetensors").write_bytes(truncated(make_safetensors("lora", 2048, seed=5)))
    return root


@pytest_asyncio.fixture
async def lib(tmp_path: Path) -> AsyncIterator[Lib]:
    user_models, models, libs = tmp_path / "user-models", tmp_path / "models", tmp_path / "libraries"
    for folder in (user_models, models, libs):
        folder.mkdir()
    fake = FakeCivitai()
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models, library_allow=[str(libs)])))
    civitai = await start_server(civitai_app.create_server(civitai_config.CivitaiSettings(
        listen="127.0.0.1:0", registry=registry.address, user_models_dir=user_models, base_url=fake.base_url)))
    # Both listen on port 0: the registry learns the CivitAI service's address once it is known.
    peer = Peer("civitai", insecure_channel(civitai.address), address=civitai.address)
    registry.registry.library.connect_civitai(peer)
    settings = settings_for(registry=registry.address, civitai=civitai.address)
    clients = ServiceClients.connect(settings)
    uploads = UploadedFiles(tmp_path / "uploads")
    try:
        yield Lib(Handlers.of(UiServices(lambda: clients, settings, uploads)), fake, libs, settings, clients)
    finally:
        await clients.close()
        await peer.close()
        for server in (civitai, registry):
            await server.stop(0)
        await asyncio.to_thread(fake.close)


async def imported(lib: Lib, **kw: Any) -> Path:
    root = library_folder(lib.libs, lib.fake)
    updates = await collect(lib.h.library.start_import(str(root), kw.get("mode", "in place"), True, False))
    assert updates[-1][0].count("mm-ok") == 1, updates[-1][0]
    return root


async def test_import_shows_phases_then_the_summary(lib: Lib) -> None:
    root = library_folder(lib.libs, lib.fake)
    updates = await collect(lib.h.library.start_import(f"  {root}  ", "in place", True, False))
    job_ids = {job_id for _, job_id in updates}
    assert len(job_ids) == 1 and "" not in job_ids
    first, last = updates[0][0], updates[-1][0]
    for phase in ("Scan:", "Hash:", "Identify:"):
        assert phase in first and phase in last
    summary = dict(re.findall(r"<tr><th>([^<]+)</th><td>(\d+)</td></tr>", last))
    assert summary == {"registered": "3", "already known": "0", "identified": "1", "not on CivitAI": "2",
                       "identification failed": "0", "missing": "0", "skipped": "3"}, last
    assert "Skipped (1)" in last and "pickled.ckpt" in last and "cut.safetensors" in last
    assert "old_sd15.safetensors" in last

    # The roots list, then the same folder again: nothing new, everything already known.
    table, choice, status = await lib.h.library.roots()
    assert status == "1 library root(s)"
    (row,) = table["value"]
    assert row[1] == str(root) and row[2] == 3 and row[3] == "off"
    assert choice["choices"] == [(f"{root} ({row[0]})", row[0])]
    again = (await collect(lib.h.library.start_import(str(root), "in place", True, False)))[-1][0]
    assert dict(re.findall(r"<tr><th>([^<]+)</th><td>(\d+)</td></tr>", again))["already known"] == "3"

    # Remove the root: its entries leave the index, its files stay.
    assert "its files are untouched" in await lib.h.library.remove_root(row[0])
    assert (root / "Lora" / "ink_wash.safetensors").is_file()
    assert (await lib.h.library.roots())[2] == "0 library root(s)"


async def test_import_refusals_are_text(lib: Lib) -> None:
    start = lib.h.library.start_import
    assert (await collect(start("", "in place", True, False))) == [
        ('<p class="mm-error">⚠ Give the folder to import: its absolute path on the registry&#x27;s machine.</p>', "")]
    assert "Choose how to import" in (await collect(start("/x", "teleport", True, False)))[0][0]
    outside = (await collect(start("/etc", "in place", True, False)))[0][0]
    assert "ROOT_NOT_ALLOWED" in outside and "mm-error" in outside
    relative = (await collect(start("relative/path", "in place", True, False)))[0][0]
    assert "INVALID_ROOT_PATH" in relative
    assert "Choose a library root" in await lib.h.library.remove_root("")
    assert "ROOT_NOT_FOUND" in await lib.h.library.remove_root("r-nothing")
    assert "No import is running" in await lib.h.library.cancel_import("")
    assert "IMPORT_NOT_FOUND" in await lib.h.library.cancel_import("nope")


async def test_gallery_cards_filters_sort_and_paging(lib: Lib) -> None:
    root = await imported(lib)
    gallery = lib.h.gallery
    base, place, tag, msg = await gallery.facets()
    assert msg == "" and base["choices"] == ["All", "Illustrious"]
    assert "ink" in tag["choices"] and "style" in tag["choices"]
    values = [value for _, value in place["choices"]]
    root_id = values[1]
    assert values == ["", root_id, f"{root_id}/Lora", f"{root_id}/Lora/styles", f"{root_id}/Stable-diffusion"]
    assert place["choices"][1][0] == str(root)

    cards, status, page = await gallery.cards(*NO_FILTER, 1, "blur", "")
    assert status == "3 model(s) · page 1 of 1" and page == 1
    assert cards.count('class="mm-card"') == 3
    # The identified LoRA's card: its escaped CivitAI name, a thumbnail by URL (never inline bytes).
    assert "Ink &lt;b&gt;Wash&lt;/b&gt;" in cards and "<b>Wash" not in cards
    assert re.search(r'<img src="ui-previews/ink_wash\.safetensors\?v=[0-9a-f]{16}"', cards)
    assert "data:image" not in cards and cards.count("no preview") == 2
    assert "inkwash, bold lines" in cards

    async def names(*filters: Any, sort: str = "name") -> list[str]:
        type_f, base_f, place_f, tag_f, nsfw_f = (list(filters) + list(NO_FILTER[len(filters):5]))[:5]
        html_out, _, _ = await gallery.cards(type_f, base_f, place_f, tag_f, nsfw_f, sort, "", 1, "blur", "")
        return re.findall(r'data-filename="([^"]+)"', html_out)

    assert await names("Checkpoints") == ["base_xl.safetensors"]
    assert await names("LoRAs", "Illustrious") == ["ink_wash.safetensors"]
    assert await names("All", "All", f"{root_id}/Lora") == ["ink_wash.safetensors", "mystery.safetensors"]
    assert await names("All", "All", f"{root_id}/Lora/styles") == ["mystery.safetensors"]
    assert await names("All", "All", "volume") == []
    assert await names("All", "All", "", "ink") == ["ink_wash.safetensors"]
    assert (await names(sort="size"))[0] == "base_xl.safetensors"
    assert sorted(await names(sort="date added")) == sorted(await names())
    searched, status, _ = await gallery.cards("All", "All", "", "All", "any", "name", "inkwash", 1, "blur", "")
    assert status.startswith("1 model(s)") and "ink_wash.safetensors" in searched
    # A page past the end is the last one; a hostile page number is page 1.
    assert (await gallery.cards(*NO_FILTER, 99, "blur", ""))[2] == 1
    assert (await gallery.cards(*NO_FILTER, float("nan"), "blur", ""))[2] == 1
    assert PAGE_SIZE >= 24
    # A filter the registry refuses is text in the gallery, not an exception.
    refused, status, _ = await gallery.cards("All", "x" * 500, "", "All", "any", "name", "", 1, "blur", "")
    assert "FIELD_TOO_LONG" in refused and "mm-error" in refused


def test_cards_blur_or_hide_mature_previews() -> None:
    m = model_pb2.Model(filename='a"<x>.safetensors', display_name="<img src=x onerror=alert(1)>",
                        type=model_pb2.MODEL_TYPE_LORA, trigger_words=["<script>"])
    m.preview.sha256, m.preview.nsfw_level = "ab" * 32, 8
    assert 'class="mm-thumb mm-blur"' in card_html(m, "blur", 16)
    assert "preview hidden" in card_html(m, "hide", 16) and "<img" not in card_html(m, "hide", 16)
    assert 'class="mm-thumb"' in card_html(m, "show", 16)
    assert "<img" not in card_html(m, "show", 4)  # above the gateway's limit: the route would refuse it
    m.preview.nsfw_level = 1
    assert 'class="mm-thumb"' in card_html(m, "blur", 16)
    card = card_html(m, "blur", 16)
    assert "<script>" not in card and "<img src=x" not in card
    assert 'data-filename="a&quot;&lt;x&gt;.safetensors"' in card
    assert "ui-previews/a%22%3Cx%3E.safetensors?v=" in card


async def test_card_details_edit_refresh_and_delete_keeping_the_file(lib: Lib) -> None:
    root = await imported(lib)
    gallery = lib.h.gallery
    assert (await gallery.select_card(gr.EventData(None, {})))[-1] == "Click a card to see its details."
    details = await gallery.select_card(gr.EventData(None, {"filename": "ink_wash.safetensors"}))
    filename, name, triggers, weight, tags, facts, links, copy, delete_file, label, kind, msg = details
    assert (filename, triggers, weight, tags, copy, kind, msg) == (
        "ink_wash.safetensors", "inkwash, bold lines", 1.0, "style, ink", "inkwash, bold lines", "LoRA", "")
    assert name == label == "Ink <b>Wash</b>"
    assert "Open on CivitAI" in links and "<b>" not in facts
    assert delete_file == {"__type__": "update", "visible": True, "value": False}  # a root entry: asks
    assert "GetModel" not in msg

    assert "Saved" in await gallery.save(filename, "My Ink", "ink2", 0.8, "mine")
    refreshed = await gallery.refresh_selected(filename, True)
    assert "Refreshed 1 model(s) from CivitAI: 1 found" in refreshed
    again = await gallery.details(filename)
    assert again[1] == "My Ink" and again[2] == "ink2"  # the user's edits survive the refresh
    assert "Select a model first" in await gallery.refresh_selected("", False)
    shown = await gallery.refresh_shown("LoRAs", "All", "", "All", "any", "name", "", False)
    assert "Refreshed 2 model(s)" in shown

    row, confirm = await gallery.ask_delete(filename)
    assert row["visible"] and "stays in the library folder" in confirm
    assert "stays in the library folder" in await gallery.delete(filename, False)
    assert (root / "Lora" / "ink_wash.safetensors").is_file()
    assert "MODEL_NOT_FOUND" in (await gallery.details(filename))[-1]
    assert "Deleted mystery.safetensors and its file" in await gallery.delete("mystery.safetensors", True)
    assert not (root / "Lora" / "styles" / "mystery.safetensors").exists()
    assert "Select a card first" in await gallery.delete("", False)

    used = await gallery.use_in_generate("base_xl.safetensors", "base_xl.safetensors", "Checkpoint")
    assert "Active checkpoint set to base_xl.safetensors" in used
    assert "is selected in Generate" in await gallery.use_in_generate("x.safetensors", "x", "LoRA")


async def test_thumbnails_need_the_ui_login_and_are_cached(lib: Lib) -> None:
    await imported(lib)
    settings = settings_for(registry=lib.settings.registry, civitai=lib.settings.civitai, ui=True, api_key=KEY)
    async with running_gateway(settings) as http:
        url = "/ui-previews/ink_wash.safetensors"
        anonymous = await http.get(url)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["details"][0]["reason"] == \
            "UI_LOGIN_REQUIRED"
        http.cookies.set("access-token-forged", "x")
        assert (await http.get(url)).status_code == 401
        http.cookies.clear()
        assert (await http.post("/login", data={"username": "u", "password": KEY})).status_code == 200
        got = await http.get(url)
        assert got.status_code == 200 and got.content[:4] == b"RIFF" and got.headers["content-type"] == "image/webp"
        etag = got.headers["etag"]
        assert got.headers["cache-control"] == "private, max-age=300"
        assert (await http.get(url, headers={"if-none-match": etag})).status_code == 304
        assert (await http.get("/ui-previews/mystery.safetensors")).json()["error"]["details"][0]["reason"] == \
            "PREVIEW_NOT_FOUND"
        for hostile in ("/ui-previews/..%2F..%2Fetc%2Fpasswd", "/ui-previews/.hidden", "/ui-previews/" + "a" * 600):
            assert (await http.get(hostile)).status_code in (400, 404, 422), hostile
        # Logged out: the cookie no longer opens it.
        await http.get("/logout")
        assert (await http.get(url)).status_code == 401
