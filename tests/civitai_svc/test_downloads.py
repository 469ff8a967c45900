"""Downloads through the wire: fake CivitAI -> civitai_svc -> files on the volume -> a real registry."""

from __future__ import annotations

import asyncio
import io
import json

import grpc
import pytest
from civitai_helpers import TERMINAL, TOKEN, status_of
from google.rpc import code_pb2, error_details_pb2

from devtools.fake_civitai import make_safetensors
from modelmanager.v1 import civitai_pb2, model_pb2, registry_pb2
from service_kit import configure_logging

S = civitai_pb2


def job_error(job: S.DownloadJob) -> tuple[int, str, dict]:
    for detail in job.error.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return job.error.code, info.reason, dict(info.metadata)
    return job.error.code, "", {}


async def test_parse_info_download_registered(stack):
    lora = stack.fake.add_lora(name="Soft Watercolor Style", data=make_safetensors("lora", 300_000, seed=1),
                               trained_words=["wtrclr style", "watercolor"], filename="soft_watercolor_v1.safetensors")
    parsed = await stack.civitai.ParseReference(S.ParseReferenceRequest(reference=f"  {lora.url}  "), timeout=5)
    assert parsed.reference.kind == S.REFERENCE_KIND_VERSION
    assert (parsed.reference.model_id, parsed.reference.version_id) == (lora.model_id, lora.version_id)

    info = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(reference=lora.url), timeout=10)).info
    assert info.model_type == model_pb2.MODEL_TYPE_LORA and info.file.id == lora.file_id
    assert info.file.sha256 == lora.sha256 and info.installed_filename == ""

    seen: list[S.DownloadJob] = []
    started = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    assert started.job.state in (S.DOWNLOAD_STATE_QUEUED, S.DOWNLOAD_STATE_RUNNING)
    job = await stack.wait(started.job.id, seen)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.filename == "soft_watercolor_v1.safetensors"
    assert job.bytes_done == job.total_bytes == lora.size and job.resume_count == 0
    assert {s.state for s in seen} >= {S.DOWNLOAD_STATE_SUCCEEDED}

    assert stack.files() == ["loras/soft_watercolor_v1.safetensors"]  # no .part left
    assert (stack.user_models / "loras" / job.filename).read_bytes() == stack.fake._files[lora.file_id].content
    model = (await stack.registry.GetModel(registry_pb2.GetModelRequest(filename=job.filename), timeout=5)).model
    assert model.source == model_pb2.MODEL_SOURCE_CIVITAI and model.type == model_pb2.MODEL_TYPE_LORA
    assert (model.civitai_model_id, model.civitai_version_id) == (lora.model_id, lora.version_id)
    assert list(model.trigger_words) == ["wtrclr style", "watercolor"]
    assert model.base_model == "Illustrious" and list(model.tags) == ["style", "watercolor"]
    assert model.sha256 == lora.sha256 and model.file_size_bytes == lora.size
    assert model.recommended_weight == pytest.approx(0.7)
    assert model.civitai_url == lora.url and model.display_name == "Soft Watercolor Style"
    assert job.model.filename == model.filename

    again = await stack.civitai.GetModelInfo(S.GetModelInfoRequest(version_id=lora.version_id), timeout=10)
    assert again.info.installed_filename == job.filename


async def test_checkpoint_goes_to_checkpoints(stack):
    ckpt = stack.fake.add_checkpoint(data=make_safetensors("checkpoint", 200_000, seed=2))
    job = await stack.download(str(ckpt.model_id))
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.model_type == model_pb2.MODEL_TYPE_CHECKPOINT
    assert stack.files() == [f"checkpoints/{job.filename}"]


async def test_cut_connection_resumes_with_range(stack):
    data = make_safetensors("lora", 6 * 1024 * 1024, seed=3)
    lora = stack.fake.add_lora(data=data)
    stack.fake.drop_connection(lora.file_id, after_bytes=2 * 1024 * 1024 + 123, times=2)
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.resume_count == 2
    refetched = stack.fake.bytes_served(lora.file_id) - lora.size
    assert 0 <= refetched < 64 * 1024  # only what had not arrived before the cuts was sent again
    assert job.bytes_transferred - lora.size == refetched
    # A fresh signed URL was asked for after each cut (the old one had expired).
    assert len(stack.fake.download_requests()) == 3
    ranges = [r.headers.get("range") for r in stack.fake.storage_requests()]
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])
    assert (stack.user_models / "loras" / job.filename).read_bytes() == data


async def test_storage_ignoring_range_restarts_cleanly(stack):
    data = make_safetensors("lora", 3 * 1024 * 1024, seed=4)
    lora = stack.fake.add_lora(data=data)
    stack.fake.drop_connection(lora.file_id, after_bytes=1024 * 1024)
    original = stack.fake._storage.RequestHandlerClass.do_GET

    def no_range(handler):  # a storage host that ignores Range (answers 200 with everything)
        if "Range" in handler.headers:
            del handler.headers["Range"]
        return original(handler)

    stack.fake._storage.RequestHandlerClass = type("NoRange", (stack.fake._storage.RequestHandlerClass,), {"do_GET": no_range})
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert (stack.user_models / "loras" / job.filename).read_bytes() == data


async def test_bad_hash_leaves_no_file_and_no_entry(stack):
    lora = stack.fake.add_lora(data=make_safetensors("lora", 500_000, seed=5))
    stack.fake.corrupt(lora.file_id)
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_FAILED
    code, reason, meta = job_error(job)
    assert (code, reason) == (code_pb2.DATA_LOSS, "SHA256_MISMATCH")
    assert meta["expected_sha256"] == lora.sha256
    assert stack.files() == [] and await stack.models() == []


async def test_cancel_leaves_nothing(stack):
    lora = stack.fake.add_lora(data=make_safetensors("lora", 4 * 1024 * 1024, seed=6))
    stack.fake.throttle(lora.file_id, 1024 * 1024)
    started = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    async for reply in stack.civitai.WatchDownload(S.WatchDownloadRequest(job_id=started.job.id), timeout=30):
        if reply.job.bytes_per_second > 0:
            break
    # Progress while running: bytes, exact total, speed and an ETA.
    assert reply.job.state == S.DOWNLOAD_STATE_RUNNING and 0 < reply.job.bytes_done < lora.size
    assert reply.job.total_bytes == lora.size and reply.job.eta_seconds > 0
    assert any(name.endswith(".part") for name in stack.files())
    cancelled = await stack.civitai.CancelDownload(S.CancelDownloadRequest(job_id=started.job.id), timeout=10)
    assert cancelled.job.state == S.DOWNLOAD_STATE_CANCELLED
    assert stack.files() == [] and await stack.models() == []
    # Cancelling a finished job is a no-op that returns it.
    again = await stack.civitai.CancelDownload(S.CancelDownloadRequest(job_id=started.job.id), timeout=10)
    assert again.job.state == S.DOWNLOAD_STATE_CANCELLED


async def test_job_outlives_its_client_and_is_listed(stack):
    from service_kit import insecure_channel

    lora = stack.fake.add_lora(data=make_safetensors("lora", 1024 * 1024, seed=7))
    stack.fake.throttle(lora.file_id, 4 * 1024 * 1024)
    channel = insecure_channel(stack.server.address)
    from modelmanager.v1 import civitai_pb2_grpc

    started = await civitai_pb2_grpc.CivitaiServiceStub(channel).StartDownload(
        S.StartDownloadRequest(reference=lora.url), timeout=10)
    await channel.close()  # the client goes away; the job goes on
    listed = await stack.civitai.ListDownloads(S.ListDownloadsRequest(active_only=True), timeout=5)
    assert started.job.id in [j.id for j in listed.jobs]
    job = await stack.wait(started.job.id)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    got = await stack.civitai.GetDownload(S.GetDownloadRequest(job_id=job.id), timeout=5)
    assert got.job.state == S.DOWNLOAD_STATE_SUCCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.GetDownload(S.GetDownloadRequest(job_id="nope"), timeout=5)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.NOT_FOUND and info.reason == "JOB_NOT_FOUND"


async def test_concurrency_is_bounded(stack_factory):
    stack = await stack_factory(max_concurrent_downloads=1)
    a = stack.fake.add_lora(name="A", data=make_safetensors("lora", 1024 * 1024, seed=8))
    b = stack.fake.add_lora(name="B", data=make_safetensors("lora", 1024 * 1024, seed=9))
    stack.fake.throttle(a.file_id, 2 * 1024 * 1024)
    first = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=a.url), timeout=10)
    second = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=b.url), timeout=10)
    await asyncio.sleep(0.1)
    queued = await stack.civitai.GetDownload(S.GetDownloadRequest(job_id=second.job.id), timeout=5)
    assert queued.job.state == S.DOWNLOAD_STATE_QUEUED
    assert (await stack.wait(first.job.id)).state == S.DOWNLOAD_STATE_SUCCEEDED
    assert (await stack.wait(second.job.id)).state == S.DOWNLOAD_STATE_SUCCEEDED


@pytest.mark.parametrize(
    ("setup", "code", "reason"),
    [
        (lambda f, m: f.require_token("another-token-123"), code_pb2.UNAUTHENTICATED, "CIVITAI_UNAUTHENTICATED"),
        (lambda f, m: f.early_access(m.version_id, "2031-05-01T00:00:00.000Z"), code_pb2.FAILED_PRECONDITION, "EARLY_ACCESS"),
        (lambda f, m: f.forbid(m.version_id), code_pb2.PERMISSION_DENIED, "CIVITAI_FORBIDDEN"),
        (lambda f, m: f.fail("download", 404, times=5, body={"error": "File not found"}), code_pb2.NOT_FOUND,
         "CIVITAI_NOT_FOUND"),
        (lambda f, m: f.fail("download", 410, times=5, body={"error": "Model archived, not available for download"}),
         code_pb2.FAILED_PRECONDITION, "MODEL_ARCHIVED"),
        (lambda f, m: f.rate_limit("download", times=10, retry_after="1"), code_pb2.UNAVAILABLE, "CIVITAI_UNAVAILABLE"),
        (lambda f, m: f.unavailable("download", times=10), code_pb2.UNAVAILABLE, "CIVITAI_UNAVAILABLE"),
    ],
    ids=["401", "early-access-403", "403", "404", "410", "429", "503"],
)
async def test_download_errors_map_to_statuses(stack, setup, code, reason):
    lora = stack.fake.add_lora()
    setup(stack.fake, lora)
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_FAILED
    got_code, got_reason, meta = job_error(job)
    assert (got_code, got_reason) == (code, reason), job.error.message
    if reason == "EARLY_ACCESS":
        assert meta["deadline"] == "2031-05-01T00:00:00.000Z" and "2031-05-01" in job.error.message
    if reason == "CIVITAI_UNAUTHENTICATED":  # a token was sent and refused: say which setting to check
        assert "CIVITAI_TOKEN" in job.error.message
    assert TOKEN not in job.error.message
    assert stack.files() == [] and await stack.models() == []


async def test_missing_token_hints_at_civitai_token(stack_factory):
    stack = await stack_factory(token=None)
    lora = stack.fake.add_lora()
    job = await stack.download(lora.url)
    code, reason, _ = job_error(job)
    assert (code, reason) == (code_pb2.UNAUTHENTICATED, "CIVITAI_UNAUTHENTICATED")
    assert "CIVITAI_TOKEN" in job.error.message
    # A per-request token works where the configured one is missing.
    job = await stack.download(lora.url, token=TOKEN)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error


async def test_token_never_sent_to_storage_nor_logged(stack):
    buffer = io.StringIO()
    configure_logging("civitai-test", level="DEBUG", json=True, stream=buffer)
    try:
        lora = stack.fake.add_lora(data=make_safetensors("lora", 2 * 1024 * 1024, seed=10))
        stack.fake.drop_connection(lora.file_id, after_bytes=700_000)
        job = await stack.download(lora.url + f"&token={TOKEN}")
        assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
        other = stack.fake.add_lora(name="Private")
        stack.fake.require_token("some-other-token-xyz")
        failed = await stack.download(other.url, token="per-request-token-42")
        assert failed.state == S.DOWNLOAD_STATE_FAILED
    finally:
        configure_logging("tests", level="WARNING", json=True)
    storage = stack.fake.storage_requests()
    assert storage and all("authorization" not in r.headers and "token=" not in r.path for r in storage)
    downloads = stack.fake.download_requests()
    assert all(r.headers.get("authorization", "").startswith("Bearer ") for r in downloads)
    logged = buffer.getvalue()
    assert logged  # the service did log (resume, failure, rpc lines)
    for secret in (TOKEN, "per-request-token-42"):
        assert secret not in logged and secret not in failed.error.message and secret not in job.reference
    for line in logged.splitlines():
        json.loads(line)


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
async def test_html_instead_of_model_is_detected(stack, content_type):
    lora = stack.fake.add_lora()
    stack.fake.serve_html(lora.file_id, content_type)
    job = await stack.download(lora.url)
    code, reason, _ = job_error(job)
    assert (code, reason) == (code_pb2.FAILED_PRECONDITION, "NOT_A_MODEL_FILE")
    assert stack.files() == [] and await stack.models() == []


async def test_same_sha256_is_not_downloaded_again(stack):
    lora = stack.fake.add_lora()
    first = await stack.download(lora.url)
    assert first.state == S.DOWNLOAD_STATE_SUCCEEDED
    served = len(stack.fake.storage_requests())
    started = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=f"v:{lora.version_id}"), timeout=10)
    assert started.job.state == S.DOWNLOAD_STATE_SUCCEEDED and started.job.already_installed
    assert started.job.model.filename == first.filename
    assert len(stack.fake.storage_requests()) == served
    assert len(await stack.models()) == 1


async def test_starting_a_file_that_is_downloading_returns_its_job(stack):
    lora = stack.fake.add_lora(data=make_safetensors("lora", 4 * 1024 * 1024, seed=13))
    stack.fake.throttle(lora.file_id, 1024 * 1024)  # so the job is still running when it is started again
    # Two calls at once: neither job exists when both look the model up.
    first, second = await asyncio.gather(*(
        stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10) for _ in range(2)))
    assert first.job.id == second.job.id
    async for reply in stack.civitai.WatchDownload(S.WatchDownloadRequest(job_id=first.job.id), timeout=30):
        if reply.job.bytes_done > 0:
            break
    # The same file however it is named, while the job runs.
    again = [
        S.StartDownloadRequest(reference=f"v:{lora.version_id}"),
        S.StartDownloadRequest(reference=f"sha256:{lora.sha256}"),
        S.StartDownloadRequest(reference=f"urn:air:sdxl:lora:civitai:{lora.model_id}@{lora.version_id}+{lora.file_id}"),
        S.StartDownloadRequest(reference=str(lora.model_id), file_id=lora.file_id),
    ]
    for request in again:
        reply = await stack.civitai.StartDownload(request, timeout=10)
        assert reply.job.id == first.job.id, request
    listed = await stack.civitai.ListDownloads(S.ListDownloadsRequest(), timeout=5)
    assert [j.id for j in listed.jobs] == [first.job.id]
    stack.fake.throttle(lora.file_id, 0)
    job = await stack.wait(first.job.id)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert stack.fake.bytes_served(lora.file_id) == lora.size  # fetched once
    assert len(stack.fake.download_requests()) == 1 and len(await stack.models()) == 1
    # Once it has ended, a new start is a new job (here: already installed).
    after = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    assert after.job.id != first.job.id and after.job.already_installed


async def test_filename_collision_gets_a_suffix(stack):
    a = stack.fake.add_lora(name="Style A", filename="style.safetensors", data=make_safetensors("lora", 5000, seed=11))
    b = stack.fake.add_lora(name="Style B", filename="style.safetensors", data=make_safetensors("lora", 5000, seed=12))
    first = await stack.download(a.url)
    second = await stack.download(b.url)
    assert first.filename == "style.safetensors"
    assert second.filename == f"style-{b.version_id}.safetensors"
    assert (stack.user_models / "loras" / "style.safetensors").read_bytes() == stack.fake._files[a.file_id].content
    assert {m.filename for m in await stack.models()} == {first.filename, second.filename}


async def test_the_served_name_wins_over_the_api_name(stack):
    # CivitAI renames files on download (getDownloadFilename); Content-Disposition carries the name it means.
    lora = stack.fake.add_lora(filename="upload_v1.safetensors", data=make_safetensors("lora", 5000, seed=14))
    stack.fake._files[lora.file_id].name = "../Served: Name?.safetensors"  # what the storage host sends
    info = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(reference=lora.url), timeout=10)).info
    assert info.file.name == "upload_v1.safetensors"
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.filename == "Served_ Name_.safetensors"  # sanitised
    assert stack.files() == ["loras/Served_ Name_.safetensors"]
    [model] = await stack.models()
    assert model.filename == job.model.filename == job.filename
    assert model.sha256 == lora.sha256 and model.civitai_version_id == lora.version_id


async def test_dangerous_file_names_are_sanitised(stack):
    lora = stack.fake.add_lora(filename="../../etc/\x07.evil name?.safetensors")
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.filename == "evil name_.safetensors"
    assert stack.files() == ["loras/evil name_.safetensors"]


async def test_not_enough_disk_is_resource_exhausted(stack_factory):
    stack = await stack_factory(disk_reserve_bytes=1 << 62)
    lora = stack.fake.add_lora()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and info.reason == "INSUFFICIENT_DISK_SPACE"
    assert info.domain == "civitai.modelmanager"


@pytest.mark.parametrize(
    ("prepare", "reference", "code", "reason"),
    [
        (lambda f: f.add_lora(civitai_type="Hypernetwork"), "model", grpc.StatusCode.FAILED_PRECONDITION,
         "UNSUPPORTED_MODEL_TYPE"),
        (lambda f: f.archive(f.add_lora().model_id), "archived", grpc.StatusCode.FAILED_PRECONDITION, "MODEL_ARCHIVED"),
        (lambda f: None, "https://civitai.com/models/99999999", grpc.StatusCode.NOT_FOUND, "CIVITAI_NOT_FOUND"),
        (lambda f: None, "https://example.com/models/1", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REFERENCE"),
    ],
    ids=["unsupported-type", "archived", "404", "bad-reference"],
)
async def test_start_download_refuses_at_once(stack, prepare, reference, code, reason):
    made = prepare(stack.fake)
    if reference == "model":
        reference = made.url
    elif reference == "archived":
        reference = str(max(stack.fake._models))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.StartDownload(S.StartDownloadRequest(reference=reference), timeout=10)
    got_code, info = status_of(exc.value)
    assert (got_code, info.reason) == (code, reason), exc.value.details()
    if reason == "UNSUPPORTED_MODEL_TYPE":
        assert "Hypernetwork" in exc.value.details() and "Checkpoint" in exc.value.details()


async def test_concurrent_jobs_with_the_same_name_never_share_a_file(stack):
    made = [stack.fake.add_lora(name=f"Same {i}", filename="same.safetensors",
                                data=make_safetensors("lora", 200_000, seed=30 + i)) for i in range(3)]
    started = [await stack.civitai.StartDownload(S.StartDownloadRequest(reference=m.url), timeout=10) for m in made]
    jobs = await asyncio.gather(*(stack.wait(s.job.id) for s in started))
    assert all(j.state == S.DOWNLOAD_STATE_SUCCEEDED for j in jobs), [j.error for j in jobs]
    assert len({j.filename for j in jobs}) == 3
    for model, job in zip(made, jobs, strict=True):
        assert (stack.user_models / "loras" / job.filename).read_bytes() == stack.fake._files[model.file_id].content


async def test_empty_hashes_install_unverified(stack):
    lora = stack.fake.add_lora()
    lora.json["modelVersions"][0]["files"][0]["hashes"] = {}  # ComfyUI-Lora-Manager #933
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.model.sha256 == lora.sha256  # computed while downloading


async def test_registry_down_is_unavailable_before_any_download(stack):
    lora = stack.fake.add_lora()
    await stack.registry_server.stop(0)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=30)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.UNAVAILABLE and info.reason == "REGISTRY_UNAVAILABLE"
    assert stack.fake.storage_requests() == []



async def test_a_running_job_waits_for_a_registry_that_restarts(stack):
    # The registry goes away while a file is downloading and comes back on the same address: the
    # job must wait for it, not fail and throw the downloaded bytes away.
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings

    lora = stack.fake.add_lora(data=make_safetensors("lora", 2 * 1024 * 1024, seed=41))
    stack.fake.throttle(lora.file_id, 1024 * 1024)
    started = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    async for reply in stack.civitai.WatchDownload(S.WatchDownloadRequest(job_id=started.job.id), timeout=30):
        if reply.job.bytes_done > 0:
            break
    address = stack.registry_server.address
    await stack.registry_server.stop(0)
    stack.fake.throttle(lora.file_id, 0)
    async for reply in stack.civitai.WatchDownload(S.WatchDownloadRequest(job_id=started.job.id), timeout=30):
        if reply.job.state in (S.DOWNLOAD_STATE_VERIFYING, S.DOWNLOAD_STATE_REGISTERING) or reply.job.state in TERMINAL:
            break
    assert reply.job.state not in TERMINAL, reply.job.error
    registry = await create_registry(RegistrySettings(listen=address, user_models_dir=stack.user_models,
                                                      models_dir=stack.user_models.parent / "models"))
    await registry.start()
    try:
        job = await stack.wait(started.job.id)
        assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
        assert job.model.sha256 == lora.sha256
        assert [m.filename for m in await stack.models()] == [job.filename]
    finally:
        await registry.stop(0)

async def test_shutdown_stops_running_jobs_and_keeps_part_files_for_the_next_start(stack):
    lora = stack.fake.add_lora(data=make_safetensors("lora", 4 * 1024 * 1024, seed=40))
    stack.fake.throttle(lora.file_id, 1024 * 1024)
    started = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    async for reply in stack.civitai.WatchDownload(S.WatchDownloadRequest(job_id=started.job.id), timeout=30):
        if reply.job.bytes_done > 0:
            break
    await stack.server.stop(0)
    # The partial file and the job's journal entry stay (the next start resumes it); nothing is registered.
    assert [name for name in stack.files() if name.endswith(f".{started.job.id[:12]}.part")] == stack.files()
    assert len(stack.files()) == 1
    assert (stack.user_models / ".downloads" / f"{started.job.id}.json").is_file()
    assert await stack.models() == []
