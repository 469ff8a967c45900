"""Library health over the real registry server: duplicates (same sha256 across names and roots, one
inode under two names), disk use per type/root with the volume's free space and the biggest files, and
tags added/removed on a selection in one index write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import grpc
import pytest

from metadata_svc.duplicates import find_duplicates
from metadata_svc.models import LORA as LORA_KIND
from metadata_svc.models import ModelEntry
from metadata_svc.volume import Volume
from modelmanager.v1 import model_pb2, registry_pb2
from tests.metadata_svc.import_helpers import run_import
from tests.metadata_svc.registry_helpers import create_request, reason, write_checkpoint, write_lora

LORA, CKPT = model_pb2.MODEL_TYPE_LORA, model_pb2.MODEL_TYPE_CHECKPOINT
R = registry_pb2


@pytest.fixture
def libs(tmp_path: Path) -> Path:
    folder = tmp_path / "libraries"
    folder.mkdir()
    return folder


async def _library(start_registry, libs: Path):
    """loras/a (+ b, a hard link of it), loras/c (unique), a root holding a copy of a and a checkpoint."""
    reg = await start_registry(library_allow=[str(libs)], civitai="127.0.0.1:9")
    reg.loras.mkdir(parents=True, exist_ok=True)
    a = write_lora(reg.loras / "a.safetensors", seed=1)
    os.link(a, reg.loras / "b.safetensors")
    write_lora(reg.loras / "c.safetensors", seed=2)
    root = libs / "sd"
    (root / "Lora").mkdir(parents=True)
    shutil.copyfile(a, root / "Lora" / "copy-of-a.safetensors")
    write_checkpoint(root / "big.safetensors", seed=3)
    for name in ("a.safetensors", "b.safetensors", "c.safetensors"):
        await reg.stub.CreateModel(create_request(name))
    job = await run_import(reg.stub, path=str(root), mode=R.IMPORT_MODE_IN_PLACE, no_identify=True)
    assert job.state == R.IMPORT_STATE_SUCCEEDED, job
    return reg, a.stat().st_size, root


async def test_duplicates_group_one_file_under_names_and_roots(start_registry, libs: Path):
    reg, size, _ = await _library(start_registry, libs)
    got = await reg.stub.ListDuplicates(R.ListDuplicatesRequest())
    [group] = got.groups
    names = {e.model.filename: e.file_number for e in group.entries}
    assert set(names) == {"a.safetensors", "b.safetensors", "copy-of-a.safetensors"}
    assert names["a.safetensors"] == names["b.safetensors"] != names["copy-of-a.safetensors"]  # one inode
    assert group.size_bytes == size
    assert group.reclaimable_bytes == size == got.reclaimable_bytes  # the hard link frees nothing
    assert group.sha256 == next(iter(group.entries)).model.sha256 and len(group.sha256) == 64
    assert got.unhashed == 0

    # Deleting the copy leaves one file under two names: still a group, nothing more to free.
    await reg.stub.DeleteModel(R.DeleteModelRequest(filename="copy-of-a.safetensors", delete_file=True))
    [group] = (await reg.stub.ListDuplicates(R.ListDuplicatesRequest())).groups
    assert {e.model.filename for e in group.entries} == {"a.safetensors", "b.safetensors"}
    assert group.reclaimable_bytes == 0


def test_duplicates_by_inode_before_hashing(tmp_path: Path):
    """Entries not hashed yet are still found when they are one file."""
    volume = Volume(tmp_path / "user", tmp_path / "models")
    (tmp_path / "user" / "loras").mkdir(parents=True)
    first = write_lora(tmp_path / "user" / "loras" / "x.safetensors", seed=4)
    os.link(first, tmp_path / "user" / "loras" / "y.safetensors")
    write_lora(tmp_path / "user" / "loras" / "z.safetensors", seed=5)
    entries = [ModelEntry(filename=n, type=LORA_KIND) for n in ("x.safetensors", "y.safetensors", "z.safetensors")]
    report = find_duplicates(volume, entries)
    [group] = report.groups
    assert group.sha256 == "" and [n for _, n in group.entries] == [1, 1]
    assert group.reclaimable_bytes == 0 and report.unhashed == 3


async def test_disk_usage_per_type_and_root(start_registry, libs: Path):
    reg, size, root = await _library(start_registry, libs)
    ckpt_size = (root / "big.safetensors").stat().st_size
    c_size = (reg.loras / "c.safetensors").stat().st_size
    (reg.loras / "c.safetensors").unlink()  # absent: counted as missing, not in the bytes
    got = await reg.stub.GetDiskUsage(R.GetDiskUsageRequest(biggest=2))
    by_type = {u.type: (u.bytes, u.model_count) for u in got.by_type}
    assert by_type[LORA] == (2 * size, 3)  # a and b are one inode; the root's copy is its own
    assert by_type[CKPT] == (ckpt_size, 1)
    by_root = {u.root_id: u for u in got.by_root}
    volume, [library] = by_root.pop(""), list(by_root.values())
    assert (volume.bytes, volume.model_count, volume.path) == (size, 2, "")
    assert (library.bytes, library.model_count, library.path) == (size + ckpt_size, 2, str(root.resolve()))
    assert got.total_bytes == 2 * size + ckpt_size and got.model_count == 4 and got.missing_count == 1
    st = os.statvfs(reg.user_models)
    assert got.volume_total_bytes == st.f_blocks * st.f_frsize
    assert 0 < got.volume_free_bytes <= got.volume_total_bytes and volume.free_bytes == got.volume_free_bytes
    assert library.free_bytes > 0 and library.filesystem_bytes > 0
    present = {"a.safetensors": size, "b.safetensors": size, "copy-of-a.safetensors": size,
               "big.safetensors": ckpt_size}
    expected = sorted(present, key=lambda n: (-present[n], n))
    assert [m.filename for m in got.biggest] == expected[:2]  # biggest first; c (absent) never listed
    assert c_size > 0
    everything = await reg.stub.GetDiskUsage(R.GetDiskUsageRequest())
    assert len(everything.biggest) == 4
    for bad in (-1, 1001):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await reg.stub.GetDiskUsage(R.GetDiskUsageRequest(biggest=bad))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(exc.value) == "INVALID_PAGE_SIZE"


async def test_batch_tags_in_one_index_write_and_durable(start_registry, reg):
    reg.loras.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("p.safetensors", "q.safetensors", "r.safetensors")):
        write_lora(reg.loras / name, seed=10 + i)
        await reg.stub.CreateModel(create_request(name, tags=["Old", "keep"]))
    store = reg.server.registry.store
    before = store.flushes
    got = await reg.stub.BatchUpdateTags(R.BatchUpdateTagsRequest(
        filenames=["q.safetensors", "p.safetensors"], add_tags=["style", " anime "], remove_tags=["old"]))
    assert store.flushes == before + 1
    assert [m.filename for m in got.models] == ["q.safetensors", "p.safetensors"]
    assert all(list(m.tags) == ["keep", "style", "anime"] for m in got.models)
    assert "tags" in got.models[0].user_edited_fields

    await reg.server.stop(0)
    again = await start_registry()  # read back from the index file
    listed = {m.filename: list(m.tags) for m in
              (await again.stub.ListModels(R.ListModelsRequest(page_size=10))).models}
    assert listed == {"p.safetensors": ["keep", "style", "anime"], "q.safetensors": ["keep", "style", "anime"],
                      "r.safetensors": ["Old", "keep"]}


@pytest.mark.parametrize(
    ("request_fields", "code", "why"),
    [
        ({"filenames": ["p.safetensors", "nope.safetensors"], "add_tags": ["x"]}, grpc.StatusCode.NOT_FOUND,
         "MODEL_NOT_FOUND"),
        ({"filenames": ["p.safetensors"], "add_tags": [" "]}, grpc.StatusCode.INVALID_ARGUMENT, "MISSING_TAGS"),
        ({"filenames": ["p.safetensors"] * 1001, "add_tags": ["x"]}, grpc.StatusCode.INVALID_ARGUMENT,
         "TOO_MANY_ITEMS"),
        ({"filenames": ["p.safetensors"], "add_tags": ["x" * 101]}, grpc.StatusCode.INVALID_ARGUMENT,
         "FIELD_TOO_LONG"),
        ({"filenames": ["p.safetensors"], "add_tags": [f"t{i}" for i in range(100)]},
         grpc.StatusCode.INVALID_ARGUMENT, "TOO_MANY_ITEMS"),  # one more than an entry may hold
        ({"filenames": ["../etc/passwd"], "add_tags": ["x"]}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILENAME"),
    ],
)
async def test_batch_tags_refused_changes_nothing(reg, request_fields, code, why):
    reg.loras.mkdir(parents=True, exist_ok=True)
    write_lora(reg.loras / "p.safetensors", seed=20)
    await reg.stub.CreateModel(create_request("p.safetensors", tags=["mine"]))
    index = reg.index.read_bytes()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await reg.stub.BatchUpdateTags(R.BatchUpdateTagsRequest(**request_fields))
    assert exc.value.code() == code and reason(exc.value) == why
    assert reg.index.read_bytes() == index
    got = await reg.stub.GetModel(R.GetModelRequest(filename="p.safetensors"))
    assert list(got.model.tags) == ["mine"]
