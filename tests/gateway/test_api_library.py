"""Library import (issue 12) through the HTTP API and the `modelmgr` CLI: the real registry and CivitAI
service on 127.0.0.1, the fake CivitAI, and a small library folder written by devtools.model_files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from gw_helpers import free_port, read_sse, running_gateway, settings_for, start_server

import civitai_svc.app as civitai_app
import civitai_svc.config as civitai_config
import devtools.fake_civitai as fake_civitai
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from devtools.model_files import write_safetensors

DONE = ("IMPORT_STATE_SUCCEEDED", "IMPORT_STATE_FAILED", "IMPORT_STATE_CANCELLED")
# The gateway under test shows previews up to R (4): the fake's X-rated preview (8) is hidden.
NSFW_MAX = 4


def write_library(root: Path, fake: fake_civitai.FakeCivitai) -> dict[str, Path]:
    """An A1111-style Lora folder: two LoRAs CivitAI knows (one with an X-rated preview), one it does not,
    and two files that are listed as skipped (a pickle, an SD 1.5 checkpoint)."""
    (root / "styles").mkdir(parents=True)
    files = {
        "ink": write_safetensors(root / "styles" / "ink_style.safetensors", "lora", 64 << 10, seed=1),
        "racy": write_safetensors(root / "racy.safetensors", "lora", 32 << 10, seed=2),
        "mystery": write_safetensors(root / "mystery.safetensors", "lora", 32 << 10, seed=3),
        "sd15": write_safetensors(root / "old_sd15.safetensors", "sd15-checkpoint", 16 << 10, seed=4),
        "pickle": root / "legacy.ckpt",
    }
    files["pickle"].write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # never unpickled: refused by its name
    fake.add_lora(name="Ink Style", path=files["ink"], trained_words=["inkwash", "bold lines"],
                  filename=files["ink"].name, previews=(1,))
    fake.add_lora(name="Racy Style", path=files["racy"], trained_words=["racy"], filename=files["racy"].name,
                  previews=(8,))
    return files


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    models.mkdir()
    allowed = tmp_path / "allowed"
    library = allowed / "Lora"
    fake = fake_civitai.FakeCivitai()
    files = write_library(library, fake)
    (tmp_path / "elsewhere").mkdir()
    # The registry and the CivitAI service call each other: the CivitAI service's port is picked first.
    civitai_address = f"127.0.0.1:{free_port()}"
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models, library_allow=[str(allowed)],
        civitai=civitai_address)))
    civitai = await start_server(civitai_app.create_server(civitai_config.CivitaiSettings(
        listen=civitai_address, registry=registry.address, user_models_dir=user_models, base_url=fake.base_url,
        retry_backoff_base=0.5)))
    settings = settings_for(registry=registry.address, civitai=civitai.address, preview_nsfw_max=NSFW_MAX)
    try:
        async with running_gateway(settings) as http:
            yield {"http": http, "fake": fake, "files": files, "library": library, "tmp": tmp_path,
                   "registry": registry.address, "civitai": civitai.address}
    finally:
        await civitai.stop(0)
        await registry.stop(0)
        fake.close()


def reason(resp) -> str:
    return resp.json()["error"]["details"][0]["reason"]


async def follow(http, job_id: str) -> list[tuple[str, str]]:
    async with http.stream("GET", f"/api/v1/imports/{job_id}/events") as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return await read_sse(resp)


async def test_import_over_http_then_list_preview_refresh_and_delete(env: dict) -> None:
    http, library, files = env["http"], env["library"], env["files"]
    started = await http.post("/api/v1/imports", json={"path": str(library), "mode": "in_place"})
    assert started.status_code == 201, started.text
    job = started.json()
    assert job["mode"] == "IMPORT_MODE_IN_PLACE" and job["root_id"]
    root_id = job["root_id"]

    events = await follow(http, job["id"])
    assert events[-1][0] == "end" and {name for name, _ in events[:-1]} == {"job"}
    final = json.loads(events[-2][1])
    assert final["state"] == "IMPORT_STATE_SUCCEEDED", final
    assert (final["registered"], final["identified"], final["not_on_civitai"]) == (3, 2, 1), final
    skipped = {s["path"]: s["reason"] for s in final["skipped"]}
    assert set(skipped) == {"legacy.ckpt", "old_sd15.safetensors"}, skipped
    assert (await http.get(f"/api/v1/imports/{job['id']}")).json()["state"] == "IMPORT_STATE_SUCCEEDED"
    assert job["id"] in [j["id"] for j in (await http.get("/api/v1/imports")).json()["jobs"]]

    roots = (await http.get("/api/v1/library-roots")).json()["roots"]
    assert [(r["id"], r["path"], r["model_count"]) for r in roots] == [(root_id, str(library), 3)]
    in_root = (await http.get("/api/v1/models", params={"root_id": root_id})).json()["models"]
    assert sorted(m["filename"] for m in in_root) == ["ink_style.safetensors", "mystery.safetensors",
                                                      "racy.safetensors"]
    styles = (await http.get("/api/v1/models", params={"root_id": root_id, "folder": "styles"})).json()["models"]
    assert [(m["filename"], m["folder"]) for m in styles] == [("ink_style.safetensors", "styles")]
    ink = styles[0]
    assert ink["display_name"] == "Ink Style" and ink["trigger_words"] == ["inkwash", "bold lines"]
    assert ink["path"] == str(files["ink"])  # indexed where it is

    # The preview: bytes with its sha256 as ETag, kept privately by the browser, 304 when unchanged.
    preview = await http.get("/api/v1/models/ink_style.safetensors/preview")
    assert preview.status_code == 200, preview.text
    assert preview.headers["content-type"] == ink["preview"]["content_type"]
    assert preview.headers["etag"] == f'"{ink["preview"]["sha256"]}"'
    assert hashlib.sha256(preview.content).hexdigest() == ink["preview"]["sha256"]
    assert preview.headers["cache-control"].startswith("private, max-age=")
    again = await http.get("/api/v1/models/ink_style.safetensors/preview",
                           headers={"If-None-Match": preview.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # Rated X (8), above this gateway's --preview-nsfw-max: nothing of it is served, revalidation included.
    hidden = await http.get("/api/v1/models/racy.safetensors/preview")
    assert hidden.status_code == 404 and reason(hidden) == "PREVIEW_HIDDEN"
    assert hidden.json()["error"]["details"][0]["metadata"] == {"nsfw_level": "8", "limit": str(NSFW_MAX)}
    hidden = await http.get("/api/v1/models/racy.safetensors/preview", headers={"If-None-Match": "*"})
    assert hidden.status_code == 404
    none = await http.get("/api/v1/models/mystery.safetensors/preview")
    assert none.status_code == 404 and reason(none) == "PREVIEW_NOT_FOUND"

    refreshed = await http.post("/api/v1/models/refresh-civitai",
                                json={"filenames": ["ink_style.safetensors"], "force": True})
    assert refreshed.status_code == 200, refreshed.text
    assert [m["display_name"] for m in refreshed.json()["models"]] == ["Ink Style"]

    # Deleting an entry of a root keeps its file unless asked.
    deleted = await http.delete("/api/v1/models/mystery.safetensors")
    assert deleted.status_code == 200 and deleted.json()["filename"] == "mystery.safetensors"
    assert files["mystery"].exists()
    assert (await http.get("/api/v1/models/mystery.safetensors")).status_code == 404
    deleted = await http.delete("/api/v1/models/racy.safetensors", params={"delete_file": "true"})
    assert deleted.status_code == 200 and not files["racy"].exists()

    # A finished job cancels to itself; an unknown one is a real 404 before any event.
    assert (await http.post(f"/api/v1/imports/{job['id']}/cancel")).json()["state"] == "IMPORT_STATE_SUCCEEDED"
    unknown = await http.get("/api/v1/imports/nope/events")
    assert unknown.status_code == 404 and reason(unknown) == "IMPORT_NOT_FOUND"

    removed = await http.delete(f"/api/v1/library-roots/{root_id}")
    assert removed.status_code == 200, removed.text
    assert removed.json()["removed_models"] == 1 and files["ink"].exists()
    assert (await http.get("/api/v1/library-roots")).json()["roots"] == []
    assert (await http.delete(f"/api/v1/library-roots/{root_id}")).status_code == 404


async def test_roots_outside_the_allowed_folders_bad_requests_and_the_api_key(env: dict) -> None:
    http, tmp = env["http"], env["tmp"]
    elsewhere = str(tmp / "elsewhere")
    for resp in (await http.post("/api/v1/library-roots", json={"path": elsewhere}),
                 await http.post("/api/v1/imports", json={"path": elsewhere})):
        assert resp.status_code == 403 and reason(resp) == "ROOT_NOT_ALLOWED", resp.text
    added = await http.post("/api/v1/library-roots", json={"path": str(env["library"]), "write_back": True})
    assert added.status_code == 201 and added.json()["write_back"] is True, added.text
    again = await http.post("/api/v1/library-roots", json={"path": str(env["library"])})
    assert again.status_code == 409 and reason(again) == "ROOT_ALREADY_EXISTS"
    missing = await http.post("/api/v1/imports", json={})
    assert missing.status_code == 400 and reason(missing) == "MISSING_SELECTOR", missing.text
    bad_mode = await http.post("/api/v1/imports", json={"path": str(env["library"]), "mode": "sideways"})
    assert bad_mode.status_code == 400 and reason(bad_mode) == "INVALID_REQUEST"
    unknown_root = await http.post("/api/v1/imports", json={"root_id": "r00000000"})
    assert unknown_root.status_code == 404 and reason(unknown_root) == "ROOT_NOT_FOUND"
    wrong_method = await http.put("/api/v1/library-roots")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET, POST"
    too_big = await http.post("/api/v1/imports", content=b"{" + b" " * (2 << 20) + b"}",
                              headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and reason(too_big) == "BODY_TOO_LARGE"

    keyed = settings_for(registry=env["registry"], civitai=env["civitai"], api_key="sesame")
    async with running_gateway(keyed) as locked:
        for method, path in (("GET", "/api/v1/library-roots"), ("POST", "/api/v1/imports"),
                             ("GET", "/api/v1/imports"), ("GET", "/api/v1/models/ink_style.safetensors/preview"),
                             ("POST", "/api/v1/models/refresh-civitai")):
            resp = await locked.request(method, path)
            assert resp.status_code == 401 and reason(resp) == "API_KEY_MISSING", (path, resp.text)
        ok = await locked.get("/api/v1/library-roots", headers={"x-api-key": "sesame"})
        assert ok.status_code == 200 and len(ok.json()["roots"]) == 1


# ---------------------------------------------------------------- the CLI


def cli_process(env: dict, *args: str) -> asyncio.Future:
    return asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelmgr", "--registry", env["registry"], "--civitai", env["civitai"], *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "MODELMGR_LOG_LEVEL": "WARNING"})


async def cli(env: dict, *args: str) -> tuple[int, str, str]:
    proc = await cli_process(env, *args)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def count(out: str, label: str) -> int:
    found = re.search(rf"^\s+{label}\s+(\d+)$", out, re.MULTILINE)
    assert found, (label, out)
    return int(found.group(1))


async def test_cli_import_prints_bars_and_a_summary_and_a_rescan_knows_every_file(env: dict) -> None:
    library = env["library"]
    code, out, err = await cli(env, "import", str(library))
    assert code == 0, out + err
    assert re.search(r"^import job \S+: .*Lora \(root \S+\)$", out, re.MULTILINE), out
    assert re.search(r"^scan .*━.* 5 files, \d+ models", out, re.MULTILINE), out
    assert re.search(r"^hash .*━.* (\d+)/\1 files", out, re.MULTILINE), out
    assert re.search(r"^identify .*━.* 2 identified, 1 not on CivitAI", out, re.MULTILINE), out
    assert "✓ import succeeded" in out
    assert (count(out, "registered"), count(out, "already known"), count(out, "identified"),
            count(out, "not on CivitAI"), count(out, "missing"), count(out, "skipped")) == (3, 0, 2, 1, 0, 2)
    assert "legacy.ckpt" in out and "old_sd15.safetensors" in out  # skipped, each under its reason
    assert "Traceback" not in out + err

    # The same folder again: it is the root now, every file already known (nothing to hash).
    code, out, err = await cli(env, "import", str(library), "--no-identify")
    assert code == 0, out + err
    assert (count(out, "registered"), count(out, "already known")) == (0, 3), out
    assert "skipped (--no-identify)" in out

    code, out, _ = await cli(env, "roots")
    root_id = re.search(r"│ (\S+) +│ .*Lora", out).group(1)
    assert code == 0 and " 3 " in out, out
    code, out, _ = await cli(env, "list", "--root", root_id, "--folder", "styles")
    assert code == 0 and "ink_style.safetensors" in out and "1 model(s)" in out, out
    assert f"{root_id}/styles" in out
    code, out, _ = await cli(env, "imports")
    assert code == 0 and out.count("succeeded") == 2, out
    code, out, err = await cli(env, "refresh", "ink_style.safetensors", "--force")
    assert code == 0 and "Ink Style" in out and "1 model(s) refreshed" in out, out + err

    # The import itself failing is the only non-zero exit: here it never starts.
    code, out, err = await cli(env, "import", str(env["tmp"] / "elsewhere"))
    assert code == 1 and "PERMISSION_DENIED / ROOT_NOT_ALLOWED" in err and "Traceback" not in out + err, out + err

    code, out, _ = await cli(env, "roots", "remove", root_id)
    assert code == 0 and f"removed root {root_id}" in out and "files are untouched" in out, out
    assert env["files"]["ink"].exists()


async def wait_identifying(http, job_id: str | None = None) -> dict:
    """The newest import (or `job_id`) once it is identifying."""
    while True:
        jobs = [j for j in (await http.get("/api/v1/imports")).json()["jobs"] if job_id in (None, j["id"])]
        if jobs and jobs[0]["state"] == "IMPORT_STATE_IDENTIFYING":
            return jobs[0]
        assert not jobs or jobs[0]["state"] not in DONE, jobs[0]
        await asyncio.sleep(0.05)


async def test_cli_ctrl_c_leaves_the_import_running_and_a_cancel_stops_one(env: dict) -> None:
    http, fake = env["http"], env["fake"]
    # CivitAI answers the bulk lookup 429 twice with Retry-After 2: the import waits a few seconds identifying.
    fake.rate_limit("by-hash-bulk", times=2, retry_after="2")
    proc = await cli_process(env, "import", str(env["library"]))
    job = await wait_identifying(http)
    proc.send_signal(signal.SIGINT)
    out, err = await proc.communicate()
    assert proc.returncode == 130, out.decode() + err.decode()
    assert "the import keeps running in the registry" in err.decode() and "Traceback" not in err.decode()
    # The job outlived its client: it finishes on its own.
    events = await follow(http, job["id"])
    final = json.loads(events[-2][1])
    assert final["state"] == "IMPORT_STATE_SUCCEEDED" and final["identified"] == 2, final

    # Asking CivitAI again (force_identify), held up the same way, then cancelled.
    fake.rate_limit("by-hash-bulk", times=2, retry_after="2")
    started = await http.post("/api/v1/imports", json={"root_id": job["root_id"], "force_identify": True})
    assert started.status_code == 201, started.text
    await wait_identifying(http, started.json()["id"])
    cancelled = await http.post(f"/api/v1/imports/{started.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    events = await follow(http, started.json()["id"])
    assert json.loads(events[-2][1])["state"] == "IMPORT_STATE_CANCELLED"
    code, out, _ = await cli(env, "imports")
    assert code == 0 and "cancelled" in out and "succeeded" in out, out
