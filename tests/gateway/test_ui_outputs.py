"""The UI's history of outputs, its handlers called directly (no browser) against the real registry and
inference service on 127.0.0.1: pages of thumbnails, open, reuse parameters, send to Upscale, download,
delete, and that every image handed out is a file of the login that asked, and of no other."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
import pytest_asyncio
from gw_helpers import dead_address, settings_for, start_server
from PIL import Image
from starlette.requests import Request

import devtools.tiny_models as tiny
import gateway.ui.handlers.outputs as outputs_module
import inference_svc.app as inference_app
import inference_svc.config as inference_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from gateway.clients import ServiceClients
from gateway.ui.guard import UploadedFiles, client_of
from gateway.ui.handlers import Handlers
from gateway.ui.handlers.generate import ACTIVE_CHECKPOINT
from gateway.ui.handlers.outputs import NOTHING_OPEN
from gateway.ui.services import UiServices
from service_kit.config import DEFAULT_CHECKPOINT


def login(token: str) -> gr.Request:
    """An event's request as Gradio hands it over: the login cookie of one signed-in browser."""
    scope = {"type": "http", "headers": [(b"cookie", f"access-token-unsecure={token}; other=x".encode())]}
    return gr.Request(request=Request(scope))


def client(request: gr.Request) -> str:
    return client_of(request.request.scope)


async def collect(updates: AsyncIterator[Any]) -> list[Any]:
    return [u async for u in updates]


class Env:
    def __init__(self, h: Handlers, uploads: UploadedFiles, outputs_dir: Path) -> None:
        self.h = h
        self.uploads = uploads
        self.outputs_dir = outputs_dir


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    (user_models / "loras").mkdir(parents=True)
    base = models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    base.parent.mkdir(parents=True)
    tiny.write_tiny_checkpoint(base, seed=0)
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    inference = await start_server(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        device="cpu")))
    settings = settings_for(registry=registry.address, inference=inference.address)
    clients = ServiceClients.connect(settings)
    uploads = UploadedFiles(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    h = Handlers.of(UiServices(lambda: clients, settings, uploads))
    # A LoRA, installed through the UI's own upload path.
    (tmp_path / "uploads" / "u0").mkdir()
    lora = tiny.write_tiny_lora(tmp_path / "uploads" / "u0" / "style.safetensors", seed=1)
    uploads.add(str(lora), "tester")
    assert "Uploaded style.safetensors" in await h.models.upload(str(lora), "LoRA", "", "inkwash")
    try:
        yield Env(h, uploads, tmp_path / "outputs")
    finally:
        await clients.close()
        for server in (inference, registry):
            await server.stop(0)


async def generate(h: Handlers, prompt: str, seed: int, **kw: Any) -> None:
    args = {"negative": "blurry <i>", "selected": {"style.safetensors": 0.8}, "width": 64, "height": 72,
            "steps": 2, "guidance": 6.5, "seed": seed, "scheduler": "euler", "checkpoint": ACTIVE_CHECKPOINT, **kw}
    steps = await collect(h.generate.generate(prompt, *args.values()))
    assert "Done" in steps[-1][0], steps[-1]


async def test_history_open_reuse_send_to_upscale_delete(env: Env) -> None:
    out = env.h.outputs
    alice, bob = login("alice-token"), login("bob-token")
    gallery, ids, first, status, newer, older = await out.newest(alice)
    assert (gallery, ids, first["tokens"]) == ([], [], [""]) and status.startswith("No outputs yet")
    assert newer == gr.update(interactive=False) and older == gr.update(interactive=False)

    await generate(env.h, "a *red* cat", 7)
    await generate(env.h, "a blue dog", 8, checkpoint=DEFAULT_CHECKPOINT)
    gallery, ids, _, status, _, older = await out.newest(alice)
    assert len(ids) == 2 and status == "Page 1: 2 output(s), newest first."
    assert [caption for _, caption in gallery] == ["generate · 64×72 · seed 8", "generate · 64×72 · seed 7"]
    assert older == gr.update(interactive=False)
    for thumb, _ in gallery:  # the thumbnails: files of this login, in the upload folder, small
        assert env.uploads.owned_by(thumb, client(alice)) and not env.uploads.owned_by(thumb, client(bob))
        assert (await asyncio.to_thread(Path(thumb).resolve)).is_relative_to(env.uploads.root)
        with Image.open(thumb) as im:
            assert im.format == "WEBP" and max(im.size) <= 256
    bobs = await out.newest(bob)
    assert bobs[1] == ids and {t for t, _ in bobs[0]}.isdisjoint({t for t, _ in gallery})

    # Open the older one (the gallery click says only which thumbnail).
    image, params, opened, download, message = await out.open_selected(
        gr.SelectData(None, {"index": 1, "value": None}), ids, alice)
    assert opened == ids[1] and message == ""
    assert env.uploads.owned_by(image, client(alice)) and not env.uploads.owned_by(image, client(bob))
    assert download == gr.update(value=image, interactive=True)
    with Image.open(image) as im:
        assert im.size == (64, 72) and im.info["parameters"].startswith("inkwash, a *red* cat\nNegative prompt: blurry <i>")
    assert await asyncio.to_thread(Path(image).read_bytes) == await asyncio.to_thread(
        (env.outputs_dir / f"{opened}.png").read_bytes)
    assert r"a \*red\* cat" in params and "blurry &lt;i&gt;" in params and "**Seed** 7" in params
    assert "**LoRAs:** style\\.safetensors: 0.8" in params
    assert (await out.open_selected(gr.SelectData(None, {"index": 5, "value": None}), ids, alice))[4] == NOTHING_OPEN

    # Reuse: every field of the Generate form, the LoRA rows rebuilt with the selection, to the Generate tab.
    reused = await out.reuse(opened, {})
    prompt, negative, width, height, steps, guidance, seed, scheduler, checkpoint, applied, selected, msg, tabs = reused
    assert (prompt, negative, width, height, steps, guidance, seed) == ("a *red* cat", "blurry <i>", 64, 72, 2, 6.5, 7)
    assert scheduler["value"] == "euler" and "euler" in scheduler["choices"]
    assert checkpoint["value"] == DEFAULT_CHECKPOINT  # what it was made with, the active one then
    assert applied == {"version": 1, "selected": {"style.safetensors": 0.8}} and selected == {"style.safetensors": 0.8}
    assert "Parameters put into the Generate form." in msg and tabs == gr.update(selected="generate")
    assert (await out.reuse(ids[0], applied))[9]["version"] == 2  # each reuse rebuilds the rows anew
    assert (await out.reuse(ids[0], applied))[8]["value"] == DEFAULT_CHECKPOINT

    # Send to Upscale: a file this login owns (so the guard takes it back), then upscale it.
    up_image, msg, tabs = await out.send_to_upscale(opened, alice)
    assert env.uploads.owned_by(up_image, client(alice)) and tabs == gr.update(selected="upscale")
    steps_ = await collect(env.h.generate.upscale(up_image, "sharper", "", {}, 2, 0.5, 2, 64, 3))
    assert steps_[-1][1].size == (128, 144)
    gallery, ids, *_ = await out.newest(alice)
    assert len(ids) == 3 and gallery[0][1] == "upscale · 128×144 · seed 3"
    upscale_params = await out.reuse(ids[0], {})
    assert upscale_params[2] == gr.update() and upscale_params[3] == gr.update()  # not a Generate size
    assert "Scale** 2" in (await out.open(ids[0], alice))[1]

    # Delete: gone from the service, from the history, and every login's copies are no longer files.
    shown = await out.delete(opened)
    assert shown[:3] == (None, "", "") and f"Deleted output {opened}." in shown[4]
    assert not await asyncio.to_thread((env.outputs_dir / f"{opened}.png").exists)
    assert not env.uploads.owned_by(image, client(alice)) and not await asyncio.to_thread(Path(image).exists)
    assert opened not in (await out.newest(alice))[1]
    assert "(OUTPUT_NOT_FOUND)" in (await out.delete(opened))[4]
    assert "(OUTPUT_NOT_FOUND)" in (await out.open(opened, alice))[4]


async def test_pages_go_older_and_newer(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs_module, "PAGE_SIZE", 2)
    for seed in (1, 2, 3):
        await generate(env.h, f"p{seed}", seed, selected={})
    out, alice = env.h.outputs, login("alice")
    _, ids, pager, status, newer, older = await out.newest(alice)
    assert len(ids) == 2 and newer == gr.update(interactive=False) and older == gr.update(interactive=True)
    _, older_ids, pager, status, newer, older = await out.older(pager, alice)
    assert len(older_ids) == 1 and set(older_ids).isdisjoint(ids) and status.startswith("Page 2: 1 output(s)")
    assert newer == gr.update(interactive=True) and older == gr.update(interactive=False)
    assert (await out.older(pager, alice))[1] == older_ids  # no next page: stays
    assert (await out.newer(pager, alice))[1] == ids
    assert (await out.newer(None, alice))[1] == ids


async def test_nothing_is_named_by_the_client_and_failures_are_text(env: Env, tmp_path: Path) -> None:
    out, alice = env.h.outputs, login("alice")
    assert (await out.open("../../etc/passwd", alice))[4] == '<p class="mm-error">⚠ That is not an output id.</p>'
    assert "(INVALID_OUTPUT_ID)" in (await out.open("20250101T000000", alice))[4]
    for shown in (await out.reuse("", {}), await out.delete(""), await out.send_to_upscale("", alice)):
        assert NOTHING_OPEN in next(v for v in shown if isinstance(v, str) and "mm-error" in v)
    assert (await out.reuse("", {}))[:11] == tuple(gr.update() for _ in range(11))
    # Without the event's HTTP request there is no login to own a file: nothing is written.
    assert "Reload the page." in (await out.newest(gr.Request()))[3]
    assert not (env.uploads.root / "mm-outputs").exists()

    settings = settings_for(registry=dead_address(), inference=dead_address())
    clients = ServiceClients.connect(settings)
    try:
        dead = Handlers.of(UiServices(lambda: clients, settings, UploadedFiles(tmp_path))).outputs
        page = await dead.newest(alice)
        assert page[1] == [] and "inference service is unavailable (SERVICE_UNAVAILABLE)" in page[3]
        assert "inference service is unavailable" in (await dead.open("20250101T000000000000Z-00000000", alice))[4]
    finally:
        await clients.close()


def test_gradio_sees_the_request_and_event_parameters() -> None:
    # Gradio fills gr.Request / gr.SelectData parameters from their type hints (through shows_errors' wrapper).
    for method in ("newest", "older", "newer", "show_page", "open", "open_selected", "send_to_upscale"):
        hints = typing.get_type_hints(getattr(outputs_module.OutputHandlers, method))
        assert hints["request"] is gr.Request, method
    assert typing.get_type_hints(outputs_module.OutputHandlers.open_selected)["evt"] is gr.SelectData
