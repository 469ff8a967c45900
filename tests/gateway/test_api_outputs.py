"""The outputs routes against the real registry and inference services (in-process, port 0), over real HTTP:
a result made through /generate is listed, read, served as a cacheable PNG and deleted."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from gw_helpers import read_sse, running_gateway, settings_for, start_server
from PIL import Image

import devtools.tiny_models as tiny
import inference_svc.app as inference_app
import inference_svc.config as inference_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config

KEY = "outputs-test-key"
AUTH = {"x-api-key": KEY}


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "base.safetensors", seed=0)


@pytest.fixture
def volumes_with_base(tmp_path: Path, base_checkpoint: Path) -> tuple[Path, Path]:
    """(user-models, models), the tiny checkpoint as the default base one."""
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    base = models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    base.parent.mkdir(parents=True)
    base.write_bytes(base_checkpoint.read_bytes())
    return user_models, models


def names_in(folder: str) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


@pytest_asyncio.fixture
async def services(tmp_path: Path, volumes_with_base: tuple[Path, Path]) -> AsyncIterator[dict[str, str]]:
    user_models, models = volumes_with_base
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    inference = await start_server(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        outputs_dir=tmp_path / "my-outputs", device="cpu")))
    try:
        yield {"registry": registry.address, "inference": inference.address, "outputs": str(tmp_path / "my-outputs")}
    finally:
        await inference.stop(0)
        await registry.stop(0)


def assert_error(resp, status: int, reason: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["details"][0]["reason"] == reason, resp.text


async def generate(http, **fields: object) -> dict:
    body = {"prompt": "a lighthouse, at night", "width": tiny.TINY_SIZE, "height": tiny.TINY_SIZE, "steps": 2,
            "seed": 11, **fields}
    async with http.stream("POST", "/api/v1/generate", json=body, headers=AUTH) as resp:
        assert resp.status_code == 200
        events = await read_sse(resp)
    return json.loads(next(data for event, data in events if event == "result"))


async def test_outputs_are_listed_read_served_cached_and_deleted(services: dict[str, str]) -> None:
    settings = settings_for(registry=services["registry"], inference=services["inference"], api_key=KEY)
    async with running_gateway(settings) as http:
        first = await generate(http, negative_prompt="fog")
        second = await generate(http, seed=12)
        assert first["output_id"] and second["output_id"]
        assert names_in(services["outputs"]) == sorted(
            f"{r['output_id']}.{ext}" for r in (first, second) for ext in ("png", "json"))

        listed = await http.get("/api/v1/outputs", headers=AUTH)
        assert listed.status_code == 200, listed.text
        assert [o["id"] for o in listed.json()["outputs"]] == [second["output_id"], first["output_id"]]
        page = await http.get("/api/v1/outputs", params={"page_size": 1}, headers=AUTH)
        assert [o["id"] for o in page.json()["outputs"]] == [second["output_id"]]
        rest = await http.get("/api/v1/outputs", params={"page_token": page.json()["next_page_token"]}, headers=AUTH)
        assert [o["id"] for o in rest.json()["outputs"]] == [first["output_id"]]
        assert rest.json()["next_page_token"] == ""

        one = await http.get(f"/api/v1/outputs/{first['output_id']}", headers=AUTH)
        assert one.status_code == 200, one.text
        output = one.json()
        assert output["kind"] == "generate" and output["parameters"]["negative_prompt"] == "fog"
        assert output["parameters"]["seed"] == "11"  # int64 in proto JSON is a string
        assert output["infotext"].startswith("a lighthouse, at night\nNegative prompt: fog\nSteps: 2, ")
        assert "png" not in output

        image = await http.get(f"/api/v1/outputs/{first['output_id']}/image", headers=AUTH)
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.headers["cache-control"].startswith("private")
        etag = image.headers["etag"]
        png = Image.open(io.BytesIO(image.content))
        assert png.text["parameters"] == output["infotext"]  # type: ignore[attr-defined]
        cached = await http.get(f"/api/v1/outputs/{first['output_id']}/image", headers={**AUTH, "if-none-match": etag})
        assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
        other = await http.get(f"/api/v1/outputs/{first['output_id']}/image",
                               headers={**AUTH, "if-none-match": '"something-else"'})
        assert other.status_code == 200 and other.content == image.content

        gone = await http.delete(f"/api/v1/outputs/{first['output_id']}", headers=AUTH)
        assert gone.status_code == 204, gone.text
        assert_error(await http.get(f"/api/v1/outputs/{first['output_id']}", headers=AUTH), 404, "OUTPUT_NOT_FOUND")
        # A browser revalidating a deleted image is told it is gone, not that its copy is fresh.
        assert_error(await http.get(f"/api/v1/outputs/{first['output_id']}/image",
                                    headers={**AUTH, "if-none-match": etag}), 404, "OUTPUT_NOT_FOUND")
        assert_error(await http.delete(f"/api/v1/outputs/{first['output_id']}", headers=AUTH), 404,
                     "OUTPUT_NOT_FOUND")
        listed = await http.get("/api/v1/outputs", headers=AUTH)
        assert [o["id"] for o in listed.json()["outputs"]] == [second["output_id"]]


async def test_outputs_need_the_key_and_refuse_hostile_ids(services: dict[str, str]) -> None:
    settings = settings_for(registry=services["registry"], inference=services["inference"], api_key=KEY)
    async with running_gateway(settings) as http:
        for method, path in (("GET", "/api/v1/outputs"), ("GET", "/api/v1/outputs/x"),
                             ("GET", "/api/v1/outputs/x/image"), ("DELETE", "/api/v1/outputs/x")):
            assert (await http.request(method, path)).status_code == 401, path
        # (A bare `..` never gets here: the client resolves it out of the URL.)
        for bad in ("x.png", "*", "%00", "...", "20250101T120000123456Z-1a2b3c4d.json", "a%20b"):
            for suffix in ("", "/image"):
                assert_error(await http.get(f"/api/v1/outputs/{bad}{suffix}", headers=AUTH), 400, "INVALID_OUTPUT_ID")
            assert_error(await http.delete(f"/api/v1/outputs/{bad}", headers=AUTH), 400, "INVALID_OUTPUT_ID")
        # An id holding a slash is no id of this route at all.
        for bad in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
            resp = await http.get(f"/api/v1/outputs/{bad}/image", headers=AUTH)
            assert resp.status_code == 404 and resp.json()["error"]["details"][0]["reason"] == "NOT_FOUND", resp.text
        too_long = await http.get("/api/v1/outputs/" + "a" * 5000, headers=AUTH)
        assert too_long.status_code == 400, too_long.text
        assert_error(await http.get("/api/v1/outputs", params={"page_token": "../x"}, headers=AUTH), 400,
                     "INVALID_PAGE_TOKEN")
        assert_error(await http.get("/api/v1/outputs", params={"page_size": -1}, headers=AUTH), 400,
                     "INVALID_PAGE_SIZE")
        assert "my-outputs" not in names_in(str(Path(services["outputs"]).parent))  # nothing was ever saved
