"""Downloads survive a restart of the service: the journal, the kept `.part` file, the same job id.

Through the wire: a real CivitAI service stopped mid-transfer (the fake stalls the body at a known
byte), then a new one on the same volume, registry and fake.
"""

from __future__ import annotations

import io
import json

import pytest
from civitai_helpers import TOKEN, eventually
from google.rpc import code_pb2
from test_downloads import job_error

from devtools.fake_civitai import make_safetensors
from modelmanager.v1 import civitai_pb2, model_pb2, registry_pb2
from service_kit import configure_logging
from service_kit.files import LockHeld

S = civitai_pb2
SIZE = 3 * 1024 * 1024
STOP_AT = 1_234_567  # not a block boundary


def journal(stack) -> list[str]:
    folder = stack.user_models / ".downloads"
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.exists() else []


async def stop_mid_transfer(stack, seed: int, *, stalls: int = 1, **start):  # type: ignore[no-untyped-def]
    """Start a download, let STOP_AT bytes arrive, stop the service as SIGTERM does. Returns (lora, job)."""
    data = make_safetensors("lora", SIZE, seed=seed)
    lora = stack.fake.add_lora(data=data)
    stack.fake.stall(lora.file_id, STOP_AT, times=stalls)
    started = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url, **start), timeout=10)
    async for reply in stack.civitai.WatchDownload(S.WatchDownloadRequest(job_id=started.job.id), timeout=60):
        if reply.job.bytes_done == STOP_AT:
            break
    await stack.server.stop(0)
    return lora, reply.job


def part_of(stack, job) -> str:  # type: ignore[no-untyped-def]
    return f"loras/{job.filename}.{job.id[:12]}.part"


async def test_a_restart_resumes_the_job_and_fetches_no_byte_twice(stack):
    lora, before = await stop_mid_transfer(stack, seed=50)
    assert stack.files() == [part_of(stack, before)]
    assert (stack.user_models / part_of(stack, before)).stat().st_size == STOP_AT
    assert journal(stack) == [f"{before.id}.json"] and await stack.models() == []
    entry = (stack.user_models / ".downloads" / f"{before.id}.json").read_text()
    assert TOKEN not in entry
    recorded = json.loads(entry)
    assert recorded["job"]["state"] == "DOWNLOAD_STATE_QUEUED" and int(recorded["job"]["bytesDone"]) == STOP_AT
    assert recorded["part"] == part_of(stack, before) and recorded["final"] == f"loras/{before.filename}"

    stack.fake.throttle(lora.file_id, 256 * 1024)  # so the resumed job still runs when it is started again
    again = await stack.restarted()
    # Starting the file again joins the resumed job, as it would any job of this run.
    rejoined = await again.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    assert rejoined.job.id == before.id
    listed = await again.civitai.ListDownloads(S.ListDownloadsRequest(), timeout=5)
    assert [j.id for j in listed.jobs] == [before.id]
    assert listed.jobs[0].create_time == before.create_time
    stack.fake.throttle(lora.file_id, 0)
    job = await again.wait(before.id)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.id == before.id and job.filename == before.filename
    assert job.bytes_done == job.total_bytes == lora.size
    assert job.resume_count == 1 and job.bytes_transferred == lora.size

    # The fake served each byte once: STOP_AT before the stop, the rest after it, with Range.
    assert stack.fake.bytes_served(lora.file_id) == lora.size
    assert [r.headers.get("range") for r in stack.fake.storage_requests()] == [None, f"bytes={STOP_AT}-"]
    assert again.files() == [f"loras/{job.filename}"]
    assert (again.user_models / "loras" / job.filename).read_bytes() == stack.fake._files[lora.file_id].content
    model = (await again.registry.GetModel(registry_pb2.GetModelRequest(filename=job.filename), timeout=5)).model
    assert model.sha256 == lora.sha256 and model.source == model_pb2.MODEL_SOURCE_CIVITAI
    await eventually(lambda: journal(again) == [])  # removed just after the job publishes SUCCEEDED


async def test_a_journal_whose_part_file_is_gone_starts_from_zero(stack):
    lora, before = await stop_mid_transfer(stack, seed=51)
    (stack.user_models / part_of(stack, before)).unlink()
    again = await stack.restarted()
    job = await again.wait(before.id)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.resume_count == 0 and job.bytes_transferred == STOP_AT + lora.size
    assert stack.fake.bytes_served(lora.file_id) == STOP_AT + lora.size
    assert [m.sha256 for m in await again.models()] == [lora.sha256]
    await eventually(lambda: journal(again) == [])


async def test_cancel_of_a_resumed_job_leaves_nothing(stack):
    _, before = await stop_mid_transfer(stack, seed=52, stalls=2)  # the resumed transfer stalls too
    again = await stack.restarted()
    async for reply in again.civitai.WatchDownload(S.WatchDownloadRequest(job_id=before.id), timeout=60):
        if reply.job.bytes_done == 2 * STOP_AT:
            break
    assert reply.job.state == S.DOWNLOAD_STATE_RUNNING and reply.job.resume_count == 1
    cancelled = await again.civitai.CancelDownload(S.CancelDownloadRequest(job_id=before.id), timeout=10)
    assert cancelled.job.state == S.DOWNLOAD_STATE_CANCELLED
    assert again.files() == [] and journal(again) == [] and await again.models() == []


async def test_a_resumed_job_whose_bytes_do_not_match_fails_with_data_loss(stack):
    lora, before = await stop_mid_transfer(stack, seed=53)
    part = stack.user_models / part_of(stack, before)
    damaged = bytearray(part.read_bytes())
    damaged[STOP_AT // 2] ^= 0xFF  # the kept bytes are hashed from disk on resume, so this is seen
    part.write_bytes(bytes(damaged))
    again = await stack.restarted()
    job = await again.wait(before.id)
    assert job.state == S.DOWNLOAD_STATE_FAILED
    code, reason, meta = job_error(job)
    assert (code, reason) == (code_pb2.DATA_LOSS, "SHA256_MISMATCH") and meta["expected_sha256"] == lora.sha256
    assert stack.fake.bytes_served(lora.file_id) == lora.size  # only the rest was fetched
    assert again.files() == [] and await again.models() == []
    await eventually(lambda: journal(again) == [])


async def test_a_resumed_job_uses_the_services_token_and_fails_clearly_without_one(stack_factory):
    stack = await stack_factory(token=None)
    _, before = await stop_mid_transfer(stack, seed=54, token=TOKEN)  # a per-request token
    again = await stack.restarted()
    job = await again.wait(before.id)
    code, reason, _ = job_error(job)
    assert (code, reason) == (code_pb2.UNAUTHENTICATED, "CIVITAI_UNAUTHENTICATED")
    assert "CIVITAI_TOKEN" in job.error.message and TOKEN not in job.error.message
    assert again.files() == [] and await again.models() == []
    await eventually(lambda: journal(again) == [])


async def test_start_up_sets_bad_entries_aside_and_removes_parts_no_job_owns(stack):
    folder = stack.user_models / ".downloads"
    folder.mkdir(exist_ok=True)  # the running service holds its lock file there
    bad = "0123456789abcdef0123456789abcdef.json"
    (folder / bad).write_text("{not json")
    wrong_place = "fedcba9876543210fedcba9876543210.json"  # a valid entry naming a file outside loras/
    (folder / wrong_place).write_text(json.dumps({
        "version": 1, "job": {"id": wrong_place[:32]}, "info": {"modelType": "MODEL_TYPE_LORA"},
        "file": {"id": 1}, "final": "../escape.safetensors", "part": "../escape.safetensors.fedcba987654.part"}))
    loras = stack.user_models / "loras"
    loras.mkdir(exist_ok=True)
    (loras / "stray.safetensors.0123456789ab.part").write_bytes(b"x" * 10)
    (loras / "notes.part").write_bytes(b"not ours")
    await stack.server.stop(0)

    buffer = io.StringIO()
    configure_logging("civitai-test", level="INFO", json=True, stream=buffer)
    try:
        again = await stack.restarted()
    finally:
        configure_logging("tests", level="WARNING", json=True)
    assert journal(again) == sorted([f"{bad}.corrupt", f"{wrong_place}.corrupt"])
    warnings = [json.loads(line) for line in buffer.getvalue().splitlines()]
    named = {w["file"] for w in warnings if w["event"] == "download_journal.corrupt"}
    assert named == {str(folder / bad), str(folder / wrong_place)}
    assert again.files() == ["loras/notes.part"]
    assert (await again.civitai.ListDownloads(S.ListDownloadsRequest(), timeout=5)).jobs == []
    lora = stack.fake.add_lora()
    job = await again.download(lora.url)  # the service works as usual
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error


async def test_one_civitai_service_per_volume(stack):
    # A second service would delete the first one's part files at start-up as files no job owns.
    from civitai_svc.app import create_server

    with pytest.raises(LockHeld) as caught:
        await create_server(stack.settings)
    assert str(stack.user_models) in str(caught.value)
    await stack.server.stop(0)  # releases the volume
    again = await stack.restarted()
    assert (await again.civitai.ListDownloads(S.ListDownloadsRequest(), timeout=5)).jobs == []
