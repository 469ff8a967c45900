"""The HTTP API against the real registry and inference services (in-process, port 0), over real HTTP."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from gw_helpers import read_sse, running_gateway, settings_for, start_server

import devtools.tiny_models as tiny
import inference_svc.app as inference_app
import inference_svc.config as inference_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "checkpoint": tiny.write_tiny_checkpoint(root / "base.safetensors", seed=0),
        "checkpoint_b": tiny.write_tiny_checkpoint(root / "other.safetensors", seed=5),
        "lora": tiny.write_tiny_lora(root / "style.safetensors", seed=1),
    }


@pytest_asyncio.fixture
async def services(tmp_path: Path, tiny_files: dict[str, Path]) -> AsyncIterator[dict[str, object]]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    base = models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    base.parent.mkdir(parents=True)
    base.write_bytes(tiny_files["checkpoint"].read_bytes())
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    inference = await start_server(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        device="cpu")))
    try:
        yield {"registry": registry, "inference": inference, "user_models": user_models}
    finally:
        await inference.stop(0)
        await registry.stop(0)


async def upload(http, path: Path, **fields: str):
    data = {"type": "lora", **fields}
    with path.open("rb") as fh:
        return await http.post("/api/v1/models/upload", data=data, files={"file": (path.name, fh)})


async def test_models_crud_compose_and_errors(services: dict, tiny_files: dict[str, Path]) -> None:
    settings = settings_for(registry=services["registry"].address, inference=services["inference"].address)
    async with running_gateway(settings) as http:
        resp = await upload(http, tiny_files["lora"], display_name="Style", trigger_words="inkwash, bold lines",
                            recommended_weight="0.7")
        assert resp.status_code == 201, resp.text
        model = resp.json()
        assert model["filename"] == "style.safetensors"
        assert model["type"] == "MODEL_TYPE_LORA"
        assert model["trigger_words"] == ["inkwash", "bold lines"]
        assert int(model["file_size_bytes"]) == tiny_files["lora"].stat().st_size

        listed = (await http.get("/api/v1/models", params={"type": "lora"})).json()
        assert [m["filename"] for m in listed["models"]] == ["style.safetensors"]
        assert (await http.get("/api/v1/models", params={"type": "checkpoint"})).json()["models"] == []

        patched = await http.patch("/api/v1/models/style.safetensors",
                                   json={"display_name": "Ink Style", "tags": ["ink"]})
        assert patched.status_code == 200, patched.text
        assert patched.json()["display_name"] == "Ink Style"
        assert patched.json()["trigger_words"] == ["inkwash", "bold lines"]  # not in the mask: unchanged

        composed = (await http.post("/api/v1/prompt/compose", json={
            "prompt": "a harbour at dusk", "loras": [{"name": "style.safetensors", "weight": 0.5}]})).json()
        assert composed["injected_trigger_words"] == ["inkwash", "bold lines"]
        assert composed["prompt"].startswith("inkwash") and composed["prompt"].endswith("a harbour at dusk")

        # Errors keep the registry's reason and domain.
        missing = await http.get("/api/v1/models/nope.safetensors")
        assert missing.status_code == 404
        info = missing.json()["error"]["details"][0]
        assert info["reason"] == "MODEL_NOT_FOUND" and info["domain"] == "registry.modelmanager"
        again = await upload(http, tiny_files["lora"])
        assert again.status_code == 409
        assert again.json()["error"]["details"][0]["reason"] == "MODEL_ALREADY_EXISTS"
        bad_name = await http.get("/api/v1/models/.hidden.safetensors")
        assert bad_name.status_code == 400
        unknown_lora = await http.post("/api/v1/prompt/compose", json={"prompt": "x", "loras": [{"name": "zzz"}]})
        assert unknown_lora.status_code == 404
        assert unknown_lora.json()["error"]["details"][0]["reason"] == "LORA_NOT_FOUND"

        deleted = await http.delete("/api/v1/models/style.safetensors")
        assert deleted.status_code == 200
        assert not (services["user_models"] / "loras" / "style.safetensors").exists()
        assert (await http.get("/api/v1/models/style.safetensors")).status_code == 404


async def test_checkpoints_generate_and_status(services: dict, tiny_files: dict[str, Path]) -> None:
    from PIL import Image

    settings = settings_for(registry=services["registry"].address, inference=services["inference"].address)
    async with running_gateway(settings) as http:
        active = (await http.get("/api/v1/active-checkpoint")).json()
        assert active["checkpoint"] == "illustrious-xl" and active["file_present"] is True
        nope = await http.put("/api/v1/active-checkpoint", json={"checkpoint": "nope.safetensors"})
        assert nope.status_code == 404
        assert nope.json()["error"]["details"][0]["reason"] == "CHECKPOINT_NOT_FOUND"

        up = await upload(http, tiny_files["checkpoint_b"], type="checkpoint", display_name="Other")
        assert up.status_code == 201, up.text
        put = await http.put("/api/v1/active-checkpoint", json={"checkpoint": "other.safetensors"})
        assert put.status_code == 200 and put.json()["checkpoint"] == "other.safetensors"
        async with http.stream("POST", "/api/v1/checkpoints/load", json={}) as resp:
            assert resp.status_code == 200
            events = await read_sse(resp)
        result = json.loads(next(d for e, d in events if e == "result"))
        assert result["checkpoint"] == "other.safetensors"
        assert events[-1][0] == "end"

        lora = await upload(http, tiny_files["lora"], trigger_words="inkwash")
        assert lora.status_code == 201
        body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 7,
                "loras": [{"name": "style.safetensors", "weight": 0.8}]}
        async with http.stream("POST", "/api/v1/generate", json=body) as resp:
            assert resp.status_code == 200
            events = await read_sse(resp)
        names = [e for e, _ in events]
        assert "progress" in names and names[-2:] == ["result", "end"]
        result = json.loads(events[-2][1])
        image = Image.open(io.BytesIO(base64.b64decode(result["png"])))
        assert image.size == (64, 64)
        assert result["final_prompt"].startswith("inkwash")
        assert result["checkpoint"] == "other.safetensors"

        buf = io.BytesIO()
        image.save(buf, format="PNG")
        body = {"image": base64.b64encode(buf.getvalue()).decode(), "prompt": "sharper", "scale_factor": 2,
                "steps": 4, "tile_size": 64, "tile_overlap": 16, "seed": 1}
        async with http.stream("POST", "/api/v1/upscale", json=body) as resp:
            assert resp.status_code == 200, (await resp.aread()).decode()
            events = await read_sse(resp)
        assert [e for e, _ in events][-2:] == ["result", "end"]
        upscaled = json.loads(events[-2][1])
        assert Image.open(io.BytesIO(base64.b64decode(upscaled["png"]))).size == (128, 128)
        assert any(json.loads(d).get("total_tiles") for e, d in events if e == "progress")

        bad = await http.post("/api/v1/generate", json={"prompt": "x", "width": 63})
        assert bad.status_code == 400  # refused before any event: a real HTTP error, not a 200 stream
        assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"

        status = (await http.get("/api/v1/inference/status")).json()
        assert status["device"] == "cpu"
        assert status["current_checkpoint"] == "other.safetensors"
        schedulers = (await http.get("/api/v1/inference/schedulers")).json()["schedulers"]
        assert schedulers
        health = (await http.get("/api/v1/health")).json()["services"]
        assert health["registry"] == "SERVING" and health["inference"] == "SERVING"


async def test_cli_list_active_set_active_generate(services: dict, tiny_files: dict[str, Path], tmp_path: Path) -> None:
    import asyncio
    import os
    import sys

    from PIL import Image

    settings = settings_for(registry=services["registry"].address, inference=services["inference"].address)
    async with running_gateway(settings) as http:
        assert (await upload(http, tiny_files["lora"], trigger_words="inkwash")).status_code == 201
        assert (await upload(http, tiny_files["checkpoint_b"], type="checkpoint")).status_code == 201

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelmgr", "--registry", services["registry"].address,
            "--inference", services["inference"].address, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "COLUMNS": "200", "MODELMGR_LOG_LEVEL": "WARNING"})
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    code, out = await cli("list")
    assert code == 0 and "style.safetensors" in out and "other.safetensors" in out, out
    code, out = await cli("list", "--type", "checkpoint")
    assert code == 0 and "style.safetensors" not in out
    code, out = await cli("active")
    assert code == 0 and "illustrious-xl" in out
    code, out = await cli("set-active", "other.safetensors")
    assert code == 0 and "loaded other.safetensors" in out, out
    target = tmp_path / "out.png"
    code, out = await cli("generate", "a cat", "--lora", "style.safetensors:0.6", "--width", "64", "--height", "64",
                          "--steps", "2", "--seed", "3", "-o", str(target))
    assert code == 0, out
    assert Image.open(target).size == (64, 64)
    assert "inkwash" in out
    code, out = await cli("set-active", "missing.safetensors")
    assert code == 1 and "CHECKPOINT_NOT_FOUND" in out and "Traceback" not in out
