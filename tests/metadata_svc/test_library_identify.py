"""Identification end to end: the registry's import asks the real CivitAI service (IdentifyFiles), which asks the
fake CivitAI over HTTP (by-hash bulk, preview images)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest_asyncio
from import_helpers import models_of, run_import

from civitai_svc.app import create_server as create_civitai
from civitai_svc.config import CivitaiSettings
from devtools.fake_civitai import FakeCivitai
from devtools.model_files import write_safetensors
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit import insecure_channel
from service_kit.peer import Peer

TOKEN = "civitai-test-token-5f1e9a7c"


@pytest_asyncio.fixture
async def stack(start_registry, volumes, tmp_path: Path):
    libs = tmp_path / "libraries"
    libs.mkdir()
    reg = await start_registry(library_allow=[str(libs)])
    fake = FakeCivitai(token=TOKEN)
    civitai = await create_civitai(CivitaiSettings(
        listen="127.0.0.1:0", registry=reg.server.address, user_models_dir=volumes[0], base_url=fake.base_url,
        token=TOKEN, retry_attempts=2, retry_backoff_base=0.001, retry_after_max=0.02, disk_reserve_bytes=0))
    await civitai.start()
    # Both listen on port 0: the registry learns the CivitAI service's address once it is known.
    peer = Peer("civitai", insecure_channel(civitai.address), address=civitai.address)
    reg.server.registry.library.connect_civitai(peer)
    yield reg, fake, libs
    await peer.close()
    await civitai.stop(0)
    await asyncio.to_thread(fake.close)


async def test_import_identifies_through_the_civitai_service(stack):
    reg, fake, libs = stack
    root = libs / "lib"
    known = write_safetensors(root / "Lora" / "known.safetensors", "lora", payload_bytes=1024, seed=1)
    write_safetensors(root / "Lora" / "unknown.safetensors", "lora", payload_bytes=1024, seed=2)
    digest = hashlib.sha256(known.read_bytes()).hexdigest()
    fake.register_hash(digest, name="Fake Known", trained_words=["fkwn"], base_model="Illustrious",
                       version_name="v3")

    job = await run_import(reg.stub, path=str(root))
    assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED, job.error
    assert (job.identified, job.not_on_civitai, job.identify_failed) == (1, 1, 0), job.identify_note
    models = await models_of(reg.stub)
    k = models["known.safetensors"]
    assert k.display_name == "Fake Known" and list(k.trigger_words) == ["fkwn"] and k.civitai_version_name == "v3"
    assert k.civitai_model_id and k.civitai_version_id and k.base_model == "Illustrious"
    assert k.civitai_lookup.state == model_pb2.CIVITAI_LOOKUP_STATE_FOUND
    assert k.preview.source == "civitai" and k.preview.width > 0
    got = await reg.stub.GetPreview(registry_pb2.GetPreviewRequest(filename="known.safetensors"))
    assert got.image[:4] == b"RIFF"
    assert models["unknown.safetensors"].civitai_lookup.state == model_pb2.CIVITAI_LOOKUP_STATE_NOT_FOUND
