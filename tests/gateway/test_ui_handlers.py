"""The web UI's handlers called directly, without a browser, against the real registry, CivitAI service
(over the fake CivitAI) and inference service on 127.0.0.1: what each returns, and its error path."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import grpc
import pytest
import pytest_asyncio
from gw_helpers import dead_address, settings_for, start_server
from PIL import Image

import civitai_svc.app as civitai_app
import civitai_svc.config as civitai_config
import devtools.fake_civitai as fake_civitai
import devtools.tiny_models as tiny
import inference_svc.app as inference_app
import inference_svc.config as inference_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.ui.error_display import NeedsInput, describe_error, shows_errors
from gateway.ui.guard import UploadedFiles
from gateway.ui.handlers import Handlers
from gateway.ui.handlers.models import NO_DETAILS
from gateway.ui.layout import build_blocks
from gateway.ui.layout.generate import LORA_ROWS_CONCURRENCY
from gateway.ui.services import UiServices
from service_kit.config import DEFAULT_CHECKPOINT
from service_kit.errors import Internal

CLIENT = "tester"


@dataclass
class Ui:
    h: Handlers
    uploads: UploadedFiles
    upload_dir: Path
    user_models: Path
    fake: fake_civitai.FakeCivitai | None = None
    lora: Any = None  # the fake CivitAI's LoRA

    def given(self, source: Path, name: str | None = None) -> str:
        """`source` as if this client had uploaded it through the UI."""
        folder = self.upload_dir / f"u{len(list(self.upload_dir.iterdir()))}"
        folder.mkdir()
        path = folder / (name or source.name)
        shutil.copyfile(source, path)
        self.uploads.add(str(path), CLIENT)
        return str(path)


def is_update(update: Any, **props: Any) -> bool:
    return isinstance(update, dict) and update.get("__type__") == "update" and all(
        update.get(k) == v for k, v in props.items())


async def collect(updates: AsyncIterator[Any]) -> list[Any]:
    return [u async for u in updates]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "checkpoint": tiny.write_tiny_checkpoint(root / "base.safetensors", seed=0),
        "checkpoint_b": tiny.write_tiny_checkpoint(root / "other.safetensors", seed=5),
        "lora": tiny.write_tiny_lora(root / "style.safetensors", seed=1),
    }


def ui_for(settings: GatewaySettings, clients: ServiceClients, tmp_path: Path, **kw: Any) -> Ui:
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    uploads = UploadedFiles(upload_dir)
    services = UiServices(lambda: clients, settings, uploads)
    return Ui(Handlers.of(services), uploads, upload_dir, tmp_path / "user-models", **kw)


@pytest_asyncio.fixture
async def ui(tmp_path: Path, tiny_files: dict[str, Path]) -> AsyncIterator[Ui]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    base = models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    base.parent.mkdir(parents=True)
    base.write_bytes(tiny_files["checkpoint"].read_bytes())
    fake = fake_civitai.FakeCivitai()
    lora_file = fake_civitai.write_safetensors(tmp_path / "ink_style.safetensors", "lora", 1 << 20, seed=1)
    lora = fake.add_lora(name="Ink Style", path=lora_file, trained_words=["inkwash", "bold lines"],
                         filename=lora_file.name)
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    civitai = await start_server(civitai_app.create_server(civitai_config.CivitaiSettings(
        listen="127.0.0.1:0", registry=registry.address, user_models_dir=user_models, base_url=fake.base_url)))
    inference = await start_server(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        device="cpu")))
    settings = settings_for(registry=registry.address, civitai=civitai.address, inference=inference.address)
    clients = ServiceClients.connect(settings)
    try:
        yield ui_for(settings, clients, tmp_path, fake=fake, lora=lora)
    finally:
        await clients.close()
        for server in (inference, civitai, registry):
            await server.stop(0)
        fake.close()


async def test_upload_list_details_edit_delete(ui: Ui, tiny_files: dict[str, Path]) -> None:
    models = ui.h.models
    assert await models.upload(None, "LoRA", "", "") == '<p class="mm-error">⚠ Choose a file to upload.</p>'
    stranger = ui.upload_dir / "not-uploaded.safetensors"
    stranger.write_bytes(tiny_files["lora"].read_bytes())
    assert "Upload the file again." in await models.upload(str(stranger), "LoRA", "", "")

    given = ui.given(tiny_files["lora"])
    done = await models.upload(given, "LoRA", " Style ", "inkwash, bold lines,")
    assert done.startswith('<p class="mm-ok">Uploaded style.safetensors (') and done.endswith(").</p>")
    assert not ui.uploads.is_upload(given) and not await asyncio.to_thread(Path(given).exists)  # copy freed
    assert (ui.user_models / "loras" / "style.safetensors").is_file()

    rows, status = await models.models_table("LoRAs", "")
    assert status == "1 model(s)"
    assert rows[0][:5] == ["style.safetensors", "Style", "LoRA", "", "inkwash, bold lines"]
    assert await models.models_table("Checkpoints", "") == ([], "0 model(s)")
    assert (await models.models_table("All", "no such words"))[1] == "0 model(s)"
    table, _ = await models.refresh_models("All", "")
    assert is_update(table) and table["value"] == rows
    assert is_update((await models.refresh_models("Checkpoints", ""))[0], value=None)

    # The same file again: the registry's reason is shown, in the upload's own message area.
    again = await models.upload(ui.given(tiny_files["lora"]), "LoRA", "", "")
    assert again.startswith('<p class="mm-error">⚠ ') and "(MODEL_ALREADY_EXISTS)" in again

    row = gr.SelectData(None, {"index": [0, 0], "value": "style.safetensors", "row_value": rows[0]})
    details = await models.select_model(row)
    assert details[:5] == ("style.safetensors", "Style", "inkwash, bold lines", 1.0, "")
    assert details[5].startswith(r"**style\.safetensors** · LoRA") and details[6] == ""
    assert await models.select_model(gr.SelectData(None, {"index": [0, 0], "value": "x"})) == (
        *NO_DETAILS, "Select a row of the table.")

    assert await models.save_details("", "x", "", 1, "") == "Select a model in the table first."
    saved = await models.save_details("style.safetensors", " Ink <b>Style</b> ", "ink", 0.7, "a, b")
    assert saved == '<p class="mm-ok">Saved style.safetensors.</p>'
    details = await models.load_details("style.safetensors")
    assert details[1:5] == ("Ink <b>Style</b>", "ink", pytest.approx(0.7), "a, b")
    missing = await models.load_details("nope.safetensors")
    assert missing[:6] == NO_DETAILS and "(MODEL_NOT_FOUND)" in missing[6]

    assert await models.delete_model("style.safetensors") == '<p class="mm-ok">Deleted style.safetensors.</p>'
    assert await models.models_table("All", "") == ([], "0 model(s)")
    assert "(MODEL_NOT_FOUND)" in await models.delete_model("style.safetensors")


async def test_checkpoints_switch_and_load(ui: Ui, tiny_files: dict[str, Path]) -> None:
    cps = ui.h.checkpoints
    assert await cps.checkpoint_choices() == ([DEFAULT_CHECKPOINT], DEFAULT_CHECKPOINT)
    assert "Uploaded other.safetensors" in await ui.h.models.upload(
        ui.given(tiny_files["checkpoint_b"]), "Checkpoint", "Other", "")
    choice, active = await cps.refresh_checkpoints()
    assert is_update(choice, choices=[DEFAULT_CHECKPOINT, "other.safetensors"], value=DEFAULT_CHECKPOINT)
    assert active == f"Active checkpoint: **{DEFAULT_CHECKPOINT}**"

    assert await collect(cps.set_active("")) == ["Pick a checkpoint."]
    steps = await collect(cps.set_active("other.safetensors"))
    assert "Active checkpoint set to other.safetensors" in steps[0]
    assert "✓ other.safetensors loaded in" in steps[-1]
    assert (await cps.checkpoint_choices())[1] == "other.safetensors"
    failed = await collect(cps.set_active("nope.safetensors"))
    assert len(failed) == 1 and failed[0].startswith('<p class="mm-error">⚠ ')
    assert "(CHECKPOINT_NOT_FOUND)" in failed[0]


async def test_fetch_info_download_and_the_refresh_after_it(ui: Ui) -> None:
    civitai = ui.h.civitai
    empty = await civitai.fetch_info("  ")
    assert empty == ('<p class="mm-error">⚠ Paste a CivitAI URL, a model id or an AIR first.</p>', "",
                     gr.update(interactive=False), None)
    bad = await civitai.fetch_info("not a reference")
    assert "(INVALID_REFERENCE)" in bad[0] and bad[1:] == ("", gr.update(interactive=False), None)

    markdown, image, button, state = await civitai.fetch_info(f" {ui.lora.url} ")
    assert markdown.startswith("### Ink Style") and "<code>inkwash</code>, <code>bold lines</code>" in markdown
    assert image.startswith('<img src="') and 'referrerpolicy="no-referrer"' in image
    assert is_update(button, interactive=True)
    assert state == {"reference": ui.lora.url, "version_id": ui.lora.version_id, "name": "Ink Style"}

    assert await collect(civitai.download(None, "")) == ['<p class="mm-error">⚠ Fetch a model&#x27;s info first.</p>']
    steps = await collect(civitai.download(state, ""))
    assert "Queued: Ink Style" in steps[0]
    assert "✓ Ink Style: installed as ink_style.safetensors" in steps[-1]
    again = await collect(civitai.download(state, ""))
    assert "already installed as ink_style.safetensors" in again[-1]
    assert "Already installed as ink_style.safetensors." in (await civitai.fetch_info(ui.lora.url))[0]

    jobs, running = await civitai.downloads_table()
    assert is_update(jobs) and ["Ink Style", "succeeded", "100 %", "ink_style.safetensors"] in [
        row[1:] for row in jobs["value"]]
    assert is_update(running, choices=[], value=None)
    assert await civitai.cancel_download(None) == "Pick a running download first."
    assert (await civitai.cancel_download("no-such-job")).startswith('<p class="mm-error">⚠ ')

    # What Download's .then() shows: the table, the checkpoints and both LoRA lists, all with the new LoRA.
    table, status, checkpoints, _, gen_loras, up_loras = await ui.h.reload_all("All", "")
    assert status == "1 model(s)" and table["value"][0][0] == "ink_style.safetensors"
    assert is_update(checkpoints, choices=[DEFAULT_CHECKPOINT])
    assert gen_loras == up_loras == [{"filename": "ink_style.safetensors", "name": "Ink Style", "weight": pytest.approx(0.7),
                                      "triggers": ["inkwash", "bold lines"]}]


async def test_prompt_preview_generate_and_upscale(ui: Ui, tiny_files: dict[str, Path]) -> None:
    gen = ui.h.generate
    await ui.h.models.upload(ui.given(tiny_files["lora"]), "LoRA", "", "inkwash")
    assert await gen.reload_loras() == [{"filename": "style.safetensors", "name": "style",
                                         "weight": 1.0, "triggers": ["inkwash"]}]
    preview = await gen.preview("a <b>cat</b>", {"style.safetensors": 0.5})
    assert preview.startswith("**Final prompt:** inkwash") and "a &lt;b&gt;cat&lt;/b&gt;" in preview
    assert "added trigger words: inkwash" in preview
    assert "(LORA_NOT_FOUND)" in await gen.preview("x", {"zzz.safetensors": 1})
    schedulers = await gen.schedulers()
    assert is_update(schedulers) and schedulers["choices"][0] == "default" and len(schedulers["choices"]) > 1

    steps = await collect(gen.generate("a cat", "", {"style.safetensors": 0.8}, 64, 64, 2, 7.0, 7, "default"))
    progress, image, info = steps[-1]
    assert "Done" in progress and isinstance(image, Image.Image) and image.size == (64, 64)
    assert info.startswith("**Seed** 7 · **64×64**") and "**Final prompt:** inkwash" in info
    assert all(is_update(img) for _, img, _ in steps[:-1])  # progress leaves the last image in place
    failed = await collect(gen.generate("a cat", "", {"zzz.safetensors": 1}, 64, 64, 2, 7.0, -1, "default"))
    assert failed[-1][0].startswith('<p class="mm-error">⚠ ') and "(LORA_NOT_FOUND)" in failed[-1][0]
    assert is_update(failed[-1][1]) and failed[-1][2] == ""

    assert await collect(gen.upscale(None, "p", "", {}, 2, 0.5, 2, 64, -1)) == [
        ('<p class="mm-error">⚠ Choose an image to upscale.</p>', gr.update(), "")]
    source = ui.upload_dir / "small.png"
    image.save(source)
    steps = await collect(gen.upscale(str(source), "p", "", {}, 2, 0.5, 2, 64, 3))
    assert "Done" in steps[-1][0] and steps[-1][1].size == (128, 128)


async def test_every_handler_shows_an_unreachable_service_as_text(tmp_path: Path) -> None:
    settings = settings_for(registry=dead_address(), civitai=dead_address(), inference=dead_address())
    clients = ServiceClients.connect(settings)
    try:
        h = ui_for(settings, clients, tmp_path).h
        rows, status = await h.models.models_table("All", "")
        assert rows == [] and status == (
            '<p class="mm-error">⚠ the registry service is unavailable (SERVICE_UNAVAILABLE)</p>')
        assert "registry service is unavailable" in (await h.models.load_details("x.safetensors"))[6]
        assert "registry service is unavailable" in await h.models.delete_model("x.safetensors")
        # Lists that have a sensible default keep it: the page still loads.
        assert await h.checkpoints.checkpoint_choices() == ([DEFAULT_CHECKPOINT], DEFAULT_CHECKPOINT)
        assert await h.generate.loras() == []
        assert await h.generate.schedulers() == gr.update(choices=["default"])
        fetched = await h.civitai.fetch_info("https://civitai.com/models/1")
        assert "the civitai service is unavailable (SERVICE_UNAVAILABLE)" in fetched[0]
        assert fetched[1:] == ("", gr.update(interactive=False), None)
        assert await h.civitai.downloads_table() == (
            gr.update(value=None), gr.update(choices=[], info="the civitai service is unavailable (SERVICE_UNAVAILABLE)"))
        assert "civitai service is unavailable" in (await collect(h.civitai.download(None, "x")))[-1]
        assert "registry service is unavailable" in (await collect(h.checkpoints.set_active("a")))[-1]
        generated = await collect(h.generate.generate("p", "", {}, 64, 64, 2, 7, -1, "default"))
        assert "inference service is unavailable (SERVICE_UNAVAILABLE)" in generated[-1][0]
    finally:
        await clients.close()


async def test_the_error_path_keeps_names_and_lets_bugs_through() -> None:
    @shows_errors(lambda message: ("failed", message))
    async def fetch_info(kind: str) -> tuple[str, str]:
        if kind == "input":
            raise NeedsInput("Type something.")
        if kind == "service":
            raise Internal("the peer answered page token 'x' with the same token again")
        if kind == "bug":
            raise KeyError("bug")
        return "ok", kind

    @shows_errors(lambda message: message)
    async def stream(fail: bool) -> AsyncIterator[str]:
        yield "first"
        if fail:
            raise NeedsInput("stopped")
        yield "second"

    assert fetch_info.__name__ == "fetch_info" and stream.__name__ == "stream"  # Gradio's API names
    assert await fetch_info("x") == ("ok", "x")
    assert await fetch_info("input") == ("failed", "Type something.")
    assert await fetch_info("service") == ("failed", "the peer answered page token 'x' with the same token "
                                                     "again (INTERNAL)")
    with pytest.raises(KeyError):  # a bug reaches Gradio, which names it in a toast
        await fetch_info("bug")
    assert await collect(stream(False)) == ["first", "second"]
    assert await collect(stream(True)) == ["first", "stopped"]
    assert describe_error(grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                               details="no such thing")) == "no such thing (NOT_FOUND)"


def test_the_lora_rows_of_both_tabs_never_render_at_once(tmp_path: Path) -> None:
    settings = settings_for(registry=dead_address(), civitai=dead_address(), inference=dead_address())
    services = UiServices(lambda: None, settings, UploadedFiles(tmp_path))  # type: ignore[arg-type,return-value]
    demo = build_blocks(Handlers.of(services))
    renders = [fn for fn in demo.fns.values() if fn.renderable is not None]
    assert len(renders) == 2
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in renders} == {(LORA_ROWS_CONCURRENCY, 1)}
