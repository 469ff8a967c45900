"""The two entry points as real processes: `python -m civitai_svc` and `python -m devtools.fake_civitai`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import grpc
import httpx
from civitai_helpers import eventually
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.fake_civitai import FakeCivitai, make_safetensors
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc

SECRET = "process-test-token-9c2e71"


async def _start(*args: str, env: dict[str, str] | None = None) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
        assert line, "the process exited before it was ready"
        match = re.search(r"(?:listening on|fake CivitAI on) (\S+)", line)
        if match:
            return proc, match.group(1)


async def test_python_m_civitai_svc_serves_health_and_stops_on_sigterm(tmp_path):
    proc, address = await _start(
        "-m", "civitai_svc", "--listen", "127.0.0.1:0", "--registry", "127.0.0.1:1",
        "--user-models-dir", str(tmp_path), "--base-url", "http://127.0.0.1:1",
        env={"CIVITAI_TOKEN": SECRET, "MODELMGR_LOG_LEVEL": "DEBUG"},
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="modelmanager.v1.CivitaiService"), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0
    assert SECRET not in stderr.decode()


async def test_python_m_fake_civitai_serves_the_demo_fixtures():
    proc, base_url = await _start("-m", "devtools.fake_civitai", "--port", "0")
    try:
        async with httpx.AsyncClient(base_url=base_url) as client:
            model = (await client.get("/api/v1/models/1234567")).json()
            assert model["type"] == "LORA" and model["modelVersions"][0]["files"][0]["hashes"]["SHA256"]
            search = (await client.get("/api/v1/models", params={"query": "dreamforge"})).json()
            assert [m["name"] for m in search["items"]] == ["DreamForge XL"]
            download = await client.get("/api/download/models/2345678")
            assert download.status_code == 307
            # Browsers are sent to the login page when a token is required (not here: no token set).
            file = await client.get(download.headers["location"])
            assert file.status_code == 200 and len(file.content) > 100_000
            refused = await client.get(download.headers["location"], headers={"Authorization": "Bearer x"})
            assert refused.status_code in (400, 403)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0


async def test_a_download_survives_sigkill_of_the_service(volumes):
    """The journal is durable: a service killed mid-transfer resumes the job when it starts again; only
    the bytes it held in memory (not yet written to the .part file) are fetched again."""
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings

    user_models, models = volumes
    registry = await create_registry(
        RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models))
    await registry.start()
    block = 16 * 1024 * 1024  # the downloader's block: two are written, the rest is still in memory
    stop_at = 2 * block + 5 * 1024 * 1024
    try:
        async with FakeCivitai(token=SECRET) as fake:
            lora = fake.add_lora(data=make_safetensors("lora", 3 * block, seed=60))
            fake.stall(lora.file_id, stop_at)
            args = ("-m", "civitai_svc", "--listen", "127.0.0.1:0", "--registry", registry.address,
                    "--user-models-dir", str(user_models), "--base-url", fake.base_url)
            env = {"CIVITAI_TOKEN": SECRET, "MODELMGR_LOG_LEVEL": "WARNING"}
            proc, address = await _start(*args, env=env)
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = civitai_pb2_grpc.CivitaiServiceStub(channel)
                    started = await stub.StartDownload(civitai_pb2.StartDownloadRequest(reference=lora.url), timeout=30)
                    job_id = started.job.id
                    async for reply in stub.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=job_id), timeout=120):
                        if reply.job.bytes_done == stop_at:
                            break
                entry = user_models / ".downloads" / f"{job_id}.json"
                part = user_models / "loras" / f"{reply.job.filename}.{job_id[:12]}.part"
                await eventually(lambda: part.exists() and part.stat().st_size >= 2 * block)
                await eventually(lambda: entry.exists() and json.loads(entry.read_text())["final"] != "")
            finally:
                proc.kill()
                await proc.communicate()
            kept = part.stat().st_size

            proc, address = await _start(*args, env=env)
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = civitai_pb2_grpc.CivitaiServiceStub(channel)
                    async for reply in stub.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=job_id), timeout=120):
                        job = reply.job
                assert job.state == civitai_pb2.DOWNLOAD_STATE_SUCCEEDED, job.error
                assert job.resume_count == 1 and job.model.sha256 == lora.sha256
                # Fetched twice: only what was in memory at the kill.
                assert fake.bytes_served(lora.file_id) == lora.size + (stop_at - kept)
                assert (user_models / "loras" / job.filename).stat().st_size == lora.size
                await eventually(lambda: not entry.exists())
            finally:
                proc.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
            assert proc.returncode == 0 and SECRET not in stderr.decode()
    finally:
        await registry.stop(0)
