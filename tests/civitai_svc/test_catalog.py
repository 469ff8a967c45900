"""Search, identify, check updates and model info through the wire."""

from __future__ import annotations

import grpc
import pytest
from civitai_helpers import status_of

from devtools.fake_civitai import make_safetensors
from modelmanager.v1 import civitai_pb2 as S
from modelmanager.v1 import model_pb2


async def test_model_info_by_every_selector(stack):
    lora = stack.fake.add_lora(trained_words=["wtrclr"])
    stack.fake.add_version(lora.model_id, version_name="v2.0", trained_words=["wtrclr v2"])
    by_model = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(model_id=lora.model_id), timeout=10)).info
    assert by_model.version_name == "v2.0" and list(by_model.trigger_words) == ["wtrclr v2"]
    assert [v.name for v in by_model.versions] == ["v2.0", "v1.0"]
    by_version = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(version_id=lora.version_id), timeout=10)).info
    assert by_version.version_id == lora.version_id and list(by_version.trigger_words) == ["wtrclr"]
    assert [v.name for v in by_version.versions] == ["v2.0", "v1.0"]  # the model's versions, for a picker
    by_hash = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(sha256=lora.sha256), timeout=10)).info
    assert by_hash.version_id == lora.version_id and by_hash.file.id == lora.file_id
    by_air = (await stack.civitai.GetModelInfo(
        S.GetModelInfoRequest(reference=f"urn:air:sdxl:lora:civitai:{lora.model_id}@{lora.version_id}"), timeout=10)).info
    assert by_air.version_id == lora.version_id
    assert by_model.images and by_model.images[0].url.startswith(stack.fake.base_url + "/")  # the fake serves previews
    assert not by_model.HasField("early_access_deadline")
    gated = stack.fake.add_lora(name="Gated")
    stack.fake.early_access(gated.version_id, "2031-01-02T03:04:05.000Z")
    early = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(version_id=gated.version_id), timeout=10)).info
    assert early.early_access_deadline.ToJsonString() == "2031-01-02T03:04:05Z"


async def test_an_early_access_that_ended_is_not_reported_and_the_version_downloads(stack):
    lora = stack.fake.add_lora(name="Was Early")
    # CivitAI may still send a deadline that has passed; the version is public by now.
    lora.json["modelVersions"][0]["earlyAccessDeadline"] = "2020-01-02T03:04:05.000Z"
    by_version = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(version_id=lora.version_id), timeout=10)).info
    by_model = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(model_id=lora.model_id), timeout=10)).info
    found = (await stack.civitai.SearchModels(S.SearchModelsRequest(query="was early"), timeout=10)).models
    assert [m.version_id for m in found] == [lora.version_id]
    for info in (by_version, by_model, found[0]):
        assert not info.HasField("early_access_deadline"), info.early_access_deadline
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error


async def test_model_info_errors(stack):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.GetModelInfo(S.GetModelInfoRequest(model_id=424242), timeout=10)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.NOT_FOUND and info.reason == "CIVITAI_NOT_FOUND"
    assert info.domain == "civitai.modelmanager"
    hypernetwork = stack.fake.add_lora(civitai_type="Hypernetwork")  # VAEs install since issue 14
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.GetModelInfo(S.GetModelInfoRequest(model_id=hypernetwork.model_id), timeout=10)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and info.reason == "UNSUPPORTED_MODEL_TYPE"
    assert "Hypernetwork" in exc.value.details()
    stack.fake.fail("model", 503, times=10)
    lora = stack.fake.add_lora()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.GetModelInfo(S.GetModelInfoRequest(model_id=lora.model_id), timeout=10)
    assert status_of(exc.value)[0] == grpc.StatusCode.UNAVAILABLE


async def test_parse_reference_rejects_with_the_accepted_forms(stack):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.ParseReference(S.ParseReferenceRequest(reference="https://huggingface.co/x"), timeout=5)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_REFERENCE"
    assert "urn:air" in exc.value.details()


async def test_search_with_filters_and_cursor_paging(stack):
    for i in range(5):
        stack.fake.add_lora(name=f"Watercolor {i}", tags=("watercolor",))
    stack.fake.add_checkpoint(name="Watercolor Base", base_model="Pony")
    stack.fake.add_lora(name="Ink Sketch", tags=("ink",))
    stack.fake.add_lora(name="Watercolor Hypernetwork", civitai_type="Hypernetwork")
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = await stack.civitai.SearchModels(
            S.SearchModelsRequest(query="watercolor", page_size=2, page_token=token), timeout=10)
        names += [m.name for m in reply.models]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert pages == 3 and len(names) == 6 and "Watercolor Hypernetwork" not in names  # installable types by default
    only = await stack.civitai.SearchModels(
        S.SearchModelsRequest(query="watercolor", types=["Checkpoint"], base_models=["Pony"]), timeout=10)
    assert [m.name for m in only.models] == ["Watercolor Base"]
    assert only.models[0].model_type == model_pb2.MODEL_TYPE_CHECKPOINT and only.models[0].file.sha256
    request = [r for r in stack.fake.requests if r.path.startswith("/api/v1/models?")][-1]
    assert "types=Checkpoint" in request.path and "baseModels=Pony" in request.path
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.SearchModels(S.SearchModelsRequest(sort="Best"), timeout=10)
    assert status_of(exc.value)[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_search_overload_is_retried(stack):
    stack.fake.add_lora(name="Watercolor")
    stack.fake.unavailable("search", times=1, retry_after="0")
    reply = await stack.civitai.SearchModels(S.SearchModelsRequest(query="watercolor"), timeout=10)
    assert [m.name for m in reply.models] == ["Watercolor"]


async def test_identify_by_sha256_and_by_installed_filename(stack):
    lora = stack.fake.add_lora(data=make_safetensors("lora", 20_000, seed=21))
    reply = await stack.civitai.IdentifyFile(S.IdentifyFileRequest(sha256=lora.sha256.upper()), timeout=10)
    assert reply.sha256 == lora.sha256 and reply.info.version_id == lora.version_id
    assert reply.info.installed_filename == ""
    job = await stack.download(lora.url)
    reply = await stack.civitai.IdentifyFile(S.IdentifyFileRequest(filename=job.filename), timeout=10)
    assert reply.info.model_id == lora.model_id and reply.info.installed_filename == job.filename
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.IdentifyFile(S.IdentifyFileRequest(sha256="ab" * 32), timeout=10)
    assert status_of(exc.value) [0] == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.IdentifyFile(S.IdentifyFileRequest(filename="nothing.safetensors"), timeout=10)
    assert status_of(exc.value)[0] == grpc.StatusCode.NOT_FOUND


async def test_check_updates(stack):
    old = stack.fake.add_lora(name="Updating", data=make_safetensors("lora", 10_000, seed=22))
    same = stack.fake.add_lora(name="Current", data=make_safetensors("lora", 10_000, seed=23))
    first = await stack.download(old.url)
    second = await stack.download(same.url)
    newer = stack.fake.add_version(old.model_id, version_name="v2.0")
    reply = await stack.civitai.CheckUpdates(S.CheckUpdatesRequest(), timeout=10)
    by_file = {u.filename: u for u in reply.updates}
    assert set(by_file) == {first.filename, second.filename}
    update = by_file[first.filename]
    assert update.update_available and update.latest_version_id == newer.version_id
    assert (update.installed_version_id, update.installed_version_name, update.latest_version_name) == (
        old.version_id, "v1.0", "v2.0")
    assert not by_file[second.filename].update_available
    only = await stack.civitai.CheckUpdates(S.CheckUpdatesRequest(filenames=[second.filename]), timeout=10)
    assert [u.filename for u in only.updates] == [second.filename]
