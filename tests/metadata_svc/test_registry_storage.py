"""The index on disk: concurrent writers, corrupt files, migration, rescan, restarts."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from registry_helpers import (
    CHECKPOINT,
    LORA,
    create_request,
    reason,
    sha256_file,
    write_checkpoint,
    write_lora,
)

from metadata_svc.app import create_server
from metadata_svc.config import RegistrySettings
from metadata_svc.errors import CorruptIndexError
from metadata_svc.index_store import load_index
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit import errors


async def test_200_concurrent_creates_lose_nothing(start_registry):
    reg = await start_registry()
    names = [f"lora_{i:03d}.safetensors" for i in range(200)]
    template = write_lora(reg.loras / names[0]).read_bytes()
    for name in names[1:]:
        (reg.loras / name).write_bytes(template)
    results = await asyncio.gather(*(reg.stub.CreateModel(create_request(n, LORA, display_name=n)) for n in names))
    assert sorted(r.model.filename for r in results) == names
    assert sorted(json.loads(reg.index.read_text())["models"]) == names
    flushes = reg.server.registry.store.flushes
    print(f"200 concurrent creates took {flushes} index writes")
    await reg.server.stop(0)
    again = await start_registry()
    listed = await again.stub.ListModels(registry_pb2.ListModelsRequest(page_size=1000))
    assert listed.total_size == 200


async def test_concurrent_mixed_writes(reg):
    for i in range(20):
        write_lora(reg.loras / f"m{i}.safetensors", seed=i)
    await asyncio.gather(*(reg.stub.CreateModel(create_request(f"m{i}.safetensors", LORA)) for i in range(20)))
    await asyncio.gather(
        *(reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
            model=model_pb2.Model(filename=f"m{i}.safetensors", display_name=f"Model {i}"))) for i in range(10)),
        *(reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename=f"m{i}.safetensors")) for i in range(10, 20)),
    )
    stored = json.loads(reg.index.read_text())["models"]
    assert sorted(stored) == sorted(f"m{i}.safetensors" for i in range(10))
    assert all(stored[f"m{i}.safetensors"]["display_name"] == f"Model {i}" for i in range(10))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b"[]",
        b'{"version": 2, "models": {}}',
        b'{"version": 1, "models": []}',
        b'{"version": 1, "models": {"a.safetensors": {"type": "hypernetwork"}}}',
        b'{"version": 1, "models": {"a.safetensors": {"filename": "b.safetensors", "type": "lora"}}}',
        b"",
    ],
)
async def test_corrupt_index_stops_start_up_and_is_never_overwritten(volumes, content):
    user_models, models = volumes
    index = user_models / ".metadata.json"
    index.write_bytes(content)
    write_lora(user_models / "loras" / "a.safetensors")
    with pytest.raises(CorruptIndexError) as caught:
        await create_server(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models))
    assert str(index) in str(caught.value)
    assert index.read_bytes() == content


async def test_index_keeps_unknown_fields(start_registry, volumes):
    user_models, _ = volumes
    write_lora(user_models / "loras" / "a.safetensors")
    (user_models / ".metadata.json").write_text(json.dumps({
        "version": 1, "active_checkpoint": "illustrious-xl",
        "models": {"a.safetensors": {"filename": "a.safetensors", "type": "lora", "display_name": "A",
                                     "future_field": {"x": 1}, "trigger_words": ["t"]}},
    }))
    reg = await start_registry()
    await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors", description="d")))
    stored = json.loads(reg.index.read_text())["models"]["a.safetensors"]
    assert stored["future_field"] == {"x": 1} and stored["description"] == "d" and stored["trigger_words"] == ["t"]


async def test_a_builtin_lora_found_by_rescan_gets_its_known_metadata(reg):
    write_lora(reg.loras / "lora_1231943.safetensors", seed=2)
    resp = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    (det,) = resp.added
    assert (det.filename, det.display_name, list(det.trigger_words), det.source) == (
        "lora_1231943.safetensors", "Detailer IL", ["Jeddtl02"], model_pb2.MODEL_SOURCE_BUILTIN)


async def test_migration_moves_root_files_and_seeds_builtins_idempotently(start_registry, volumes):
    user_models, _ = volumes
    write_lora(user_models / "lora_929497.safetensors", seed=1)
    write_lora(user_models / "lora_1231943.safetensors", seed=2)
    write_lora(user_models / "mine.safetensors", seed=3)
    (user_models / "readme.txt").write_text("not a model")
    reg = await start_registry()
    assert sorted(p.name for p in reg.loras.iterdir()) == [
        "lora_1231943.safetensors", "lora_929497.safetensors", "mine.safetensors"]
    assert (user_models / "readme.txt").exists() and not (user_models / "mine.safetensors").exists()
    aq = (await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="lora_929497.safetensors"))).model
    assert (aq.display_name, aq.short_name, aq.civitai_model_id, aq.civitai_version_id, list(aq.trigger_words),
            aq.recommended_weight, aq.source) == (
        "Aesthetic Quality Modifiers - Masterpiece", "Aesthetic Quality", 929497, 2247497,
        ["masterpiece", "best quality", "very aesthetic"], 1.0, model_pb2.MODEL_SOURCE_BUILTIN)
    det = (await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="lora_1231943.safetensors"))).model
    assert (det.display_name, list(det.trigger_words), det.recommended_weight, det.source) == (
        "Detailer IL", ["Jeddtl02"], 1.0, model_pb2.MODEL_SOURCE_BUILTIN)
    mine = (await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="mine.safetensors"))).model
    assert mine.source == model_pb2.MODEL_SOURCE_LOCAL and mine.type == LORA
    # Background hashing fills the sha256 of entries made without one.
    for _ in range(3000):  # a generous limit for a loaded machine; not a timing assertion
        if (await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="mine.safetensors"))).model.sha256:
            break
        await asyncio.sleep(0.01)
    got = (await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="mine.safetensors"))).model
    assert got.sha256 == sha256_file(reg.loras / "mine.safetensors")
    for _ in range(3000):  # a generous limit for a loaded machine; not a timing assertion  # let every hash land before comparing index bytes
        models = json.loads(reg.index.read_text())["models"]
        if all(m["sha256"] for m in models.values()):
            break
        await asyncio.sleep(0.01)
    await reg.server.stop(0)
    before = reg.index.read_bytes()
    again = await start_registry()
    assert again.index.read_bytes() == before  # second start: nothing to do, nothing written
    assert (await again.stub.ListModels(registry_pb2.ListModelsRequest())).total_size == 3


async def test_migration_sends_a_known_root_checkpoint_to_checkpoints(start_registry, volumes):
    user_models, _ = volumes
    write_checkpoint(user_models / "base.safetensors")
    (user_models / ".metadata.json").write_text(json.dumps({
        "version": 1, "active_checkpoint": "base.safetensors",
        "models": {"base.safetensors": {"filename": "base.safetensors", "type": "checkpoint"}}}))
    reg = await start_registry()
    assert (reg.checkpoints / "base.safetensors").is_file()
    active = await reg.stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest())
    assert active.file_present and active.model.type == CHECKPOINT


async def test_migration_never_overwrites_a_file_in_loras(start_registry, volumes):
    user_models, _ = volumes
    write_lora(user_models / "loras" / "dup.safetensors", seed=1)
    root_copy = write_lora(user_models / "dup.safetensors", seed=2).read_bytes()
    reg = await start_registry()
    assert (user_models / "dup.safetensors").read_bytes() == root_copy  # left for the operator
    assert (reg.loras / "dup.safetensors").read_bytes() != root_copy


async def test_rescan_adds_reports_missing_and_skips_bad_files(reg):
    gone = write_lora(reg.loras / "gone.safetensors")
    await reg.stub.CreateModel(create_request("gone.safetensors", LORA))
    gone.unlink()
    write_lora(reg.loras / "new.safetensors")
    write_checkpoint(reg.checkpoints / "newckpt.safetensors")
    write_checkpoint(reg.loras / "misplaced.safetensors")
    (reg.loras / "junk.safetensors").write_bytes(b"junk")
    (reg.loras / ".hidden.safetensors").write_bytes(b"x")
    (reg.loras / "partial.safetensors.part").write_bytes(b"x")
    (reg.checkpoints / "old.ckpt").write_bytes(b"x")
    resp = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert sorted(m.filename for m in resp.added) == ["new.safetensors", "newckpt.safetensors"]
    assert {m.filename: m.type for m in resp.added} == {"new.safetensors": LORA, "newckpt.safetensors": CHECKPOINT}
    assert all(m.source == model_pb2.MODEL_SOURCE_LOCAL for m in resp.added)
    assert list(resp.missing_filenames) == ["gone.safetensors"]
    skipped = {s.path.rsplit("/", 1)[-1]: s.reason for s in resp.skipped}
    assert set(skipped) == {"misplaced.safetensors", "junk.safetensors", "old.ckpt"}
    assert skipped["misplaced.safetensors"].startswith("TYPE_MISMATCH")
    assert skipped["old.ckpt"].startswith("PICKLE_NOT_ALLOWED")
    kept = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="gone.safetensors"))
    assert kept.model.file_present is False
    again = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert list(again.added) == [] and list(again.missing_filenames) == ["gone.safetensors"]


async def test_error_info_metadata_names_the_file(reg):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="x.safetensors"))
    assert reason(caught.value) == "MODEL_NOT_FOUND"
    info = errors.error_info_of(caught.value)
    assert dict(info.metadata) == {"filename": "x.safetensors"}


def test_load_index_of_a_missing_file_is_none(tmp_path):
    assert load_index(tmp_path / ".metadata.json") is None


async def test_a_failed_index_write_is_not_acknowledged_and_a_later_one_recovers(tmp_path):
    from metadata_svc.errors import IndexWriteFailed
    from metadata_svc.index_store import IndexStore

    folder = tmp_path / "vol"
    state = {"lines": [b'"a.safetensors":{"filename":"a.safetensors","type":"lora"}']}
    store = IndexStore(folder / ".metadata.json", lambda: ("illustrious-xl", list(state["lines"])))
    with pytest.raises(IndexWriteFailed) as caught:
        await store.commit()  # the folder does not exist: the write fails
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    folder.mkdir()
    await asyncio.gather(*(store.commit() for _ in range(50)))
    assert store.flushes <= 2  # grouped: 50 waiters, at most two rewrites
    loaded = load_index(folder / ".metadata.json")
    assert loaded is not None and list(loaded.models) == ["a.safetensors"]


async def test_create_whose_index_write_fails_is_unavailable_and_can_be_retried(reg):
    write_lora(reg.loras / "a.safetensors")
    # Make the rename over the index fail: a non-empty directory stands where the file was.
    reg.index.unlink()
    reg.index.mkdir()
    (reg.index / "blocker").write_text("x")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reg.stub.CreateModel(create_request("a.safetensors", LORA))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and reason(caught.value) == "INDEX_WRITE_FAILED"
    with pytest.raises(grpc.aio.AioRpcError):
        await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert not list(reg.user_models.glob(".metadata.json.*.tmp"))
    (reg.index / "blocker").unlink()
    reg.index.rmdir()
    ok = await reg.stub.CreateModel(create_request("a.safetensors", LORA))
    assert ok.model.filename == "a.safetensors"
    assert "a.safetensors" in json.loads(reg.index.read_text())["models"]
