"""Library health over HTTP: the real registry on 127.0.0.1 behind the gateway; duplicates, disk use,
bulk tags (one call, all or nothing) and bulk delete (each result reported)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from gw_helpers import running_gateway, settings_for, start_server

import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from devtools.model_files import write_safetensors

API = "/api/v1"


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    loras = user_models / "loras"
    loras.mkdir(parents=True)
    models.mkdir()
    a = write_safetensors(loras / "a.safetensors", "lora", 64 << 10, seed=1)
    shutil.copyfile(a, loras / "a-copy.safetensors")
    os.link(a, loras / "a-link.safetensors")
    write_safetensors(loras / "b.safetensors", "lora", 16 << 10, seed=2)
    (user_models / "checkpoints").mkdir()
    write_safetensors(user_models / "checkpoints" / "c.safetensors", "sdxl-checkpoint", 128 << 10, seed=3)
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    try:
        async with running_gateway(settings_for(registry=registry.address)) as http:
            rescan = await http.post(f"{API}/models/rescan")
            assert rescan.status_code == 200, rescan.text
            yield {"http": http, "loras": loras, "size": a.stat().st_size}
    finally:
        await registry.stop(0)


def reason(resp) -> str:
    return resp.json()["error"]["details"][0]["reason"]


async def _hashed(http) -> None:
    """Rescanned files are hashed in the background: wait until every entry has its sha256."""
    for _ in range(2000):  # a guard against hanging, not a timing assertion
        listed = (await http.get(f"{API}/models", params={"page_size": 100})).json()["models"]
        if all(m["sha256"] for m in listed):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never hashed")


async def test_duplicates_and_disk_usage(env):
    http, size = env["http"], env["size"]
    await _hashed(http)
    dup = (await http.get(f"{API}/duplicates")).json()
    [group] = dup["groups"]
    numbers = {e["model"]["filename"]: e["file_number"] for e in group["entries"]}
    assert set(numbers) == {"a.safetensors", "a-copy.safetensors", "a-link.safetensors"}
    assert numbers["a.safetensors"] == numbers["a-link.safetensors"] != numbers["a-copy.safetensors"]
    assert int(group["reclaimable_bytes"]) == size == int(dup["reclaimable_bytes"])

    du = await http.get(f"{API}/disk-usage", params={"biggest": 2})
    assert du.status_code == 200, du.text
    body = du.json()
    by_type = {u["type"]: int(u["bytes"]) for u in body["by_type"]}
    assert by_type["MODEL_TYPE_LORA"] == 2 * size + (env["loras"] / "b.safetensors").stat().st_size
    assert [r["root_id"] for r in body["by_root"]] == [""] and body["by_root"][0]["path"] == ""
    assert int(body["volume_free_bytes"]) > 0 and len(body["biggest"]) == 2
    assert body["biggest"][0]["filename"] == "c.safetensors"
    for bad in ("-1", "1001", "x"):
        resp = await http.get(f"{API}/disk-usage", params={"biggest": bad})
        assert resp.status_code == 400, resp.text


async def test_bulk_tags(env):
    http = env["http"]
    resp = await http.post(f"{API}/models/tags", json={
        "filenames": ["a.safetensors", "b.safetensors"], "add_tags": ["style"], "remove_tags": []})
    assert resp.status_code == 200, resp.text
    assert [m["tags"] for m in resp.json()["models"]] == [["style"], ["style"]]
    resp = await http.post(f"{API}/models/tags", json={"filenames": ["a.safetensors"], "remove_tags": ["STYLE"]})
    assert resp.json()["models"][0]["tags"] == []
    # One unknown name: 404 and nothing changed.
    resp = await http.post(f"{API}/models/tags", json={"filenames": ["b.safetensors", "nope.safetensors"],
                                                      "add_tags": ["x"]})
    assert resp.status_code == 404 and reason(resp) == "MODEL_NOT_FOUND"
    got = (await http.get(f"{API}/models/b.safetensors")).json()
    assert got["tags"] == ["style"]
    for body, why in (({"filenames": ["b.safetensors"]}, "MISSING_TAGS"),
                      ({"filenames": ["b.safetensors"], "add_tags": ["x"], "evil": 1}, "INVALID_REQUEST"),
                      ([1, 2], "INVALID_REQUEST")):
        resp = await http.post(f"{API}/models/tags", json=body)
        assert resp.status_code == 400 and reason(resp) == why, resp.text


async def test_bulk_delete_reports_each(env):
    http, loras = env["http"], env["loras"]
    resp = await http.post(f"{API}/models/delete", json={
        "filenames": ["a-copy.safetensors", "nope.safetensors", "../../etc/passwd", "b.safetensors"]})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [(r["filename"], r["deleted"]) for r in results] == [
        ("a-copy.safetensors", True), ("nope.safetensors", False), ("../../etc/passwd", False),
        ("b.safetensors", True)]
    assert results[1]["error"]["code"] == 404 and results[1]["error"]["details"][0]["reason"] == "MODEL_NOT_FOUND"
    assert results[2]["error"]["details"][0]["reason"] == "INVALID_FILENAME"
    assert resp.json()["deleted"] == 2
    assert not (loras / "a-copy.safetensors").exists() and not (loras / "b.safetensors").exists()
    assert (loras / "a.safetensors").exists()
    for body in ({"filenames": []}, {"filenames": ["x"] * 1001}, {"filenames": "a.safetensors"},
                 {"filenames": ["a.safetensors"], "delete_file": "yes"}, {"filenames": ["a"], "rm": True}):
        resp = await http.post(f"{API}/models/delete", json=body)
        assert resp.status_code == 400, (body, resp.text)
    assert (loras / "a.safetensors").exists()
