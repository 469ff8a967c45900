"""Which file of a multi-file version is installed, through the wire.

The version is shaped like the real API's (fixtures/model_checkpoint.json): a pickle primary with
SafeTensor siblings in full and pruned sizes and several precisions, and training data. Each way of
naming a file (a download URL's type/format/size/fp, `?fileId=`, an AIR `+file`, the request's
file_id) must install that file, and nothing else.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest
from civitai_helpers import status_of

from devtools.fake_civitai import make_safetensors
from modelmanager.v1 import civitai_pb2 as S
from modelmanager.v1 import registry_pb2

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "model_checkpoint.json").read_text())
MODEL_ID, VERSION_ID, OLD_VERSION_ID, OLD_FILE = 456789, 1567890, 1203344, 1099871
PICKLE, PRUNED, FULL, FULL_FP16, PRUNED_TYPE, FULL_BF16, TRAINING = range(1460011, 1460018)
# id: (type, format, size, fp, name); CivitAI can give a version's full and pruned files the same name (it derives
# the name from the model and version, not the file: civitai/civitai PR #4737), so a name never picks a file.
FILES = {
    PICKLE: ("Model", "PickleTensor", "pruned", "fp16", "dreamForgeXl_v20.ckpt"),
    PRUNED: ("Model", "SafeTensor", "pruned", "fp16", "dreamForgeXl_v20.safetensors"),
    FULL: ("Model", "SafeTensor", "full", "fp32", "dreamForgeXl_v20.safetensors"),
    FULL_FP16: ("Model", "SafeTensor", "full", "fp16", "dreamForgeXl_v20_full16.safetensors"),
    PRUNED_TYPE: ("Pruned Model", "SafeTensor", "pruned", "bf16", "dreamForgeXl_v20_bf16.safetensors"),
    FULL_BF16: ("Model", "SafeTensor", "full", "bf16", "dreamForgeXl_v20_fullbf16.safetensors"),
    TRAINING: ("Training Data", "Other", "", "", "dreamForgeXl_v20_trainingData.zip"),
}
DOWNLOAD = f"https://civitai.com/api/download/models/{VERSION_ID}"
PAGE = f"https://civitai.com/models/{MODEL_ID}?modelVersionId={VERSION_ID}"


def _file_json(file_id: int, content: bytes) -> dict:
    kind, fmt, size, fp, name = FILES.get(file_id) or ("Model", "SafeTensor", "pruned", "fp16", "dreamForgeXl_v10.safetensors")
    sha = hashlib.sha256(content).hexdigest().upper()
    metadata = {k: v for k, v in (("format", fmt), ("size", size), ("fp", fp)) if v}
    query = "&".join(f"{k}={quote(v)}" for k, v in (("type", kind), *metadata.items()) if k != "format" or kind != "Training Data")
    entry = {
        "id": file_id, "sizeKB": round(len(content) / 1024, 2), "name": name, "overrideName": None, "type": kind,
        "pickleScanResult": "Success", "virusScanResult": "Success", "hashes": {"AutoV2": sha[:10], "SHA256": sha},
        "metadata": metadata,
        # createModelFileDownloadUrl: the primary file gets the bare link, the others type/format/size/fp.
        "downloadUrl": DOWNLOAD if file_id in (PICKLE, OLD_FILE) else f"{DOWNLOAD}?{query}",
    }
    if file_id in (PICKLE, OLD_FILE):
        entry["primary"] = True  # absent on the others in /models
    return entry


@pytest.fixture
def version(stack):
    """The multi-file version (the latest of two) served by the fake; returns {file id: content}."""
    contents = {fid: make_safetensors("checkpoint", 6000, seed=fid) for fid in (*FILES, OLD_FILE)}
    contents[TRAINING] = b"PK\x05\x06" + b"\x00" * 18
    model = copy.deepcopy(FIXTURE)
    latest, older = model["modelVersions"]
    assert (latest["id"], older["id"]) == (VERSION_ID, OLD_VERSION_ID)
    latest["files"] = [_file_json(fid, contents[fid]) for fid in FILES]
    older["files"] = [_file_json(OLD_FILE, contents[OLD_FILE])]
    stack.fake.add_model(model, contents)
    del contents[OLD_FILE]  # not one of the latest version's files
    return contents


async def _installed(stack, job: S.DownloadJob, contents: dict[int, bytes]) -> int:
    """The id of the file the job installed, checked on disk and in the registry."""
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    on_disk = (stack.user_models / "checkpoints" / job.filename).read_bytes()
    [file_id] = [fid for fid, content in contents.items() if content == on_disk]
    model = (await stack.registry.GetModel(registry_pb2.GetModelRequest(filename=job.filename), timeout=5)).model
    assert model.sha256 == hashlib.sha256(on_disk).hexdigest() and model.civitai_version_id == VERSION_ID
    assert job.file_id == file_id
    return file_id


async def test_without_a_choice_the_pruned_safetensor_not_the_pickle_primary(stack, version):
    info = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(reference=PAGE), timeout=10)).info
    assert info.file.id == PRUNED and len(info.files) == len(FILES)
    assert await _installed(stack, await stack.download(PAGE), version) == PRUNED


@pytest.mark.parametrize(
    ("reference", "file_id", "expected"),
    [
        (f"{DOWNLOAD}?type=Model&format=SafeTensor&size=full&fp=fp32", 0, FULL),  # CivitAI's link to the full file
        (f"{DOWNLOAD}?type=Model&format=SafeTensor&size=full", 0, FULL_FP16),  # then CivitAI's order: fp16
        (f"{DOWNLOAD}?type=Pruned%20Model", 0, PRUNED_TYPE),
        (f"{DOWNLOAD}?fileId={FULL_BF16}", 0, FULL_BF16),
        (f"urn:air:sdxl:checkpoint:civitai:{MODEL_ID}@{VERSION_ID}+{FULL}", 0, FULL),
        (PAGE, FULL_BF16, FULL_BF16),  # the request's file_id
        (f"{DOWNLOAD}?type=Model&format=SafeTensor&size=full&fp=fp32", PRUNED_TYPE, PRUNED_TYPE),  # it wins
    ],
    ids=["filter-full-fp32", "filter-full", "filter-type", "fileId", "air-file",
         "request-file-id", "request-file-id-over-filter"],
)
async def test_a_named_file_is_the_one_installed(stack, version, reference, file_id, expected):
    info = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(reference=reference), timeout=10)).info
    if not file_id:
        assert info.file.id == expected
    job = await stack.download(reference, file_id=file_id)
    assert await _installed(stack, job, version) == expected
    assert [m.filename for m in await stack.models()] == [job.filename]
    # The download endpoint was asked for that file by id, not left to pick one.
    assert [r.path for r in stack.fake.download_requests()] == [f"/api/download/models/{VERSION_ID}?fileId={expected}"]


async def test_a_hash_names_its_own_file_not_the_versions_preferred_one(stack, version):
    sha = hashlib.sha256(version[FULL]).hexdigest()
    for reference in (f"sha256:{sha}", f"hash:{sha[:10]}"):  # SHA256, AutoV2
        info = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(reference=reference), timeout=10)).info
        assert info.file.id == FULL and info.file.sha256 == sha
    identified = await stack.civitai.IdentifyFile(S.IdentifyFileRequest(sha256=sha), timeout=10)
    assert identified.info.file.id == FULL
    assert await _installed(stack, await stack.download(f"sha256:{sha}"), version) == FULL


async def test_an_air_naming_a_file_but_no_version_installs_that_files_version(stack, version):
    job = await stack.download(f"urn:air:sdxl:checkpoint:civitai:{MODEL_ID}+{OLD_FILE}")
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert (job.version_id, job.file_id) == (OLD_VERSION_ID, OLD_FILE)  # not the latest version's
    assert job.model.civitai_version_id == OLD_VERSION_ID


@pytest.mark.parametrize(
    ("reference", "file_id"),
    [
        (f"{DOWNLOAD}?type=Training%20Data", 0),
        (f"{DOWNLOAD}?fileId={TRAINING}", 0),
        (f"urn:air:sdxl:checkpoint:civitai:{MODEL_ID}@{VERSION_ID}+{TRAINING}", 0),
        (PAGE, TRAINING),
    ],
    ids=["type", "fileId", "air", "request-file-id"],
)
async def test_training_data_is_never_installed(stack, version, reference, file_id):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.StartDownload(S.StartDownloadRequest(reference=reference, file_id=file_id), timeout=10)
    code, info = status_of(exc.value)
    assert (code, info.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_MODEL_FILE"), exc.value.details()
    assert "training data" in exc.value.details() and info.metadata["file_id"] == str(TRAINING)
    assert stack.fake.download_requests() == [] and stack.files() == []


@pytest.mark.parametrize(
    ("reference", "file_id", "says"),
    [
        (f"{DOWNLOAD}?fileId=999", 0, f"file 999 is not a file of version {VERSION_ID}"),
        (f"urn:air:sdxl:checkpoint:civitai:{MODEL_ID}@{VERSION_ID}+999", 0, f"file 999 is not a file of version {VERSION_ID}"),
        (PAGE, 999, f"file 999 is not a file of version {VERSION_ID}"),
        (f"{DOWNLOAD}?type=Model&format=SafeTensor&size=full&fp=nf4", 0,
         f"version {VERSION_ID} has no file with type=Model&format=SafeTensor&size=full&fp=nf4"),
        (f"{DOWNLOAD}?fileId={FULL}&size=pruned", 0, f"version {VERSION_ID} has no file {FULL} with size=pruned"),
    ],
    ids=["fileId", "air", "request-file-id", "filter", "fileId-and-filter-disagree"],
)
async def test_a_file_the_version_lacks_is_not_found(stack, version, reference, file_id, says):
    calls = [lambda: stack.civitai.StartDownload(S.StartDownloadRequest(reference=reference, file_id=file_id), timeout=10)]
    if not file_id:  # GetModelInfo has no file_id
        calls.append(lambda: stack.civitai.GetModelInfo(S.GetModelInfoRequest(reference=reference), timeout=10))
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call()
        code, info = status_of(exc.value)
        assert (code, info.reason) == (grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND"), exc.value.details()
        assert says in exc.value.details()
        # It lists what the version has, so the user can pick.
        assert all(str(fid) in exc.value.details() for fid in FILES)
        assert info.metadata["file_ids"] == ",".join(str(fid) for fid in FILES)
    assert stack.fake.download_requests() == [] and stack.files() == []
