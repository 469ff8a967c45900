"""Create, Get, Update and Delete through the wire, with every bad-input rule."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import field_mask_pb2
from registry_helpers import (
    CHECKPOINT,
    LORA,
    create_request,
    huge_header_bytes,
    reason,
    sha256_file,
    write_checkpoint,
    write_lora,
    write_unknown_safetensors,
)

from modelmanager.v1 import model_pb2, registry_pb2


async def _fails(call, code: grpc.StatusCode, expected_reason: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert reason(caught.value) == expected_reason, caught.value.details()
    return caught.value


async def test_create_fills_size_sha_and_inspection(reg):
    path = write_lora(reg.loras / "style.safetensors")
    resp = await reg.stub.CreateModel(create_request(
        "style.safetensors", LORA, display_name="Ink Style", trigger_words=["inkwash", " bold lines ", "INKWASH"],
        recommended_weight=0.7, base_model="Illustrious", tags=["ink"], source=model_pb2.MODEL_SOURCE_CIVITAI,
        civitai_model_id=12, civitai_version_id=34, civitai_url="https://civitai.com/models/12"))
    m = resp.model
    assert m.filename == "style.safetensors" and m.type == LORA
    assert m.file_size_bytes == path.stat().st_size
    assert m.sha256 == sha256_file(path)
    assert list(m.trigger_words) == ["inkwash", "bold lines"]  # stripped, case-insensitive duplicates dropped
    assert m.source == model_pb2.MODEL_SOURCE_CIVITAI and m.civitai_version_id == 34
    assert m.path == str(path.absolute()) and m.file_present
    assert (m.inspection.detected_type, m.inspection.lora_format, m.inspection.architecture) == ("lora", "kohya", "sdxl")
    assert m.inspection.header_metadata["ss_network_module"] == "networks.lora"
    assert m.added_at.seconds > 0
    got = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="style.safetensors"))
    assert got.model == m
    # The index on disk keeps the old app's UserModelEntry field names, so volumes it wrote stay compatible.
    stored = json.loads(reg.index.read_text())
    entry = stored["models"]["style.safetensors"]
    assert stored["version"] == 1 and stored["active_checkpoint"] == "illustrious-xl"
    for key in ("filename", "type", "display_name", "short_name", "source", "trigger_words", "recommended_weight",
                "base_model", "tags", "description", "file_size_bytes", "added_at", "civitai_model_id",
                "civitai_version_id", "civitai_url", "sha256"):
        assert key in entry
    assert entry["type"] == "lora" and entry["source"] == "civitai" and entry["display_name"] == "Ink Style"


async def test_create_peft_lora_and_sdxl_checkpoint(reg):
    write_lora(reg.loras / "peft.safetensors", fmt="peft")
    write_checkpoint(reg.checkpoints / "base.safetensors")
    lora = (await reg.stub.CreateModel(create_request("peft.safetensors", LORA))).model
    assert (lora.inspection.lora_format, lora.display_name, lora.recommended_weight) == ("peft", "peft", 1.0)
    ckpt = (await reg.stub.CreateModel(create_request("base.safetensors", CHECKPOINT))).model
    assert (ckpt.inspection.detected_type, ckpt.inspection.architecture) == ("checkpoint", "sdxl")


async def test_create_verifies_a_given_sha256(reg):
    path = write_lora(reg.loras / "a.safetensors")
    await _fails(reg.stub.CreateModel(create_request("a.safetensors", LORA, sha256="0" * 64)),
                 grpc.StatusCode.FAILED_PRECONDITION, "SHA256_MISMATCH")
    ok = await reg.stub.CreateModel(create_request("a.safetensors", LORA, sha256=sha256_file(path).upper()))
    assert ok.model.sha256 == sha256_file(path)


async def test_create_refuses_existing_and_never_overwrites(reg):
    write_lora(reg.loras / "a.safetensors")
    first = await reg.stub.CreateModel(create_request("a.safetensors", LORA, display_name="First"))
    err = await _fails(reg.stub.CreateModel(create_request("a.safetensors", LORA, display_name="Second")),
                       grpc.StatusCode.ALREADY_EXISTS, "MODEL_ALREADY_EXISTS")
    assert "a.safetensors" in err.details()
    got = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert got.model.display_name == "First" and got.model == first.model


@pytest.mark.parametrize(
    ("filename", "why"),
    [
        ("../evil.safetensors", "separator"),
        ("sub/dir.safetensors", "separator"),
        ("back\\slash.safetensors", "separator"),
        ("..", "dots"),
        ("a..b.safetensors", "dots"),
        (".hidden.safetensors", "leading dot"),
        ("bell\x07.safetensors", "control"),
        ("new\nline.safetensors", "control"),
        ("x" * 250 + ".safetensors", "too long"),
        ("é" * 130 + ".safetensors", "too long in bytes"),
        ("", "empty"),
    ],
)
async def test_bad_filenames_are_refused(reg, filename, why):
    await _fails(reg.stub.CreateModel(create_request(filename, LORA)), grpc.StatusCode.INVALID_ARGUMENT,
                 "INVALID_FILENAME")
    await _fails(reg.stub.GetModel(registry_pb2.GetModelRequest(filename=filename)),
                 grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILENAME")


async def test_extensions_and_pickle_formats(reg):
    (reg.loras / "notes.txt").write_text("hi")
    err = await _fails(reg.stub.CreateModel(create_request("notes.txt", LORA)), grpc.StatusCode.INVALID_ARGUMENT,
                       "UNSUPPORTED_EXTENSION")
    assert ".safetensors" in err.details()
    for name in ("old.ckpt", "old.pt", "old.bin", "old.pth"):
        (reg.checkpoints / name).write_bytes(b"\x80\x04pickle")
        err = await _fails(reg.stub.CreateModel(create_request(name, CHECKPOINT)),
                           grpc.StatusCode.INVALID_ARGUMENT, "PICKLE_NOT_ALLOWED")
        assert "arbitrary code" in err.details()
    assert (await reg.stub.ListModels(registry_pb2.ListModelsRequest())).total_size == 0


async def test_pickle_allowed_by_configuration(start_registry):
    reg = await start_registry(allow_pickle=True)
    (reg.checkpoints / "old.ckpt").write_bytes(b"\x80\x04pickle")
    m = (await reg.stub.CreateModel(create_request("old.ckpt", CHECKPOINT))).model
    assert (m.inspection.format, m.inspection.detected_type) == ("pickle", "unknown")


async def test_missing_file_missing_type_and_wrong_folder(reg):
    await _fails(reg.stub.CreateModel(create_request("ghost.safetensors", LORA)), grpc.StatusCode.NOT_FOUND,
                 "FILE_NOT_FOUND")
    write_lora(reg.loras / "a.safetensors")
    await _fails(reg.stub.CreateModel(create_request("a.safetensors", model_pb2.MODEL_TYPE_UNSPECIFIED)),
                 grpc.StatusCode.INVALID_ARGUMENT, "MISSING_TYPE")
    err = await _fails(reg.stub.CreateModel(create_request("a.safetensors", CHECKPOINT)), grpc.StatusCode.NOT_FOUND,
                       "FILE_NOT_FOUND")
    assert "loras/" in err.details()


async def test_header_must_match_the_claimed_type(reg):
    write_checkpoint(reg.loras / "ckpt-as-lora.safetensors")
    write_lora(reg.checkpoints / "lora-as-ckpt.safetensors")
    write_checkpoint(reg.checkpoints / "sd15.safetensors", arch="sd15")
    write_unknown_safetensors(reg.loras / "mystery.safetensors")
    for name, kind in (("ckpt-as-lora.safetensors", LORA), ("lora-as-ckpt.safetensors", CHECKPOINT),
                       ("sd15.safetensors", CHECKPOINT), ("mystery.safetensors", LORA)):
        await _fails(reg.stub.CreateModel(create_request(name, kind)), grpc.StatusCode.INVALID_ARGUMENT,
                     "TYPE_MISMATCH")
    assert (await reg.stub.ListModels(registry_pb2.ListModelsRequest())).total_size == 0


async def test_unparsable_or_absurd_safetensors_headers(reg):
    (reg.loras / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    (reg.loras / "huge.safetensors").write_bytes(huge_header_bytes())
    (reg.loras / "tiny.safetensors").write_bytes(b"abc")
    (reg.loras / "past-end.safetensors").write_bytes(b"\xff\x00\x00\x00\x00\x00\x00\x00{}")
    for name in ("junk", "huge", "tiny", "past-end"):
        err = await _fails(reg.stub.CreateModel(create_request(f"{name}.safetensors", LORA)),
                           grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SAFETENSORS")
        assert name in err.details()


async def test_get_unknown_model(reg):
    err = await _fails(reg.stub.GetModel(registry_pb2.GetModelRequest(filename="nope.safetensors")),
                       grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")
    assert "nope.safetensors" in err.details()


async def test_update_with_field_mask(reg):
    write_lora(reg.loras / "a.safetensors")
    await reg.stub.CreateModel(create_request("a.safetensors", LORA, display_name="A", trigger_words=["x"],
                                              description="old"))
    resp = await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors", display_name="Renamed", description="new",
                              trigger_words=["y"]),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name", "description"])))
    assert (resp.model.display_name, resp.model.description, list(resp.model.trigger_words)) == ("Renamed", "new", ["x"])
    # An empty mask updates every editable field that is set.
    resp = await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors", trigger_words=["y", "z"], recommended_weight=0.6,
                              tags=["t"], short_name="S", base_model="Pony")))
    m = resp.model
    assert (list(m.trigger_words), m.recommended_weight, list(m.tags), m.short_name, m.base_model, m.display_name) == (
        ["y", "z"], 0.6, ["t"], "S", "Pony", "Renamed")
    # Clearing a list through the mask.
    resp = await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors"), update_mask=field_mask_pb2.FieldMask(paths=["tags"])))
    assert list(resp.model.tags) == []
    stored = json.loads(reg.index.read_text())["models"]["a.safetensors"]
    assert stored["trigger_words"] == ["y", "z"] and stored["short_name"] == "S" and stored["tags"] == []


async def test_update_errors(reg):
    write_lora(reg.loras / "a.safetensors")
    await reg.stub.CreateModel(create_request("a.safetensors", LORA))
    await _fails(reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors"), update_mask=field_mask_pb2.FieldMask(paths=["sha256"]))),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK")
    for weight in (float("nan"), float("inf"), 11.0):
        await _fails(reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
            model=model_pb2.Model(filename="a.safetensors", recommended_weight=weight))),
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHT")
    await _fails(reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="b.safetensors", display_name="x"))), grpc.StatusCode.NOT_FOUND,
        "MODEL_NOT_FOUND")
    got = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert got.model.recommended_weight == 1.0


async def test_delete_removes_entry_and_file_or_keeps_file(reg):
    a = write_lora(reg.loras / "a.safetensors")
    b = write_lora(reg.loras / "b.safetensors", seed=3)
    await reg.stub.CreateModel(create_request("a.safetensors", LORA))
    await reg.stub.CreateModel(create_request("b.safetensors", LORA))
    gone = await reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="a.safetensors"))
    assert gone.model.filename == "a.safetensors" and not a.exists()
    await reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="b.safetensors", keep_file=True))
    assert b.exists()
    assert json.loads(reg.index.read_text())["models"] == {}
    await _fails(reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="a.safetensors")),
                 grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")


async def test_deleting_the_active_checkpoint_is_refused(reg):
    path = write_checkpoint(reg.checkpoints / "base.safetensors")
    await reg.stub.CreateModel(create_request("base.safetensors", CHECKPOINT))
    await reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint="base.safetensors"))
    await _fails(reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="base.safetensors")),
                 grpc.StatusCode.FAILED_PRECONDITION, "ACTIVE_CHECKPOINT")
    assert path.exists()
    await reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint="illustrious-xl"))
    await reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="base.safetensors"))
    assert not path.exists()


async def test_a_model_being_deleted_is_neither_activated_nor_edited_meanwhile(reg, monkeypatch):
    import asyncio
    import threading

    from metadata_svc import registry as registry_module

    removing, release = threading.Event(), threading.Event()
    unlink = registry_module._unlink_durably

    def held_unlink(path):  # holds the file removal open so the calls below land inside it
        removing.set()
        release.wait(10)
        unlink(path)

    monkeypatch.setattr(registry_module, "_unlink_durably", held_unlink)
    path = write_checkpoint(reg.checkpoints / "base.safetensors")
    await reg.stub.CreateModel(create_request("base.safetensors", CHECKPOINT))
    deleting = asyncio.ensure_future(reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="base.safetensors")))
    await asyncio.to_thread(removing.wait, 10)
    try:
        await _fails(reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(
            checkpoint="base.safetensors")), grpc.StatusCode.ABORTED, "MODEL_BUSY")
        await _fails(reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
            model=model_pb2.Model(filename="base.safetensors", display_name="renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]))), grpc.StatusCode.ABORTED, "MODEL_BUSY")
        await _fails(reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="base.safetensors")),
                     grpc.StatusCode.ABORTED, "MODEL_BUSY")
    finally:
        release.set()
    await deleting
    assert not path.exists()
    stored = json.loads(reg.index.read_text())
    assert stored["models"] == {} and stored["active_checkpoint"] == "illustrious-xl"


def _block_index_writes(reg):
    """Make the rename over the index fail: a non-empty directory stands where the file was."""
    reg.index.unlink()
    reg.index.mkdir()
    (reg.index / "blocker").write_text("x")

    def unblock():
        (reg.index / "blocker").unlink()
        reg.index.rmdir()

    return unblock


async def test_changes_whose_index_write_fails_are_undone(reg):
    write_lora(reg.loras / "a.safetensors")
    write_checkpoint(reg.checkpoints / "base.safetensors")
    await reg.stub.CreateModel(create_request("a.safetensors", LORA, display_name="Before"))
    await reg.stub.CreateModel(create_request("base.safetensors", CHECKPOINT))
    unblock = _block_index_writes(reg)
    await _fails(reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors", display_name="After"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]))), grpc.StatusCode.UNAVAILABLE,
        "INDEX_WRITE_FAILED")
    got = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert got.model.display_name == "Before"
    await _fails(reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint="base.safetensors")),
                 grpc.StatusCode.UNAVAILABLE, "INDEX_WRITE_FAILED")
    active = await reg.stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest())
    assert active.checkpoint == "illustrious-xl"
    await _fails(reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="a.safetensors")),
                 grpc.StatusCode.UNAVAILABLE, "INDEX_WRITE_FAILED")
    # The file went first; the entry stays (file_present false) so that a retry finishes the delete.
    got = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert got.model.file_present is False
    unblock()
    await reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="a.safetensors"))
    stored = json.loads(reg.index.read_text())
    assert list(stored["models"]) == ["base.safetensors"] and stored["active_checkpoint"] == "illustrious-xl"
    assert stored["models"]["base.safetensors"]["display_name"] == "base"
