"""Embeddings, VAEs and upscalers over real HTTP (issue 14), against the real registry and inference service
on 127.0.0.1: uploaded with their type, listed by it, and the new GenerateRequest / UpscaleRequest fields
(vae, upscaler, tile padding, mask blur, seams fix, regions) parsed from the JSON body and used."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from gw_helpers import read_sse, running_gateway, settings_for, start_server
from PIL import Image

import devtools.tiny_models as tiny
import inference_svc.app as inference_app
import inference_svc.config as inference_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config

KEY = "types-test-key"
AUTH = {"x-api-key": KEY}


@pytest_asyncio.fixture
async def settings(tmp_path: Path) -> AsyncIterator[object]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    tiny.write_tiny_checkpoint(models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors", seed=0)
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    inference = await start_server(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        outputs_dir=tmp_path / "outputs", device="cpu")))
    try:
        yield settings_for(registry=registry.address, inference=inference.address, api_key=KEY)
    finally:
        await inference.stop(0)
        await registry.stop(0)


async def events(http, route: str, body: dict) -> list[tuple[str, str]]:
    async with http.stream("POST", route, json=body, headers=AUTH) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return [("http", f"{resp.status_code} {resp.text}")]
        return await read_sse(resp)


def result_of(evs: list[tuple[str, str]]) -> dict:
    found = [json.loads(data) for event, data in evs if event == "result"]
    assert found, evs
    return found[0]


async def test_types_upload_list_and_the_new_job_fields(settings, tmp_path: Path) -> None:
    files = {"embedding": tiny.write_tiny_embedding(tmp_path / "shiny.safetensors", seed=1),
             "vae": tiny.write_tiny_vae(tmp_path / "fixvae.safetensors", seed=3),
             "upscaler": tiny.write_tiny_esrgan(tmp_path / "tiny_esrgan.pth", seed=0, scale=2)}
    async with running_gateway(settings) as http:
        for kind, path in files.items():
            resp = await http.post("/api/v1/models/upload", headers=AUTH, data={"type": kind},
                                   files={"file": (path.name, path.read_bytes())})
            assert resp.status_code == 201, resp.text
            assert resp.json()["type"] == f"MODEL_TYPE_{kind.upper()}"
        bad = await http.post("/api/v1/models/upload", headers=AUTH, data={"type": "hypernetwork"},
                              files={"file": ("x.safetensors", b"x")})
        assert bad.status_code == 400 and "INVALID_MODEL_TYPE" in bad.text
        for kind, path in files.items():
            listed = (await http.get("/api/v1/models", params={"type": kind}, headers=AUTH)).json()
            assert [m["filename"] for m in listed["models"]] == [path.name]
        assert len((await http.get("/api/v1/models", params={"type": "textualinversion"},
                                   headers=AUTH)).json()["models"]) == 1

        size = tiny.TINY_SIZE
        made = result_of(await events(http, "/api/v1/generate", {
            "prompt": "a cat, shiny", "width": size, "height": size, "steps": 2, "seed": 5,
            "vae": "fixvae.safetensors"}))
        assert made["vae"] == "fixvae.safetensors" and made["embeddings"] == ["shiny.safetensors"]
        missing = await events(http, "/api/v1/generate", {"prompt": "x", "width": size, "height": size,
                                                          "steps": 2, "vae": "nope.safetensors"})
        assert "VAE_NOT_FOUND" in str(missing)

        buf = io.BytesIO()
        Image.linear_gradient("L").resize((size, size)).convert("RGB").save(buf, "PNG")
        body = {"image": base64.b64encode(buf.getvalue()).decode(), "prompt": "p", "scale_factor": 2,
                "steps": 3, "tile_size": 64, "seed": 3, "upscaler": "tiny_esrgan.pth", "tile_padding": 8,
                "mask_blur": 4, "seams_fix": "SEAMS_FIX_BAND_PASS", "seams_fix_width": 16,
                "regions": [{"x": 0, "y": 0, "width": 32, "height": 32, "prompt": "a red hat"}]}
        up = await events(http, "/api/v1/upscale", body)
        stages = {json.loads(data).get("stage") for event, data in up if event == "progress"}
        assert {"enlarging", "regions", "seams_fix"} <= stages, stages
        done = result_of(up)
        assert done["upscaler"] == "tiny_esrgan.pth" and (done["width"], done["height"]) == (2 * size, 2 * size)
        outside = await events(http, "/api/v1/upscale", {**body, "regions": [
            {"x": 60, "y": 60, "width": 32, "height": 32}]})
        assert "INVALID_REGION" in str(outside)
        typo = await events(http, "/api/v1/upscale", {**body, "seams_fix": "SEAMS_FIX_SIDEWAYS"})
        assert typo[0][0] == "http" and typo[0][1].startswith("400"), typo

        status = (await http.get("/api/v1/inference/status", headers=AUTH)).json()
        assert "fixvae.safetensors" in status["vaes"] and "tiny_esrgan.pth" in status["upscalers"]
