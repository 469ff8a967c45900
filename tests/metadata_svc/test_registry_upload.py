"""UploadModel (client streaming): success, limits, hashes, bad headers, and cancellation mid-stream."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import grpc
import pytest
from registry_helpers import (
    CHECKPOINT,
    LORA,
    create_request,
    huge_header_bytes,
    reason,
    write_checkpoint,
    write_lora,
)

from metadata_svc.uploads import receive_upload
from modelmanager.v1 import registry_pb2


def _header(filename: str, kind: int = LORA, **fields) -> registry_pb2.UploadModelRequest:
    return registry_pb2.UploadModelRequest(header=registry_pb2.UploadModelHeader(filename=filename, type=kind, **fields))


def _chunks(data: bytes, size: int = 1000) -> list[registry_pb2.UploadModelRequest]:
    return [registry_pb2.UploadModelRequest(chunk=data[i:i + size]) for i in range(0, len(data), size)]


async def _stream(messages):
    for message in messages:
        yield message


def _leftovers(reg) -> list[Path]:
    return [p for folder in (reg.loras, reg.checkpoints) for p in folder.iterdir()]


async def _upload_fails(reg, messages, code, expected) -> grpc.aio.AioRpcError:
    """`messages`: a list, or an async iterator (a client that stalls); the deadline only guards a hang."""
    requests = messages if hasattr(messages, "__aiter__") else _stream(messages)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reg.stub.UploadModel(requests, timeout=120)
    assert caught.value.code() == code, caught.value.details()
    assert reason(caught.value) == expected, caught.value.details()
    assert _leftovers(reg) == [] or all(not p.name.startswith(".upload-") for p in _leftovers(reg))
    return caught.value


@pytest.fixture
def lora_bytes(tmp_path) -> bytes:
    return write_lora(tmp_path / "src" / "x.safetensors").read_bytes()


async def test_upload_registers_the_file(reg, lora_bytes):
    digest = hashlib.sha256(lora_bytes).hexdigest()
    resp = await reg.stub.UploadModel(_stream([
        _header("style.safetensors", display_name="Style", trigger_words=["inkwash"], recommended_weight=0.7,
                tags=["ink"], expected_sha256=digest, total_size_bytes=len(lora_bytes)),
        *_chunks(lora_bytes, 333),
    ]))
    m = resp.model
    assert (m.filename, m.display_name, list(m.trigger_words), m.recommended_weight, m.sha256) == (
        "style.safetensors", "Style", ["inkwash"], 0.7, digest)
    assert m.file_size_bytes == len(lora_bytes) and m.inspection.detected_type == "lora"
    assert (reg.loras / "style.safetensors").read_bytes() == lora_bytes
    assert [p.name for p in _leftovers(reg)] == ["style.safetensors"]
    got = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="style.safetensors"))
    assert got.model.source == resp.model.source == 3  # MODEL_SOURCE_UPLOAD


async def test_upload_checkpoint(reg, tmp_path):
    data = write_checkpoint(tmp_path / "c.safetensors").read_bytes()
    resp = await reg.stub.UploadModel(_stream([_header("c.safetensors", CHECKPOINT), *_chunks(data, 4096)]))
    assert resp.model.path == str((reg.checkpoints / "c.safetensors").absolute())


async def test_size_limit_enforced_while_streaming(start_registry, lora_bytes):
    reg = await start_registry(max_upload_bytes=len(lora_bytes) - 1)
    await _upload_fails(reg, [_header("a.safetensors"), *_chunks(lora_bytes, 100)],
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "UPLOAD_TOO_LARGE")
    # Announced sizes over the limit are refused before any byte is written.
    await _upload_fails(reg, [_header("a.safetensors", total_size_bytes=len(lora_bytes))],
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "UPLOAD_TOO_LARGE")
    assert _leftovers(reg) == []


async def test_hash_and_size_mismatch(reg, lora_bytes):
    await _upload_fails(reg, [_header("a.safetensors", expected_sha256="ab" * 32), *_chunks(lora_bytes)],
                        grpc.StatusCode.FAILED_PRECONDITION, "SHA256_MISMATCH")
    await _upload_fails(reg, [_header("a.safetensors", total_size_bytes=len(lora_bytes) + 10), *_chunks(lora_bytes)],
                        grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH")
    await _upload_fails(reg, [_header("a.safetensors", total_size_bytes=10), *_chunks(lora_bytes)],
                        grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH")
    assert _leftovers(reg) == []
    assert (await reg.stub.ListModels(registry_pb2.ListModelsRequest())).total_size == 0


async def test_bad_streams(reg, lora_bytes, tmp_path):
    await _upload_fails(reg, [], grpc.StatusCode.INVALID_ARGUMENT, "MISSING_HEADER")
    await _upload_fails(reg, _chunks(lora_bytes), grpc.StatusCode.INVALID_ARGUMENT, "MISSING_HEADER")
    await _upload_fails(reg, [_header("a.safetensors"), *_chunks(lora_bytes[:100]), _header("a.safetensors")],
                        grpc.StatusCode.INVALID_ARGUMENT, "DUPLICATE_HEADER")
    await _upload_fails(reg, [_header("../a.safetensors"), *_chunks(lora_bytes)],
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILENAME")
    await _upload_fails(reg, [_header("a.exe"), *_chunks(lora_bytes)],
                        grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED_EXTENSION")
    await _upload_fails(reg, [_header("a.ckpt", CHECKPOINT), *_chunks(b"\x80\x04pickle")],
                        grpc.StatusCode.INVALID_ARGUMENT, "PICKLE_NOT_ALLOWED")
    await _upload_fails(reg, [_header("a.safetensors", 0), *_chunks(lora_bytes)],
                        grpc.StatusCode.INVALID_ARGUMENT, "MISSING_TYPE")
    await _upload_fails(reg, [_header("a.safetensors"), *_chunks(huge_header_bytes())],
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SAFETENSORS")
    await _upload_fails(reg, [_header("a.safetensors"), *_chunks(b"\x08\x00\x00\x00\x00\x00\x00\x00notjson!")],
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SAFETENSORS")
    ckpt = write_checkpoint(tmp_path / "c.safetensors").read_bytes()
    await _upload_fails(reg, [_header("c.safetensors", LORA), *_chunks(ckpt, 4096)],
                        grpc.StatusCode.INVALID_ARGUMENT, "TYPE_MISMATCH")
    assert _leftovers(reg) == []


async def test_existing_names_are_never_overwritten(reg, lora_bytes):
    original = write_lora(reg.loras / "taken.safetensors", seed=9).read_bytes()
    await _upload_fails(reg, [_header("taken.safetensors"), *_chunks(lora_bytes)],
                        grpc.StatusCode.ALREADY_EXISTS, "MODEL_ALREADY_EXISTS")
    await reg.stub.CreateModel(create_request("taken.safetensors", LORA))
    await _upload_fails(reg, [_header("taken.safetensors"), *_chunks(lora_bytes)],
                        grpc.StatusCode.ALREADY_EXISTS, "MODEL_ALREADY_EXISTS")
    assert (reg.loras / "taken.safetensors").read_bytes() == original


async def test_cancelled_upload_leaves_no_file_and_no_entry(reg, lora_bytes):
    sent_some = asyncio.Event()
    never = asyncio.Event()

    async def requests():
        yield _header("half.safetensors")
        yield registry_pb2.UploadModelRequest(chunk=lora_bytes[:200])
        sent_some.set()
        await never.wait()  # the client stalls, then gives up

    call = reg.stub.UploadModel(requests())
    await sent_some.wait()
    # Wait until the server has the .part file, so the cancel lands mid-stream.
    for _ in range(3000):  # a generous limit for a loaded machine; not a timing assertion
        if any(p.name.startswith(".upload-") for p in reg.loras.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert any(p.name.startswith(".upload-") for p in reg.loras.iterdir())
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(3000):  # a generous limit for a loaded machine; not a timing assertion
        if not list(reg.loras.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert list(reg.loras.iterdir()) == []
    assert (await reg.stub.ListModels(registry_pb2.ListModelsRequest())).total_size == 0
    # The name is free again.
    ok = await reg.stub.UploadModel(_stream([_header("half.safetensors"), *_chunks(lora_bytes)]))
    assert ok.model.file_size_bytes == len(lora_bytes)


async def test_two_uploads_of_one_name_at_once(reg, lora_bytes):
    gate = asyncio.Event()

    async def slow():
        yield _header("same.safetensors")
        yield registry_pb2.UploadModelRequest(chunk=lora_bytes[:100])
        await gate.wait()
        yield registry_pb2.UploadModelRequest(chunk=lora_bytes[100:])

    first = reg.stub.UploadModel(slow())
    for _ in range(3000):  # a generous limit for a loaded machine; not a timing assertion
        if any(p.name.startswith(".upload-") for p in reg.loras.iterdir()):
            break
        await asyncio.sleep(0.01)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reg.stub.UploadModel(_stream([_header("same.safetensors"), *_chunks(lora_bytes)]))
    assert reason(caught.value) == "UPLOAD_IN_PROGRESS"
    gate.set()
    assert (await first).model.filename == "same.safetensors"


async def test_upload_whose_call_was_cancelled_at_the_end_commits_nothing(reg, lora_bytes):
    # grpc.aio ends a cancelled client stream like a clean half-close and cancels the handler only
    # a moment later; an upload must not be committed in that gap.
    registry = reg.server.registry
    with pytest.raises(asyncio.CancelledError):
        await receive_upload(registry, _stream([_header("late.safetensors"), *_chunks(lora_bytes)]),
                             cancelled=lambda: True)
    assert list(reg.loras.iterdir()) == []
    assert (await reg.stub.ListModels(registry_pb2.ListModelsRequest())).total_size == 0
    entry = await receive_upload(registry, _stream([_header("late.safetensors"), *_chunks(lora_bytes)]))
    assert entry.filename == "late.safetensors"


async def test_an_out_of_range_weight_is_refused_before_the_bytes(reg, lora_bytes):
    held = asyncio.Event()  # the chunks wait behind it: the refusal must come from the header alone

    async def messages():
        yield _header("w.safetensors", recommended_weight=50.0)
        await held.wait()
        for message in _chunks(lora_bytes):
            yield message

    # Released late only so that a registry that waits for the bytes fails the assertion below, not hangs.
    fallback = asyncio.get_running_loop().call_later(60, held.set)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reg.stub.UploadModel(messages())
    fallback.cancel()
    assert not held.is_set(), "the weight was checked only after the file's bytes arrived"
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(caught.value) == "INVALID_WEIGHT"
    assert _leftovers(reg) == []


async def test_a_stalled_upload_is_abandoned_and_frees_its_name(start_registry, lora_bytes):
    """A client that sends a header and a chunk, then nothing: the registry gives up by itself."""
    reg = await start_registry(upload_idle_timeout=0.3)
    release = asyncio.Event()

    async def stalling():
        yield _header("held.safetensors")
        yield _chunks(lora_bytes)[0]
        await release.wait()  # never set while the call runs: the client stays connected, silent

    try:
        # The client's own deadline is only a guard against hanging: the registry must answer first.
        await _upload_fails(reg, stalling(), grpc.StatusCode.DEADLINE_EXCEEDED, "UPLOAD_IDLE_TIMEOUT")
    finally:
        release.set()
    assert not any(p.name.startswith(".upload-") for p in _leftovers(reg))
    resp = await reg.stub.UploadModel(_stream([_header("held.safetensors"), *_chunks(lora_bytes)]))
    assert resp.model.filename == "held.safetensors"  # the name was freed

