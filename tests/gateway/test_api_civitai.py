"""CivitAI routes against the real CivitAI service and registry, with the fake CivitAI, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from gw_helpers import read_sse, running_gateway, settings_for, start_server

import civitai_svc.app as civitai_app
import civitai_svc.config as civitai_config
import devtools.fake_civitai as fake_civitai
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    models.mkdir()
    fake = fake_civitai.FakeCivitai()
    lora_file = fake_civitai.write_safetensors(tmp_path / "ink_style.safetensors", "lora", 4 << 20, seed=1)
    lora = fake.add_lora(name="Ink Style", path=lora_file, trained_words=["inkwash", "bold lines"],
                         filename=lora_file.name)
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    civitai = await start_server(civitai_app.create_server(civitai_config.CivitaiSettings(
        listen="127.0.0.1:0", registry=registry.address, user_models_dir=user_models, base_url=fake.base_url,
        retry_backoff_base=0.5)))
    settings = settings_for(registry=registry.address, civitai=civitai.address)
    try:
        async with running_gateway(settings) as http:
            yield {"http": http, "fake": fake, "lora": lora, "user_models": user_models,
                   "registry": registry.address, "civitai": civitai.address}
    finally:
        await civitai.stop(0)
        await registry.stop(0)
        fake.close()


async def test_parse_info_search(env: dict) -> None:
    http, lora = env["http"], env["lora"]
    parsed = (await http.get("/api/v1/civitai/parse", params={"reference": lora.url})).json()["reference"]
    assert parsed["kind"] == "REFERENCE_KIND_VERSION" and parsed["version_id"] == str(lora.version_id)
    bad = await http.get("/api/v1/civitai/parse", params={"reference": "not a reference"})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["reason"] == "INVALID_REFERENCE"
    info = (await http.get("/api/v1/civitai/info", params={"reference": lora.url})).json()["info"]
    assert info["name"] == "Ink Style" and info["trigger_words"] == ["inkwash", "bold lines"]
    assert info["model_type"] == "MODEL_TYPE_LORA" and info["supported"] is True
    by_id = (await http.get("/api/v1/civitai/info", params={"model_id": lora.model_id})).json()["info"]
    assert by_id["version_id"] == str(lora.version_id)
    missing = await http.get("/api/v1/civitai/info", params={"model_id": 99999999})
    assert missing.status_code == 404
    assert missing.json()["error"]["details"][0]["reason"] == "CIVITAI_NOT_FOUND"
    found = (await http.get("/api/v1/civitai/search", params={"query": "Ink"})).json()["models"]
    assert [m["name"] for m in found] == ["Ink Style"]


async def test_download_watch_and_disconnect_keeps_the_job(env: dict) -> None:
    http, fake, lora = env["http"], env["fake"], env["lora"]
    # The storage host fails once, so the job is still running when the watcher leaves.
    fake.unavailable("storage", times=1)
    started = await http.post("/api/v1/downloads", json={"reference": lora.url})
    assert started.status_code == 201, started.text
    job_id = started.json()["id"]
    async with http.stream("GET", f"/api/v1/downloads/{job_id}/events") as resp:
        assert resp.status_code == 200
        first = await read_sse(resp, limit=1)
    assert first[0][0] == "job"
    assert json.loads(first[0][1])["state"] not in ("DOWNLOAD_STATE_CANCELLED", "DOWNLOAD_STATE_FAILED")
    # The browser went away; the job goes on and installs the model.
    for _ in range(600):
        job = (await http.get(f"/api/v1/downloads/{job_id}")).json()
        if job["state"] in ("DOWNLOAD_STATE_SUCCEEDED", "DOWNLOAD_STATE_FAILED", "DOWNLOAD_STATE_CANCELLED"):
            break
        await asyncio.sleep(0.1)
    assert job["state"] == "DOWNLOAD_STATE_SUCCEEDED", job
    model = (await http.get(f"/api/v1/models/{job['filename']}")).json()
    assert model["trigger_words"] == ["inkwash", "bold lines"] and model["source"] == "MODEL_SOURCE_CIVITAI"

    # Watching a finished job: its state, then the end of the stream.
    async with http.stream("GET", f"/api/v1/downloads/{job_id}/events") as resp:
        events = await read_sse(resp)
    assert [e for e, _ in events][-1] == "end"
    assert json.loads(events[-2][1])["state"] == "DOWNLOAD_STATE_SUCCEEDED"

    identified = await http.post("/api/v1/civitai/identify", json={"filename": job["filename"]})
    assert identified.status_code == 200, identified.text
    assert identified.json()["info"]["version_id"] == str(lora.version_id)
    updates = await http.post("/api/v1/civitai/check-updates")
    assert updates.status_code == 200, updates.text
    assert [u["update_available"] for u in updates.json()["updates"]] == [False]

    listed = (await http.get("/api/v1/downloads")).json()["jobs"]
    assert job_id in [j["id"] for j in listed]
    # Cancelling a finished job is a no-op that returns it.
    cancelled = await http.post(f"/api/v1/downloads/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "DOWNLOAD_STATE_SUCCEEDED"
    # An unknown job is a real 404 before any event.
    unknown = await http.get("/api/v1/downloads/nope/events")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["details"][0]["reason"] == "JOB_NOT_FOUND"


async def cli(env: dict, *args: str) -> tuple[int, str, str]:
    """`modelmgr ARGS` as a real process against the env's services: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelmgr", "--registry", env["registry"], "--civitai", env["civitai"], *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "MODELMGR_LOG_LEVEL": "WARNING"})
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_download_installs_with_progress_then_says_already_installed(env: dict) -> None:
    http, lora = env["http"], env["lora"]
    code, out, err = await cli(env, "download", lora.url)
    assert code == 0, out + err
    assert re.search(r"^job \S+: Ink Style$", out, re.MULTILINE), out
    # The progress bar, driven by the job's stream: its last state and all the bytes.
    size_mb = f"{lora.size / 1e6:.1f}"
    assert re.search(rf"Ink Style \(succeeded\) .*━.* {size_mb}/{size_mb} MB", out), out
    assert "✓ installed as ink_style.safetensors" in out, out
    model = (await http.get("/api/v1/models/ink_style.safetensors")).json()
    assert model["source"] == "MODEL_SOURCE_CIVITAI" and model["trigger_words"] == ["inkwash", "bold lines"]
    assert (env["user_models"] / "loras" / "ink_style.safetensors").stat().st_size == lora.size
    code, list_out, _ = await cli(env, "list", "--type", "lora")
    assert code == 0 and "ink_style.safetensors" in list_out and "1 model(s)" in list_out, list_out

    code, out, err = await cli(env, "download", lora.url)
    assert code == 0, out + err
    assert "✓ already installed as ink_style.safetensors" in out, out
    listed = (await http.get("/api/v1/models")).json()["models"]
    assert [m["filename"] for m in listed] == ["ink_style.safetensors"]  # not a second copy

    code, out, err = await cli(env, "download", "https://civitai.com/models/99999999")
    assert code == 1 and "CIVITAI_NOT_FOUND" in err and "Traceback" not in out + err, out + err
