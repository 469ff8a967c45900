"""The UI's handlers for embeddings, VAEs and upscalers (issue 14), called directly against the real registry
and inference service on 127.0.0.1 with tiny models of each type: upload and filters, a model's type fields
(a checkpoint's default VAE, an embedding's negative flag), Generate's embeddings picker and VAE, Upscale's
upscaler, USDU settings and regions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
import pytest_asyncio
from gw_helpers import settings_for, start_server
from PIL import Image

import devtools.tiny_models as tiny
import inference_svc.app as inference_app
import inference_svc.config as inference_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from gateway.clients import ServiceClients
from gateway.ui.guard import UploadedFiles
from gateway.ui.handlers import Handlers
from gateway.ui.handlers.gallery import ALL
from gateway.ui.handlers.generate import DEFAULT_VAE, LANCZOS, insert_embedding, insert_token, parse_regions
from gateway.ui.handlers.models import OWN_VAE
from gateway.ui.services import UiServices
from modelmanager.v1 import registry_pb2

CLIENT = "tester"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-types")
    return {
        "checkpoint": tiny.write_tiny_checkpoint(root / "base.safetensors", seed=0),
        "checkpoint_b": tiny.write_tiny_checkpoint(root / "other.safetensors", seed=5),
        "embedding": tiny.write_tiny_embedding(root / "shiny.safetensors", seed=1),
        "bad_hands": tiny.write_tiny_embedding(root / "bad_hands.safetensors", seed=2),
        "vae": tiny.write_tiny_vae(root / "fixvae.safetensors", seed=3),
        "upscaler": tiny.write_tiny_esrgan(root / "tiny_esrgan.safetensors", seed=0, scale=2),
    }


class Ui:
    def __init__(self, h: Handlers, uploads: UploadedFiles, upload_dir: Path) -> None:
        self.h, self.uploads, self.upload_dir = h, uploads, upload_dir

    def given(self, source: Path) -> str:
        folder = self.upload_dir / f"u{len(list(self.upload_dir.iterdir()))}"
        folder.mkdir()
        path = folder / source.name
        path.write_bytes(source.read_bytes())
        self.uploads.add(str(path), CLIENT)
        return str(path)


@pytest_asyncio.fixture
async def ui(tmp_path: Path, files: dict[str, Path]) -> AsyncIterator[Ui]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    base = models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    base.parent.mkdir(parents=True)
    base.write_bytes(files["checkpoint"].read_bytes())
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    inference = await start_server(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        device="cpu")))
    settings = settings_for(registry=registry.address, inference=inference.address)
    clients = ServiceClients.connect(settings)
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    uploads = UploadedFiles(upload_dir)
    try:
        yield Ui(Handlers.of(UiServices(lambda: clients, settings, uploads)), uploads, upload_dir)
    finally:
        await clients.close()
        for server in (inference, registry):
            await server.stop(0)


async def collect(updates: AsyncIterator[Any]) -> list[Any]:
    return [u async for u in updates]


def is_update(update: Any, **props: Any) -> bool:
    return isinstance(update, dict) and update.get("__type__") == "update" and all(
        update.get(k) == v for k, v in props.items())


async def install_all(ui: Ui, files: dict[str, Path]) -> None:
    for key, kind in (("checkpoint_b", "Checkpoint"), ("embedding", "Embedding"), ("bad_hands", "Embedding"),
                      ("vae", "VAE"), ("upscaler", "Upscaler")):
        done = await ui.h.models.upload(ui.given(files[key]), kind, "", "")
        assert done.startswith('<p class="mm-ok">Uploaded'), done


async def test_upload_filters_and_type_details(ui: Ui, files: dict[str, Path]) -> None:
    await install_all(ui, files)
    models = ui.h.models
    for type_filter, kind, names in (("Embeddings", "Embedding", ["bad_hands.safetensors", "shiny.safetensors"]),
                                     ("VAEs", "VAE", ["fixvae.safetensors"]),
                                     ("Upscalers", "Upscaler", ["tiny_esrgan.safetensors"])):
        rows, status = await models.models_table(type_filter, "")
        assert status == f"{len(names)} model(s)" and sorted(r[0] for r in rows) == names
        assert {r[2] for r in rows} == {kind}
        shown = await ui.h.gallery.shown(type_filter, ALL, "", "", "any", "name", "")
        assert sorted(m.filename for m in shown) == names
    # An embedding's token is its trigger word (the file's stem).
    rows, _ = await models.models_table("Embeddings", "")
    assert [r[4] for r in sorted(rows)] == ["bad_hands", "shiny"]

    # A type's own fields: the checkpoint's default VAE (VAEs to choose from), an embedding's negative flag.
    vae, negative = await models.type_details("other.safetensors")
    assert is_update(vae, visible=True, choices=[OWN_VAE, "fixvae.safetensors"], value=OWN_VAE)
    assert is_update(negative, visible=False)
    vae, negative = await models.type_details("bad_hands.safetensors")
    assert is_update(vae, visible=False) and is_update(negative, visible=True, value=False, info="token: bad_hands")
    assert await models.type_details("") == (gr.update(visible=False), gr.update(visible=False))
    assert all(is_update(u, visible=False) for u in await models.type_details("fixvae.safetensors"))

    saved = await models.save_details("other.safetensors", "Other", "", 1.0, "", "fixvae.safetensors", True)
    assert saved == '<p class="mm-ok">Saved other.safetensors.</p>'
    saved = await models.save_details("bad_hands.safetensors", "Bad hands", "bad_hands", 1.0, "", OWN_VAE, True)
    assert saved == '<p class="mm-ok">Saved bad_hands.safetensors.</p>'
    get = ui.h.services.unary
    other = (await get("registry", "GetModel", registry_pb2.GetModelRequest(filename="other.safetensors"))).model
    hands = (await get("registry", "GetModel", registry_pb2.GetModelRequest(filename="bad_hands.safetensors"))).model
    assert other.default_vae == "fixvae.safetensors" and not other.negative_embedding
    assert hands.negative_embedding and hands.default_vae == ""
    assert is_update((await models.type_details("other.safetensors"))[0], value="fixvae.safetensors")
    # Back to the checkpoint's own; a VAE that is not one is the registry's reason.
    await models.save_details("other.safetensors", "Other", "", 1.0, "", OWN_VAE, False)
    other = (await get("registry", "GetModel", registry_pb2.GetModelRequest(filename="other.safetensors"))).model
    assert other.default_vae == ""
    refused = await models.save_details("other.safetensors", "Other", "", 1.0, "", "shiny.safetensors", False)
    assert refused.startswith('<p class="mm-error">⚠ ') and "(NOT_A_VAE)" in refused


def test_picking_an_embedding_inserts_its_token() -> None:
    known = {"shiny.safetensors": {"token": "shiny", "negative": False},
             "bad_hands.safetensors": {"token": "bad_hands", "negative": True}}
    assert insert_embedding("shiny.safetensors", known, "a cat", "blurry") == ("a cat, shiny", "blurry",
                                                                               gr.update(value=None))
    assert insert_embedding("bad_hands.safetensors", known, "a cat", "") == ("a cat", "bad_hands",
                                                                             gr.update(value=None))
    assert insert_embedding("gone.safetensors", known, "a cat", "x") == ("a cat", "x", gr.update(value=None))
    assert insert_embedding(None, None, "a", "b")[:2] == ("a", "b")
    assert insert_token("a cat, shiny", "shiny") == "a cat, shiny"  # there already
    assert insert_token("a shinycat", "shiny") == "a shinycat, shiny"  # a word, not a substring


def test_regions_typed_as_rows() -> None:
    regions = parse_regions([[0, 0, 32, 32, " a red hat ", "style:0.5, other"], [None, None, None, None, "", ""],
                             [8.0, 16, 24, 8, "", ""]])
    assert [(r.x, r.y, r.width, r.height, r.prompt) for r in regions] == [(0, 0, 32, 32, "a red hat"),
                                                                        (8, 16, 24, 8, "")]
    assert [(lora.name, lora.weight) for lora in regions[0].loras] == [("style", 0.5), ("other", 0.0)]
    assert parse_regions(None) == []


async def test_generate_with_an_embedding_and_a_vae(ui: Ui, files: dict[str, Path]) -> None:
    await install_all(ui, files)
    gen = ui.h.generate
    known, picks, gen_vae, up_vae, upscalers = await gen.typed_models()
    assert known == {"bad_hands.safetensors": {"token": "bad_hands", "negative": False},
                     "shiny.safetensors": {"token": "shiny", "negative": False}}
    assert is_update(picks, choices=[("bad_hands (bad_hands)", "bad_hands.safetensors"),
                                     ("shiny (shiny)", "shiny.safetensors")], value=None)
    assert is_update(gen_vae, choices=[DEFAULT_VAE, "fixvae.safetensors"]) and gen_vae == up_vae
    assert is_update(upscalers, choices=[LANCZOS, "tiny_esrgan.safetensors"])

    prompt, _, _ = insert_embedding("shiny.safetensors", known, "a cat", "")
    size = tiny.TINY_SIZE
    steps = await collect(gen.generate(prompt, "", {}, size, size, 2, 7.0, 7, "default", "(active checkpoint)",
                                       "fixvae.safetensors"))
    progress, image, info = steps[-1]
    assert "Done" in progress and isinstance(image, Image.Image), progress
    assert "VAE <code>fixvae.safetensors</code>" in info and "embeddings <code>shiny.safetensors</code>" in info
    plain = await collect(gen.generate("a cat", "", {}, size, size, 2, 7.0, 7, "default"))
    assert "Done" in plain[-1][0] and "VAE" not in plain[-1][2] and "embeddings" not in plain[-1][2]
    missing = await collect(gen.generate("a cat", "", {}, size, size, 2, 7.0, 7, "default", "(active checkpoint)",
                                         "nope.safetensors"))
    assert "(VAE_NOT_FOUND)" in missing[-1][0]


async def test_upscale_with_an_upscaler_usdu_settings_and_regions(ui: Ui, files: dict[str, Path]) -> None:
    await install_all(ui, files)
    gen = ui.h.generate
    source = ui.upload_dir / "small.png"
    Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(source)
    regions = [[0, 0, 32, 32, "a red hat", ""]]
    # 3 steps: the seams pass's default strength (0.35) must make at least one (the service checks 1/steps).
    steps = await collect(gen.upscale(str(source), "p", "", {}, 2, 0.5, 3, 64, 3, "tiny_esrgan.safetensors",
                                      DEFAULT_VAE, 8, 4, "Band pass", 16, regions))
    progress, image, info = steps[-1]
    assert "Done" in progress and image.size == (128, 128), progress
    assert "upscaler <code>tiny_esrgan.safetensors</code>" in info
    stages = " ".join(p for p, _, _ in steps)
    assert "enlarging" in stages and "regions" in stages and "seams_fix" in stages

    lanczos = await collect(gen.upscale(str(source), "p", "", {}, 2, 0.5, 3, 64, 3, LANCZOS, DEFAULT_VAE, 0, 0,
                                        "Half tile", 64, None))
    assert "Done" in lanczos[-1][0] and "upscaler" not in lanczos[-1][2]

    outside = await collect(gen.upscale(str(source), "p", "", {}, 2, 0.5, 2, 64, 3, LANCZOS, DEFAULT_VAE, 0, 0,
                                        "None", 64, [[60, 60, 32, 32, "x", ""]]))
    assert "(INVALID_REGION)" in outside[-1][0]
    typo = await collect(gen.upscale(str(source), "p", "", {}, 2, 0.5, 2, 64, 3, LANCZOS, DEFAULT_VAE, 0, 0,
                                     "None", 64, [["left", 0, 8, 8, "x", ""]]))
    assert typo[-1][0] == '<p class="mm-error">⚠ Region 1: x must be a number of pixels.</p>'
    unknown = await collect(gen.upscale(str(source), "p", "", {}, 2, 0.5, 2, 64, 3, "nope.pth"))
    assert "(UPSCALER_NOT_FOUND)" in unknown[-1][0]
