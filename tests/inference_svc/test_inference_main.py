"""`python -m inference_svc` starts without any checkpoint on disk; settings come from flags and env."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inference_svc.config import from_args
from modelmanager.v1 import inference_pb2, inference_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def test_flags_and_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELMGR_INFERENCE_MAX_QUEUE", "3")
    settings = from_args(["--listen", "127.0.0.1:1234", "--registry", "10.0.0.1:50051",
                          "--models-dir", str(tmp_path), "--device", "cpu"])
    assert (settings.listen, settings.registry, settings.device) == ("127.0.0.1:1234", "10.0.0.1:50051", "cpu")
    assert settings.models_dir == tmp_path and settings.max_queue == 3
    assert settings.default_checkpoint_path == tmp_path / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    defaults = from_args([])
    assert defaults.listen == "127.0.0.1:50053" and defaults.registry == "127.0.0.1:50051"


async def test_starts_with_no_checkpoint_and_serves(tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inference_svc", "--listen", "127.0.0.1:0", "--registry", "127.0.0.1:1",
        "--models-dir", str(tmp_path / "models"), "--user-models-dir", str(tmp_path / "user-models"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO, env={**os.environ, "MODELMGR_LOG_FORMAT": "json"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
        assert "listening on" in line, line
        address = line.rsplit(" ", 1)[-1].strip()
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            status = await inference_pb2_grpc.InferenceServiceStub(channel).GetStatus(inference_pb2.GetStatusRequest())
            assert status.device == "cpu" and not status.checkpoints
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
