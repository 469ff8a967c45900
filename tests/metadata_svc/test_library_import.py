"""Library import through the wire: real libraries on disk in each tool's layout, a real registry on 127.0.0.1,
and (for identification) a tiny real CivitaiService server that answers IdentifyFiles."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import grpc
import pytest
from import_helpers import models_of, run_import, wait_job
from library_helpers import (
    a1111_library,
    comfyui_library,
    exploding_pickle,
    image_bytes,
    invokeai_library,
    recorded_opens,
    stability_matrix_library,
    write_bytes,
)
from registry_helpers import reason

from devtools.model_files import write_safetensors
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc, model_pb2, registry_pb2

LORA = model_pb2.MODEL_TYPE_LORA
CHECKPOINT = model_pb2.MODEL_TYPE_CHECKPOINT


class FakeCivitai(civitai_pb2_grpc.CivitaiServiceServicer):
    """IdentifyFiles only: the hashes in `known` are found (with a preview), every other one is not."""

    def __init__(self) -> None:
        self.known: dict[str, civitai_pb2.CivitaiModelInfo] = {}
        self.asked: list[list[str]] = []

    async def IdentifyFiles(self, request, context):
        self.asked.append(list(request.sha256s))
        files = []
        for sha in request.sha256s:
            info = self.known.get(sha.lower())
            if info is None:
                files.append(civitai_pb2.IdentifiedFile(sha256=sha.lower(), found=False))
            else:
                files.append(civitai_pb2.IdentifiedFile(
                    sha256=sha.lower(), found=True, info=info, preview=image_bytes("WEBP", (32, 32)),
                    preview_content_type="image/webp",
                    preview_image=civitai_pb2.PreviewImage(url="https://image.example/1.jpeg", nsfw_level=2)))
        return civitai_pb2.IdentifyFilesResponse(files=files)


@pytest.fixture
async def civitai():
    server = grpc.aio.server()
    fake = FakeCivitai()
    civitai_pb2_grpc.add_CivitaiServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.address = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield fake
    await server.stop(0)


@pytest.fixture
def libs(tmp_path: Path) -> Path:
    folder = tmp_path / "libraries"
    folder.mkdir()
    return folder


@pytest.fixture
async def lib_reg(start_registry, libs: Path):
    """A registry that may add roots under `libs`; no CivitAI service listens at its address."""
    return await start_registry(library_allow=[str(libs)], civitai="127.0.0.1:9")


async def fails(call, code: grpc.StatusCode, expected: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert reason(caught.value) == expected, caught.value.details()
    return caught.value


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a1111_library_in_place(lib_reg, libs: Path, tmp_path: Path):
    root = a1111_library(libs / "a1111")
    marker = tmp_path / "unpickled"
    write_bytes(root / "models" / "Lora" / "evil.ckpt", exploding_pickle(marker))
    write_bytes(root / "models" / "Lora" / "cut.safetensors",
                (root / "models" / "Lora" / "watercolor.safetensors").read_bytes()[:300])
    write_safetensors(root / "models" / "Lora" / "ünïcode 風.safetensors", "lora", payload_bytes=512, seed=11)
    outside = write_safetensors(tmp_path / "outside.safetensors", "lora", payload_bytes=512, seed=12)
    os.symlink(outside, root / "models" / "Lora" / "link-out.safetensors")

    job = await run_import(lib_reg.stub, path=str(root))
    assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED, job.error
    assert job.root_id and job.mode == registry_pb2.IMPORT_MODE_IN_PLACE
    assert "unavailable" in job.identify_note.lower()
    skipped = {s.path: s.reason for s in job.skipped}
    assert skipped["models/Lora/evil.ckpt"].startswith("PICKLE_FORMAT")
    assert skipped["models/Lora/cut.safetensors"].startswith("TRUNCATED")
    assert skipped["models/Lora/link-out.safetensors"].startswith("SYMLINK_OUTSIDE_ROOT")
    assert skipped["models/Stable-diffusion/old15.safetensors"].startswith("SD1")
    assert not marker.exists(), "a pickle was unpickled"

    models = await models_of(lib_reg.stub, root_id=job.root_id)
    assert set(models) == {"ink.safetensors", "watercolor.safetensors", "soft.safetensors", "dream.safetensors",
                           "ünïcode 風.safetensors"}
    ink = models["ink.safetensors"]
    assert ink.type == LORA and ink.folder == "models/Lora/styles" and ink.root_id == job.root_id
    assert ink.path == str(root.resolve() / "models/Lora/styles/ink.safetensors") and ink.file_present
    assert list(ink.trigger_words) == ["inkwash", "monochrome"] and ink.recommended_weight == 0.8
    assert ink.notes == "works best at 1024px" and ink.description == "Ink wash style"
    assert ink.preview.source == "sidecar" and ink.preview.width == 64
    assert ink.sha256 == sha(root / "models/Lora/styles/ink.safetensors")
    assert ink.autov2 == ink.sha256[:10].upper() and len(ink.autov3) == 12
    assert ink.civitai_lookup.state == model_pb2.CIVITAI_LOOKUP_STATE_PENDING
    water = models["watercolor.safetensors"]
    assert water.display_name == "Soft Watercolor Style" and water.civitai_model_id == 1234567
    assert water.civitai_version_name == "v1.0" and water.base_model == "Illustrious"
    assert models["dream.safetensors"].type == CHECKPOINT

    preview = await lib_reg.stub.GetPreview(registry_pb2.GetPreviewRequest(filename="ink.safetensors"))
    assert preview.image[:4] == b"RIFF" and preview.preview.sha256 == hashlib.sha256(preview.image).hexdigest()

    # Filters: the folder and everything below it.
    assert set(await models_of(lib_reg.stub, root_id=job.root_id, folder="models/Lora")) == {
        "ink.safetensors", "watercolor.safetensors", "soft.safetensors", "ünïcode 風.safetensors"}
    assert set(await models_of(lib_reg.stub, folder="models/Lora/styles")) == {"ink.safetensors"}
    assert await models_of(lib_reg.stub, root_id="volume") == {}

    # GetModel and ComposePrompt also take the file's folder/file_name.
    got = await lib_reg.stub.GetModel(registry_pb2.GetModelRequest(filename="models/Lora/styles/ink.safetensors"))
    assert got.model.filename == "ink.safetensors"
    composed = await lib_reg.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="a cat", loras=[model_pb2.LoraSelection(name="models/Lora/styles/ink.safetensors")]))
    assert composed.prompt == "inkwash, monochrome, a cat" and composed.loras[0].path == ink.path


@pytest.mark.parametrize("layout", [comfyui_library, stability_matrix_library, invokeai_library],
                         ids=lambda f: f.__name__)
async def test_other_layouts(lib_reg, libs: Path, layout):
    root = layout(libs / layout.__name__)
    job = await run_import(lib_reg.stub, path=str(root), no_identify=True)
    assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED, job.error
    models = await models_of(lib_reg.stub, root_id=job.root_id)
    if layout is comfyui_library:
        assert set(models) == {"glow.safetensors", "locon.safetensors", "base.safetensors"}
        glow = models["glow.safetensors"]
        assert glow.display_name == "Neon Glow" and glow.notes == "my notes" and glow.recommended_weight == 0.6
        assert glow.preview.source == "sidecar"
    elif layout is stability_matrix_library:
        crisp = models["crisp.safetensors"]
        assert crisp.display_name == "Crisp Lines" and list(crisp.trigger_words) == ["crisplines"]
        assert crisp.civitai_version_id == 222 and crisp.preview.source == "sidecar"
        assert models["xl.safetensors"].type == CHECKPOINT
    else:
        assert set(models) == {"invoke-style.safetensors", "invoke-base.safetensors"}
        assert [s.path for s in job.skipped] == ["models/sd-1/lora/old.safetensors"]
    assert job.files_hashed == len(models)


async def test_rescan_of_an_unchanged_library_reads_no_file(lib_reg, libs: Path):
    root = comfyui_library(libs / "comfy")
    first = await run_import(lib_reg.stub, path=str(root), no_identify=True)
    assert first.registered == 3
    with recorded_opens() as opened:
        again = await run_import(lib_reg.stub, root_id=first.root_id, no_identify=True)
    assert again.state == registry_pb2.IMPORT_STATE_SUCCEEDED
    assert again.registered == 0 and again.already_known == 3 and again.files_to_hash == 0
    read = [p for p in opened if p.startswith(str(root.resolve()))]
    assert read == [], read


async def test_move_rename_and_missing(lib_reg, libs: Path):
    root = comfyui_library(libs / "comfy")
    job = await run_import(lib_reg.stub, path=str(root), no_identify=True)
    await lib_reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="glow.safetensors", display_name="My Glow", trigger_words=["mine"])))
    loras = root / "models" / "loras"
    (loras / "moved").mkdir()
    os.rename(loras / "glow.safetensors", loras / "moved" / "renamed.safetensors")  # same inode: cache hit
    shutil.copyfile(loras / "pony" / "locon.safetensors", loras / "copied.safetensors")  # new inode: hashed
    (loras / "pony" / "locon.safetensors").unlink()
    (root / "models" / "checkpoints" / "base.safetensors").unlink()

    again = await run_import(lib_reg.stub, root_id=job.root_id, no_identify=True)
    assert again.registered == 0 and again.missing == 1, again
    models = await models_of(lib_reg.stub, root_id=job.root_id)
    assert set(models) == {"glow.safetensors", "locon.safetensors", "base.safetensors"}
    glow = models["glow.safetensors"]
    assert glow.folder == "models/loras/moved" and glow.file_name == "renamed.safetensors" and glow.file_present
    assert glow.display_name == "My Glow" and list(glow.trigger_words) == ["mine"]
    assert set(glow.user_edited_fields) == {"display_name", "trigger_words"}
    assert models["locon.safetensors"].file_name == "copied.safetensors" and models["locon.safetensors"].file_present
    assert not models["base.safetensors"].file_present


async def test_duplicates_two_names_and_two_roots(lib_reg, libs: Path):
    one = libs / "one"
    two = libs / "two"
    a = write_safetensors(one / "style.safetensors", "lora", payload_bytes=512, seed=1)
    shutil.copyfile(a, one / "style copy.safetensors")
    write_safetensors(two / "style.safetensors", "lora", payload_bytes=512, seed=2)
    first = await run_import(lib_reg.stub, path=str(one), no_identify=True)
    second = await run_import(lib_reg.stub, path=str(two), no_identify=True)
    assert first.registered == 2 and second.registered == 1
    models = await models_of(lib_reg.stub)
    clash = next(m for m in models.values() if m.root_id == second.root_id)
    assert clash.filename.startswith("style~") and clash.filename.endswith(".safetensors")
    assert len(clash.filename) == len("style~12345678.safetensors") and clash.file_name == "style.safetensors"
    assert models["style.safetensors"].root_id == first.root_id
    assert models["style copy.safetensors"].sha256 == models["style.safetensors"].sha256
    # Stable: a rescan keeps the keys.
    await run_import(lib_reg.stub, root_id=second.root_id, no_identify=True)
    assert set(await models_of(lib_reg.stub)) == set(models)
    # Two display names alike: ambiguous, the key is unique.
    composed = await lib_reg.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="x", loras=[model_pb2.LoraSelection(name=clash.filename)]))
    assert composed.loras[0].path == clash.path
    await lib_reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="style copy.safetensors", display_name="Same"),
        update_mask={"paths": ["display_name"]}))
    await lib_reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename=clash.filename, display_name="Same"), update_mask={"paths": ["display_name"]}))
    await fails(lib_reg.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="x", loras=[model_pb2.LoraSelection(name="Same")])), grpc.StatusCode.INVALID_ARGUMENT,
        "AMBIGUOUS_LORA")


async def test_roots_persist_across_restarts_and_remove(start_registry, libs: Path):
    root = comfyui_library(libs / "comfy")
    reg = await start_registry(library_allow=[str(libs)], civitai="127.0.0.1:9")
    added = await reg.stub.AddLibraryRoot(registry_pb2.AddLibraryRootRequest(path=str(root), write_back=True))
    assert added.root.id.startswith("r") and added.root.write_back and not added.root.from_flag
    await run_import(reg.stub, root_id=added.root.id, no_identify=True)
    await reg.server.stop(0)

    flag_root = invokeai_library(libs / "invoke")
    again = await start_registry(library_allow=[str(libs)], civitai="127.0.0.1:9", library_root=[str(flag_root)])
    roots = {r.path: r for r in (await again.stub.ListLibraryRoots(registry_pb2.ListLibraryRootsRequest())).roots}
    assert roots[str(root.resolve())].id == added.root.id and roots[str(root.resolve())].model_count == 3
    assert roots[str(flag_root.resolve())].from_flag
    assert len(await models_of(again.stub, root_id=added.root.id)) == 3
    removed = await again.stub.RemoveLibraryRoot(registry_pb2.RemoveLibraryRootRequest(id=added.root.id))
    assert removed.removed_models == 3
    assert await models_of(again.stub, root_id=added.root.id) == {}
    assert (root / "models" / "loras" / "glow.safetensors").exists(), "a root's files are never touched"
    await fails(again.stub.RemoveLibraryRoot(registry_pb2.RemoveLibraryRootRequest(id=added.root.id)),
                grpc.StatusCode.NOT_FOUND, "ROOT_NOT_FOUND")


async def test_root_and_import_errors(lib_reg, libs: Path, tmp_path: Path):
    stub = lib_reg.stub
    add = stub.AddLibraryRoot
    await fails(add(registry_pb2.AddLibraryRootRequest(path="relative/dir")), grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_ROOT_PATH")
    await fails(add(registry_pb2.AddLibraryRootRequest(path=str(libs / "nope"))), grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_ROOT_PATH")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    await fails(add(registry_pb2.AddLibraryRootRequest(path=str(outside))), grpc.StatusCode.PERMISSION_DENIED,
                "ROOT_NOT_ALLOWED")
    os.symlink(outside, libs / "sneaky")
    await fails(add(registry_pb2.AddLibraryRootRequest(path=str(libs / "sneaky"))), grpc.StatusCode.PERMISSION_DENIED,
                "ROOT_NOT_ALLOWED")
    (libs / "lib" / "sub").mkdir(parents=True)
    await add(registry_pb2.AddLibraryRootRequest(path=str(libs / "lib")))
    await fails(add(registry_pb2.AddLibraryRootRequest(path=str(libs / "lib"))), grpc.StatusCode.ALREADY_EXISTS,
                "ROOT_ALREADY_EXISTS")
    await fails(add(registry_pb2.AddLibraryRootRequest(path=str(libs / "lib" / "sub"))),
                grpc.StatusCode.FAILED_PRECONDITION, "ROOT_OVERLAPS")
    await fails(stub.StartImport(registry_pb2.StartImportRequest()), grpc.StatusCode.INVALID_ARGUMENT,
                "MISSING_SELECTOR")
    await fails(stub.StartImport(registry_pb2.StartImportRequest(path=str(libs / "lib"), mode=42)),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IMPORT_MODE")
    await fails(stub.StartImport(registry_pb2.StartImportRequest(root_id="rnope")), grpc.StatusCode.NOT_FOUND,
                "ROOT_NOT_FOUND")
    await fails(stub.GetImport(registry_pb2.GetImportRequest(id="imp_x")), grpc.StatusCode.NOT_FOUND,
                "IMPORT_NOT_FOUND")
    await fails(stub.CancelImport(registry_pb2.CancelImportRequest(id="imp_x")), grpc.StatusCode.NOT_FOUND,
                "IMPORT_NOT_FOUND")


async def test_a_root_around_the_volume_is_refused(start_registry, volumes):
    user_models, _ = volumes
    reg = await start_registry(library_allow=[str(user_models.parent)])
    await fails(reg.stub.AddLibraryRoot(registry_pb2.AddLibraryRootRequest(path=str(user_models.parent))),
                grpc.StatusCode.FAILED_PRECONDITION, "ROOT_OVERLAPS")
    await fails(reg.stub.AddLibraryRoot(registry_pb2.AddLibraryRootRequest(path=str(user_models / "loras"))),
                grpc.StatusCode.FAILED_PRECONDITION, "ROOT_OVERLAPS")


async def test_cancel_and_list(lib_reg, libs: Path):
    root = libs / "big"
    for i in range(40):
        write_safetensors(root / f"f{i:03}.safetensors", "lora", payload_bytes=4096, seed=i)
    started = await lib_reg.stub.StartImport(registry_pb2.StartImportRequest(path=str(root), no_identify=True))
    await fails(lib_reg.stub.StartImport(registry_pb2.StartImportRequest(path=str(root))), grpc.StatusCode.ABORTED,
                "IMPORT_IN_PROGRESS")
    cancelled = await lib_reg.stub.CancelImport(registry_pb2.CancelImportRequest(id=started.job.id))
    assert cancelled.job.id == started.job.id
    final = await wait_job(lib_reg.stub, started.job.id)
    assert final.state == registry_pb2.IMPORT_STATE_CANCELLED and final.finished_at.seconds
    jobs = (await lib_reg.stub.ListImports(registry_pb2.ListImportsRequest())).jobs
    assert jobs[0].id == started.job.id
    again = await run_import(lib_reg.stub, root_id=final.root_id, no_identify=True)  # a new import finishes it
    assert again.state == registry_pb2.IMPORT_STATE_SUCCEEDED
    assert len(await models_of(lib_reg.stub, root_id=final.root_id)) == 40


async def test_watch_streams_states_in_order(lib_reg, libs: Path):
    root = comfyui_library(libs / "comfy")
    started = await lib_reg.stub.StartImport(registry_pb2.StartImportRequest(path=str(root)))
    states = []
    async for update in lib_reg.stub.WatchImport(registry_pb2.WatchImportRequest(id=started.job.id)):
        if not states or states[-1] != update.job.state:
            states.append(update.job.state)
    assert states[-1] == registry_pb2.IMPORT_STATE_SUCCEEDED
    assert states == sorted(states), states


async def test_identification_fills_what_the_user_did_not_edit(start_registry, libs: Path, civitai):
    root = libs / "lib"
    known = write_safetensors(root / "known.safetensors", "lora", payload_bytes=512, seed=1)
    write_safetensors(root / "unknown.safetensors", "lora", payload_bytes=512, seed=2)
    civitai.known[sha(known)] = civitai_pb2.CivitaiModelInfo(
        model_id=77, version_id=88, name="Known Style", version_name="v2", base_model="Illustrious",
        trigger_words=["knwn"], tags=["style"], description="<p>d</p>", recommended_weight=0.7,
        civitai_url="https://civitai.com/models/77?modelVersionId=88")
    reg = await start_registry(library_allow=[str(libs)], civitai=civitai.address)
    job = await run_import(reg.stub, path=str(root))
    assert (job.identified, job.not_on_civitai, job.identify_note) == (1, 1, "")
    models = await models_of(reg.stub)
    k = models["known.safetensors"]
    assert k.display_name == "Known Style" and k.civitai_model_id == 77 and k.civitai_version_name == "v2"
    assert list(k.trigger_words) == ["knwn"] and k.recommended_weight == 0.7 and k.nsfw_level == 2
    assert k.preview.source == "civitai" and k.civitai_lookup.state == model_pb2.CIVITAI_LOOKUP_STATE_FOUND
    u = models["unknown.safetensors"]
    assert u.civitai_lookup.state == model_pb2.CIVITAI_LOOKUP_STATE_NOT_FOUND and u.civitai_lookup.checked_at.seconds

    # A rescan asks about nothing (found, and not-found within a day).
    civitai.asked.clear()
    await run_import(reg.stub, root_id=job.root_id)
    assert civitai.asked == []

    # The user's edits survive a forced refresh; the rest is CivitAI's again.
    await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="known.safetensors", display_name="Mine"), update_mask={"paths": ["display_name"]}))
    civitai.known[sha(known)].base_model = "Illustrious 2"
    refreshed = await reg.stub.RefreshFromCivitai(registry_pb2.RefreshFromCivitaiRequest(
        filenames=["known.safetensors", "unknown.safetensors"], force=True))
    by_name = {m.filename: m for m in refreshed.models}
    assert by_name["known.safetensors"].display_name == "Mine"
    assert by_name["known.safetensors"].base_model == "Illustrious 2"
    assert sorted(civitai.asked[-1]) == sorted([sha(known), models["unknown.safetensors"].sha256])


async def test_refresh_without_the_civitai_service(lib_reg, libs: Path):
    root = libs / "lib"
    write_safetensors(root / "a.safetensors", "lora", payload_bytes=512, seed=1)
    job = await run_import(lib_reg.stub, path=str(root))
    assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED and "unavailable" in job.identify_note
    await fails(lib_reg.stub.RefreshFromCivitai(registry_pb2.RefreshFromCivitaiRequest(filenames=["a.safetensors"])),
                grpc.StatusCode.UNAVAILABLE, "CIVITAI_UNAVAILABLE")
    await fails(lib_reg.stub.RefreshFromCivitai(registry_pb2.RefreshFromCivitaiRequest(filenames=["zz.safetensors"])),
                grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")


@pytest.mark.parametrize("mode", [registry_pb2.IMPORT_MODE_LINK, registry_pb2.IMPORT_MODE_COPY])
async def test_link_or_copy_into_the_volume(lib_reg, libs: Path, mode):
    root = comfyui_library(libs / "comfy")
    job = await run_import(lib_reg.stub, path=str(root), mode=mode, no_identify=True)
    assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED and job.root_id == "" and job.registered == 3
    placed = lib_reg.loras / "models" / "loras" / "pony" / "locon.safetensors"
    assert placed.is_file() and not placed.is_symlink()
    same_inode = placed.stat().st_ino == (root / "models/loras/pony/locon.safetensors").stat().st_ino
    assert same_inode == (mode == registry_pb2.IMPORT_MODE_LINK)
    models = await models_of(lib_reg.stub, root_id="volume")
    assert models["locon.safetensors"].path == str(placed) and models["locon.safetensors"].file_present
    assert (lib_reg.checkpoints / "models" / "checkpoints" / "base.safetensors").is_file()
    assert (await lib_reg.stub.ListLibraryRoots(registry_pb2.ListLibraryRootsRequest())).roots == []
    again = await run_import(lib_reg.stub, path=str(root), mode=mode, no_identify=True)
    assert again.registered == 0 and again.already_known == 3


async def test_delete_keeps_a_root_file_unless_asked(lib_reg, libs: Path):
    root = libs / "lib"
    a = write_safetensors(root / "a.safetensors", "lora", payload_bytes=512, seed=1)
    b = write_safetensors(root / "b.safetensors", "lora", payload_bytes=512, seed=2)
    await run_import(lib_reg.stub, path=str(root), no_identify=True)
    await lib_reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="a.safetensors"))
    assert a.exists()
    await lib_reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="b.safetensors", delete_file=True))
    assert not b.exists()
    assert await models_of(lib_reg.stub) == {}


async def test_set_preview_and_bad_images(lib_reg, libs: Path):
    root = libs / "lib"
    write_safetensors(root / "a.safetensors", "lora", payload_bytes=512, seed=1)
    await run_import(lib_reg.stub, path=str(root), no_identify=True)
    await fails(lib_reg.stub.GetPreview(registry_pb2.GetPreviewRequest(filename="a.safetensors")),
                grpc.StatusCode.NOT_FOUND, "PREVIEW_NOT_FOUND")
    await fails(lib_reg.stub.SetPreview(registry_pb2.SetPreviewRequest(filename="a.safetensors", image=b"junk")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IMAGE")
    await fails(lib_reg.stub.SetPreview(registry_pb2.SetPreviewRequest(filename="a.safetensors",
                                                                       image=b"\0" * (16 * 1024 * 1024 + 1))),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "IMAGE_TOO_LARGE")
    set_ = await lib_reg.stub.SetPreview(registry_pb2.SetPreviewRequest(
        filename="a.safetensors", image=image_bytes("JPEG", (1024, 768)), nsfw_level=4))
    assert (set_.preview.width, set_.preview.height, set_.preview.source, set_.preview.nsfw_level) == (
        512, 384, "upload", 4)
    got = await lib_reg.stub.GetPreview(registry_pb2.GetPreviewRequest(filename="a.safetensors"))
    assert got.preview == set_.preview and got.image[:4] == b"RIFF"


async def test_a_volume_entry_keeps_the_documented_shape(reg):
    """New fields are additions written only when set: a volume entry's JSON has the old keys only."""
    write_safetensors(reg.loras / "x.safetensors", "lora", payload_bytes=256)
    await reg.stub.CreateModel(registry_pb2.CreateModelRequest(model=model_pb2.Model(filename="x.safetensors",
                                                                                     type=LORA)))
    stored = json.loads(reg.index.read_text())["models"]["x.safetensors"]
    assert set(stored) == {"filename", "type", "display_name", "short_name", "source", "trigger_words",
                           "recommended_weight", "base_model", "tags", "description", "file_size_bytes",
                           "added_at", "civitai_model_id", "civitai_version_id", "civitai_url", "sha256",
                           "inspection"}


async def test_write_back_root(start_registry, libs: Path, civitai):
    root = libs / "lib"
    new = write_safetensors(root / "new.safetensors", "lora", payload_bytes=512, seed=1)
    mine = write_safetensors(root / "mine.safetensors", "lora", payload_bytes=512, seed=2)
    write_bytes(root / "mine.json", json.dumps({"my field": "kept", "activation text": "old words"}).encode())
    write_bytes(root / "mine.png", image_bytes("PNG"))
    for path, words in ((new, ["fresh"]), (mine, ["other"])):
        civitai.known[sha(path)] = civitai_pb2.CivitaiModelInfo(model_id=1, version_id=2, name=path.stem,
                                                                trigger_words=words)
    reg = await start_registry(library_allow=[str(libs)], civitai=civitai.address)
    job = await run_import(reg.stub, path=str(root), write_back=True)
    assert job.identified == 2
    written = json.loads((root / "new.json").read_text())
    assert written["activation text"] == "fresh" and written["sd version"] == "SDXL"
    assert (root / "new.preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = json.loads((root / "mine.json").read_text())
    # The A1111 sidecar is the user's: its words won over CivitAI's, and its own fields stay.
    assert kept["my field"] == "kept" and kept["activation text"] == "old words"
    assert not (root / "mine.preview.png").exists(), "a preview already next to the file is never replaced"


async def test_confinement_accepts_root_files_and_refuses_links_out(lib_reg, libs: Path, tmp_path: Path):
    root = libs / "lib"
    lora = write_safetensors(root / "Lora" / "a.safetensors", "lora", payload_bytes=512, seed=1)
    write_safetensors(root / "ckpt" / "base.safetensors", "checkpoint", payload_bytes=1024, seed=2)
    await run_import(lib_reg.stub, path=str(root), no_identify=True)
    # Files inside a root pass the volume's checks: a checkpoint can be active, a LoRA composed.
    active = await lib_reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(
        checkpoint="base.safetensors"))
    assert active.file_present and active.path == str(root.resolve() / "ckpt" / "base.safetensors")
    await fails(lib_reg.stub.RemoveLibraryRoot(registry_pb2.RemoveLibraryRootRequest(id=active.model.root_id)),
                grpc.StatusCode.FAILED_PRECONDITION, "ACTIVE_CHECKPOINT")
    composed = await lib_reg.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="x", loras=[model_pb2.LoraSelection(name="a")]))
    assert composed.loras[0].path == str(root.resolve() / "Lora" / "a.safetensors")
    # The file swapped for a link out of the root: absent, and never read.
    secret = write_safetensors(tmp_path / "secret.safetensors", "lora", payload_bytes=512, seed=3)
    lora.unlink()
    os.symlink(secret, lora)
    got = await lib_reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert not got.model.file_present
    await fails(lib_reg.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="x", loras=[model_pb2.LoraSelection(name="a")])), grpc.StatusCode.FAILED_PRECONDITION,
        "OUTSIDE_VOLUME")
    with recorded_opens() as opened:
        job = await run_import(lib_reg.stub, root_id=got.model.root_id, no_identify=True)
    assert str(secret) not in opened
    assert {s.path: s.reason.split(":")[0] for s in job.skipped} == {"Lora/a.safetensors": "SYMLINK_OUTSIDE_ROOT"}
    assert job.missing == 1


async def test_imports_of_folders_a_client_may_not_name(lib_reg, libs: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    write_safetensors(outside / "x.safetensors", "lora", payload_bytes=256)
    for mode in (registry_pb2.IMPORT_MODE_IN_PLACE, registry_pb2.IMPORT_MODE_LINK, registry_pb2.IMPORT_MODE_COPY):
        await fails(lib_reg.stub.StartImport(registry_pb2.StartImportRequest(path=str(outside), mode=mode)),
                    grpc.StatusCode.PERMISSION_DENIED, "ROOT_NOT_ALLOWED")
    for bad in ("", "x\0y", "/" + "a" * 5000):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lib_reg.stub.AddLibraryRoot(registry_pb2.AddLibraryRootRequest(path=bad))
        assert reason(caught.value) in ("INVALID_ROOT_PATH", "ROOT_NOT_ALLOWED")
    assert (await lib_reg.stub.ListLibraryRoots(registry_pb2.ListLibraryRootsRequest())).roots == []
    assert await models_of(lib_reg.stub) == {}
