"""ReadModelFile through the wire: a real registry on 127.0.0.1 streams a file by sha256 from an offset,
only a file an entry has hashed and only from where that entry lies; a changed file is refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import grpc
import pytest
from import_helpers import run_import
from library_helpers import recorded_opens
from registry_helpers import reason

from devtools.model_files import write_safetensors
from metadata_svc.file_reads import CHUNK_BYTES
from modelmanager.v1 import model_pb2, registry_pb2

LORA = model_pb2.MODEL_TYPE_LORA


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def register(stub, path: Path) -> model_pb2.Model:
    reply = await stub.CreateModel(registry_pb2.CreateModelRequest(model=model_pb2.Model(filename=path.name, type=LORA)))
    return reply.model


async def read_all(stub, sha256: str, offset: int = 0) -> list[registry_pb2.ReadModelFileResponse]:
    return [m async for m in stub.ReadModelFile(registry_pb2.ReadModelFileRequest(sha256=sha256, offset=offset))]


async def fails(sha256: str, stub, code: grpc.StatusCode, expected: str, offset: int = 0) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all(stub, sha256, offset)
    assert caught.value.code() == code, caught.value.details()
    assert reason(caught.value) == expected, caught.value.details()
    return caught.value


@pytest.fixture
def libs(tmp_path: Path) -> Path:
    folder = tmp_path / "libraries"
    folder.mkdir()
    return folder


@pytest.fixture
async def lib_reg(start_registry, libs: Path):
    return await start_registry(library_allow=[str(libs)], civitai="127.0.0.1:9")


async def test_streams_a_file_in_chunks_from_an_offset(reg):
    path = write_safetensors(reg.loras / "big.safetensors", "lora", payload_bytes=3 * CHUNK_BYTES + 12345, seed=1)
    data = path.read_bytes()
    model = await register(reg.stub, path)
    assert model.sha256 == sha(path)

    whole = await read_all(reg.stub, model.sha256)
    assert b"".join(m.chunk for m in whole) == data
    assert all(len(m.chunk) <= CHUNK_BYTES for m in whole) and len(whole) == 4
    assert [m.offset for m in whole] == [i * CHUNK_BYTES for i in range(4)]
    assert {m.total_size for m in whole} == {len(data)}

    # From an offset (a resumed download), any case of hex digits.
    offset = CHUNK_BYTES + 7
    tail = await read_all(reg.stub, model.sha256.upper(), offset)
    assert tail[0].offset == offset and b"".join(m.chunk for m in tail) == data[offset:]
    # At the end: one message, no bytes, the size.
    end = await read_all(reg.stub, model.sha256, len(data))
    assert [(m.chunk, m.offset, m.total_size) for m in end] == [(b"", len(data), len(data))]
    await fails(model.sha256, reg.stub, grpc.StatusCode.OUT_OF_RANGE, "INVALID_OFFSET", len(data) + 1)
    await fails(model.sha256, reg.stub, grpc.StatusCode.OUT_OF_RANGE, "INVALID_OFFSET", -1)


async def test_bad_unknown_and_absent_sha256(reg):
    for bad in ("", "xyz", "a" * 63, "g" * 64, "../" + "a" * 61):
        await fails(bad, reg.stub, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SHA256")
    await fails("ab" * 32, reg.stub, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")
    path = write_safetensors(reg.loras / "gone.safetensors", "lora", payload_bytes=4096, seed=2)
    model = await register(reg.stub, path)
    path.unlink()
    await fails(model.sha256, reg.stub, grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")


async def test_only_an_entry_location_is_read(lib_reg, libs: Path, tmp_path: Path):
    # A library root's file is served from the root.
    root = libs / "lib"
    lora = write_safetensors(root / "Lora" / "a.safetensors", "lora", payload_bytes=8192, seed=3)
    await run_import(lib_reg.stub, path=str(root), no_identify=True)
    got = await lib_reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert got.model.sha256 == sha(lora)
    assert b"".join(m.chunk for m in await read_all(lib_reg.stub, got.model.sha256)) == lora.read_bytes()

    # The same bytes behind a link that leads out of the root: absent, and the target never opened.
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(lora.read_bytes())
    lora.unlink()
    os.symlink(secret, lora)
    with recorded_opens() as opened:
        await fails(got.model.sha256, lib_reg.stub, grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")
    assert str(secret) not in opened

    # A volume file swapped for a link out of the volume, likewise.
    vol = write_safetensors(lib_reg.loras / "v.safetensors", "lora", payload_bytes=4096, seed=4)
    model = await register(lib_reg.stub, vol)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(vol.read_bytes())
    vol.unlink()
    os.symlink(outside, vol)
    with recorded_opens() as opened:
        await fails(model.sha256, lib_reg.stub, grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")
    assert str(outside) not in opened


async def test_a_changed_file_is_refused(lib_reg, libs: Path):
    # A volume entry: its size is what it was hashed at.
    vol = write_safetensors(lib_reg.loras / "v.safetensors", "lora", payload_bytes=4096, seed=5)
    model = await register(lib_reg.stub, vol)
    with vol.open("ab") as out:
        out.write(b"more")
    await fails(model.sha256, lib_reg.stub, grpc.StatusCode.FAILED_PRECONDITION, "FILE_CHANGED")

    # A library file keeps its identity: the same size rewritten (another mtime) is refused too.
    root = libs / "lib"
    lora = write_safetensors(root / "Lora" / "a.safetensors", "lora", payload_bytes=8192, seed=6)
    await run_import(lib_reg.stub, path=str(root), no_identify=True)
    got = await lib_reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    st = lora.stat()
    os.utime(lora, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    await fails(got.model.sha256, lib_reg.stub, grpc.StatusCode.FAILED_PRECONDITION, "FILE_CHANGED")
    # Imported again: hashed again, served again.
    await run_import(lib_reg.stub, root_id=got.model.root_id, no_identify=True)
    assert b"".join(m.chunk for m in await read_all(lib_reg.stub, got.model.sha256)) == lora.read_bytes()


async def test_a_file_changed_mid_stream_ends_the_stream(reg):
    # Big enough that flow control holds the registry back long before the end.
    path = write_safetensors(reg.loras / "big.safetensors", "lora", payload_bytes=48 * CHUNK_BYTES, seed=7)
    model = await register(reg.stub, path)
    call = reg.stub.ReadModelFile(registry_pb2.ReadModelFileRequest(sha256=model.sha256))
    received = 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            if received == 0:
                with path.open("ab") as out:
                    out.write(b"appended")
            received += len(message.chunk)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(caught.value) == "FILE_CHANGED"
    assert received < path.stat().st_size
