"""Get/SetActiveCheckpoint: the default on the models volume, installed checkpoints, and refusals."""

from __future__ import annotations

import json

import grpc
import pytest
from registry_helpers import CHECKPOINT, LORA, create_request, reason, write_checkpoint, write_lora

from modelmanager.v1 import registry_pb2


async def test_default_is_illustrious_on_the_models_volume(reg):
    resp = await reg.stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest())
    expected = reg.models.absolute() / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    assert (resp.checkpoint, resp.path, resp.file_present, resp.HasField("model")) == (
        "illustrious-xl", str(expected), False, False)
    write_checkpoint(expected)
    assert (await reg.stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest())).file_present


async def test_set_an_installed_checkpoint_and_it_persists(start_registry):
    reg = await start_registry()
    path = write_checkpoint(reg.checkpoints / "base.safetensors")
    await reg.stub.CreateModel(create_request("base.safetensors", CHECKPOINT))
    resp = await reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint="base.safetensors"))
    assert (resp.checkpoint, resp.path, resp.file_present, resp.model.filename) == (
        "base.safetensors", str(path.absolute()), True, "base.safetensors")
    assert json.loads(reg.index.read_text())["active_checkpoint"] == "base.safetensors"
    await reg.server.stop(0)
    again = await start_registry()
    got = await again.stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest())
    assert got.checkpoint == "base.safetensors" and got.model.filename == "base.safetensors"


async def test_set_refusals(reg):
    write_lora(reg.loras / "a.safetensors")
    await reg.stub.CreateModel(create_request("a.safetensors", LORA))
    ckpt = write_checkpoint(reg.checkpoints / "gone.safetensors")
    await reg.stub.CreateModel(create_request("gone.safetensors", CHECKPOINT))
    ckpt.unlink()
    for name, code, expected in [
        ("nope.safetensors", grpc.StatusCode.NOT_FOUND, "CHECKPOINT_NOT_FOUND"),
        ("a.safetensors", grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_CHECKPOINT"),
        ("gone.safetensors", grpc.StatusCode.FAILED_PRECONDITION, "FILE_MISSING"),
        ("../x.safetensors", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILENAME"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=name))
        assert (caught.value.code(), reason(caught.value)) == (code, expected)
    assert (await reg.stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest())).checkpoint == "illustrious-xl"
