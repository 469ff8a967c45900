"""`python -m metadata_svc` as a real process: SIGKILL in the middle of writes, SIGTERM, corrupt index."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from registry_helpers import LORA, write_lora

from metadata_svc.index_store import load_index
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import insecure_channel

REPO = Path(__file__).resolve().parents[2]


async def _spawn(user_models: Path, models: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadata_svc", "--listen", "127.0.0.1:0",
        "--user-models-dir", str(user_models), "--models-dir", str(models), "--log-level", "WARNING",
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    if "listening on" not in line:
        err = await proc.stderr.read() if proc.stderr else b""
        raise AssertionError(f"registry did not start: {line!r} {err.decode()[-2000:]}")
    return proc, line.rsplit(" ", 1)[-1].strip()


async def test_sigkill_mid_stream_keeps_every_acknowledged_write(volumes):
    user_models, models = volumes
    names = [f"k{i:03d}.safetensors" for i in range(300)]
    template = write_lora(user_models / "loras" / names[0]).read_bytes()
    for name in names[1:]:
        (user_models / "loras" / name).write_bytes(template)
    # Registered at start-up by the rescan (source local); the writes below update them.
    proc, address = await _spawn(user_models, models)
    acked: dict[str, str] = {}
    enough = asyncio.Event()
    queue = list(names)

    async def writer(stub) -> None:
        while queue:
            name = queue.pop()
            label = f"acked {name}"
            try:
                await stub.UpdateModel(registry_pb2.UpdateModelRequest(
                    model=model_pb2.Model(filename=name, display_name=label)), timeout=10)
            except grpc.aio.AioRpcError:
                return  # the server is gone
            acked[name] = label
            if len(acked) >= 60:
                enough.set()

    try:
        async with insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            writers = [asyncio.create_task(writer(stub)) for _ in range(8)]
            await asyncio.wait_for(enough.wait(), 60)
            proc.send_signal(signal.SIGKILL)  # while 8 writers have calls in flight
            await proc.wait()
            await asyncio.gather(*writers)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) < len(names)  # it really died mid-stream
    state = load_index(user_models / ".metadata.json")
    assert state is not None
    for name, label in acked.items():
        assert state.models[name].display_name == label
    # A restart loads the same index, cleans leftovers, and serves it.
    proc, address = await _spawn(user_models, models)
    try:
        async with insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            for name, label in list(acked.items())[:20]:
                got = await stub.GetModel(registry_pb2.GetModelRequest(filename=name), timeout=10)
                assert got.model.display_name == label
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert not list(user_models.glob(".metadata.json.*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_lets_the_call_in_flight_finish_then_stops(volumes, sig):
    user_models, models = volumes
    write_lora(user_models / "loras" / "a.safetensors")
    data = write_lora(user_models.parent / "src" / "b.safetensors", seed=2).read_bytes()
    half = len(data) // 2
    signalled = asyncio.Event()

    async def upload():
        yield registry_pb2.UploadModelRequest(header=registry_pb2.UploadModelHeader(
            filename="b.safetensors", type=LORA, total_size_bytes=len(data)))
        yield registry_pb2.UploadModelRequest(chunk=data[:half])
        await signalled.wait()  # the rest is sent while the registry drains
        yield registry_pb2.UploadModelRequest(chunk=data[half:])

    proc, address = await _spawn(user_models, models)
    try:
        async with insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            got = await stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"), timeout=10)
            assert got.model.type == LORA
            health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING
            call = asyncio.ensure_future(stub.UploadModel(upload(), timeout=30))
            for _ in range(3000):  # until the upload is under way on the server; not a timing assertion
                if list((user_models / "loras").glob(".upload-*.part")):
                    break
                await asyncio.sleep(0.01)
            proc.send_signal(sig)
            # The rest of the upload goes out only once the registry is draining.
            assert (await health.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            signalled.set()
            done = await call
            assert done.model.filename == "b.safetensors"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    state = load_index(user_models / ".metadata.json")
    assert state is not None and {"a.safetensors", "b.safetensors"} <= set(state.models)


async def test_corrupt_index_exits_with_a_message_naming_the_file(volumes):
    user_models, models = volumes
    index = user_models / ".metadata.json"
    index.write_text('{"version": 1, "models": ')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadata_svc", "--listen", "127.0.0.1:0",
        "--user-models-dir", str(user_models), "--models-dir", str(models),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "MODELMGR_LOG_LEVEL": "ERROR"},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert str(index) in err.decode()
    assert index.read_text() == '{"version": 1, "models": '
