"""`modelmgr duplicates` and `modelmgr du` as real processes against the real registry on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from devtools.model_files import write_safetensors
from modelmanager.v1 import registry_pb2, registry_pb2_grpc
from service_kit import insecure_channel

REPO = Path(__file__).resolve().parents[1]


@pytest_asyncio.fixture
async def registry(tmp_path: Path) -> AsyncIterator[str]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    loras, ckpts = user_models / "loras", user_models / "checkpoints"
    loras.mkdir(parents=True)
    ckpts.mkdir()
    models.mkdir()
    a = write_safetensors(loras / "ink.safetensors", "lora", 1 << 20, seed=1)
    shutil.copyfile(a, loras / "ink-copy.safetensors")
    os.link(a, loras / "ink-link.safetensors")
    write_safetensors(ckpts / "base.safetensors", "sdxl-checkpoint", 3 << 20, seed=2)
    server = metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models))
    server = await server
    await server.start()
    channel = insecure_channel(server.address)
    stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
    # The registry registers the files it finds at start and hashes them in the background.
    for _ in range(3000):  # a guard against hanging, not a timing assertion
        listed = (await stub.ListModels(registry_pb2.ListModelsRequest(page_size=10))).models
        if len(listed) == 4 and all(m.sha256 for m in listed):
            break
        await asyncio.sleep(0.01)
    try:
        yield server.address
    finally:
        await channel.close()
        await server.stop(0)


async def cli(address: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelmgr", "--registry", address, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)})
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_duplicates(registry: str) -> None:
    code, out = await cli(registry, "duplicates")
    assert code == 0, out
    lines = [line for line in out.splitlines() if ".safetensors" in line]
    assert len(lines) == 3 and not any("base.safetensors" in line for line in lines)
    file_of = {name: re.search(r"#\d+", line).group() for line in lines  # type: ignore[union-attr]
               for name in ("ink.safetensors", "ink-copy.safetensors", "ink-link.safetensors") if f" {name} " in line}
    assert file_of["ink.safetensors"] == file_of["ink-link.safetensors"] != file_of["ink-copy.safetensors"]
    assert "1 group(s) of duplicates, 3 entries; 1.0 MB would be freed" in out


async def test_du(registry: str) -> None:
    code, out = await cli(registry, "du", "--biggest", "2")
    assert code == 0, out
    assert "LoRA" in out and "Checkpoint" in out
    assert "2.0 MB" in out  # the LoRAs: ink and its link are one file, the copy another
    biggest = out[out.index("biggest files"):]
    assert biggest.index("base.safetensors") < biggest.index("ink")
    assert "4 model(s), 5.0 MB; volume:" in out and " free of " in out
    code, out = await cli(registry, "du", "--biggest", "0")
    assert code == 2 and "--biggest must be 1..1000" in out
