"""A hostile client against a real registry: unbounded fields, huge pages, symlinks out of the volume,
server paths in error messages. Real servers on 127.0.0.1, real files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from registry_helpers import CHECKPOINT, LORA, create_request, reason, write_checkpoint, write_lora

from civitai_svc.installer import Installer
from inference_svc.errors import OutsideModelRoots
from inference_svc.registry_client import RegistryClient
from metadata_svc import limits
from metadata_svc.listing import PAGE_BYTE_BUDGET
from metadata_svc.migration import BUILTIN_LORAS
from modelmanager.v1 import civitai_pb2, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, errors
from service_kit.files import write_atomic

GRPC_DEFAULT_LIMIT = 4 * 1024 * 1024


async def refused(call, code: grpc.StatusCode, expected: str) -> tuple[grpc.aio.AioRpcError, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert reason(caught.value) == expected, caught.value.details()
    return caught.value, dict(errors.error_info_of(caught.value).metadata)


def update(filename: str, paths: list[str], **fields) -> registry_pb2.UpdateModelRequest:
    request = registry_pb2.UpdateModelRequest(model=model_pb2.Model(filename=filename, **fields))
    request.update_mask.paths.extend(paths)
    return request


async def with_lora(reg, name: str = "a.safetensors") -> str:
    write_lora(reg.loras / name)
    await reg.stub.CreateModel(create_request(name, LORA))
    return name


# ---------------------------------------------------------------- 1. bounded fields

async def test_update_refuses_an_over_long_description_and_the_index_stays_small(reg):
    name = await with_lora(reg)
    limit = limits.MAX_CHARS["description"]
    _, meta = await refused(reg.stub.UpdateModel(update(name, ["description"], description="x" * (limit + 1))),
                            grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG")
    assert meta == {"field": "description", "limit": str(limit), "length": str(limit + 1)}
    assert reg.index.stat().st_size < 64 * 1024
    # Exactly at the limit is fine.
    resp = await reg.stub.UpdateModel(update(name, ["description"], description="y" * limit))
    assert len(resp.model.description) == limit


async def test_update_refuses_50000_trigger_words_and_one_over_long_word(reg):
    name = await with_lora(reg)
    words = [f"w{i}" for i in range(50_000)]
    _, meta = await refused(reg.stub.UpdateModel(update(name, ["trigger_words"], trigger_words=words)),
                            grpc.StatusCode.INVALID_ARGUMENT, "TOO_MANY_ITEMS")
    assert meta["field"] == "trigger_words" and meta["limit"] == str(limits.MAX_ITEMS["trigger_words"])
    long_word = "z" * (limits.MAX_ITEM_CHARS["trigger_words"] + 1)
    _, meta = await refused(reg.stub.UpdateModel(update(name, [], trigger_words=["ok", long_word])),
                            grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG")
    assert meta["field"] == "trigger_words"
    assert (await reg.stub.GetModel(registry_pb2.GetModelRequest(filename=name))).model.trigger_words == []


OVER_LIMIT = {
    **{name: {name: "q" * (limit + 1)} for name, limit in limits.MAX_CHARS.items()},
    "tags": {"tags": [f"t{i}" for i in range(limits.MAX_ITEMS["tags"] + 1)]},
    "tag_length": {"tags": ["t" * (limits.MAX_ITEM_CHARS["tags"] + 1)]},
    "trigger_words": {"trigger_words": [f"w{i}" for i in range(limits.MAX_ITEMS["trigger_words"] + 1)]},
}


@pytest.mark.parametrize("case", sorted(OVER_LIMIT))
async def test_create_refuses_every_over_limit_field_and_registers_nothing(reg, case):
    write_lora(reg.loras / "a.safetensors")
    fields = OVER_LIMIT[case]
    _, meta = await refused(reg.stub.CreateModel(create_request("a.safetensors", LORA, **fields)),
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "TOO_MANY_ITEMS" if case in ("tags", "trigger_words") else "FIELD_TOO_LONG")
    assert meta["field"] == next(iter(fields))
    listed = await reg.stub.ListModels(registry_pb2.ListModelsRequest())
    assert listed.total_size == 0


async def test_list_refuses_an_over_long_query(reg):
    # Its terms would ride along in every page token of the listing.
    _, meta = await refused(reg.stub.ListModels(registry_pb2.ListModelsRequest(query="q " * limits.MAX_QUERY_CHARS)),
                            grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG")
    assert meta["field"] == "query"


async def test_upload_refuses_an_over_long_header_before_reading_a_chunk(reg):
    chunks_read = 0

    async def stream():
        nonlocal chunks_read
        yield registry_pb2.UploadModelRequest(header=registry_pb2.UploadModelHeader(
            filename="u.safetensors", type=LORA, description="d" * (limits.MAX_CHARS["description"] + 1)))
        for _ in range(3):
            chunks_read += 1
            yield registry_pb2.UploadModelRequest(chunk=b"\0" * 1024)

    _, meta = await refused(reg.stub.UploadModel(stream()), grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG")
    assert meta["field"] == "description"
    assert not any(reg.loras.iterdir())


async def test_a_civitai_install_cuts_over_long_metadata_instead_of_failing(reg):
    write_lora(reg.loras / "civ.safetensors")
    info = civitai_pb2.CivitaiModelInfo(
        model_id=7, version_id=8, name="n" * 1000, model_type=LORA, base_model="Illustrious",
        description="<p>" + "long " * 50_000 + "</p>", trigger_words=[f"w{i}" for i in range(1000)] + ["x" * 600],
        tags=["t" * 200, "anime"],
    )
    model = Installer(reg.user_models, registry=None, downloader=None).entry(reg.loras / "civ.safetensors", info, "")
    created = (await reg.stub.CreateModel(registry_pb2.CreateModelRequest(model=model))).model
    assert len(created.description) == limits.MAX_CHARS["description"]
    assert len(created.display_name) == limits.MAX_CHARS["display_name"]
    assert list(created.trigger_words) == [f"w{i}" for i in range(limits.MAX_ITEMS["trigger_words"])]
    assert list(created.tags) == ["anime"]


# ---------------------------------------------------------------- 2. pages under the message limit

def write_index(user_models: Path, entries: dict[str, dict]) -> None:
    models = {name: {"filename": name, "type": "lora", **fields} for name, fields in entries.items()}
    write_atomic(user_models / ".metadata.json",
                 json.dumps({"version": 1, "active_checkpoint": "illustrious-xl", "models": models}).encode())


async def list_all(address: str, **request) -> list[registry_pb2.ListModelsResponse]:
    """Every page, through a plain channel with gRPC's default 4 MiB receive limit."""
    pages = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
        token = ""
        while True:
            page = await stub.ListModels(registry_pb2.ListModelsRequest(page_token=token, **request))
            pages.append(page)
            token = page.next_page_token
            if not token:
                return pages


async def test_pages_of_many_large_entries_are_cut_by_bytes(start_registry, volumes):
    user_models, _ = volumes
    # Each within the limits (about 190 kB of UTF-8), together far over 4 MiB.
    text = "€" * (limits.MAX_CHARS["description"] - 1)
    write_index(user_models, {f"m{i:03}.safetensors": {"description": text} for i in range(80)})
    reg = await start_registry()
    pages = await list_all(reg.server.address, page_size=1000)
    assert len(pages) > 1
    assert all(p.ByteSize() <= PAGE_BYTE_BUDGET for p in pages)
    names = [m.filename for p in pages for m in p.models]
    assert names == [f"m{i:03}.safetensors" for i in range(80)]
    assert {p.total_size for p in pages} == {80}


async def test_an_index_written_before_the_limits_is_listed_and_bounded(start_registry, volumes):
    user_models, _ = volumes
    write_index(user_models, {
        "huge.safetensors": {"description": "x" * (10 * 1024 * 1024), "trigger_words": [f"w{i}" for i in range(50_000)],
                             "display_name": "d" * 5000, "tags": ["t"] * 3 + ["long" * 100]},
        "big.safetensors": {"description": "y" * (5 * 1024 * 1024)},
        "small.safetensors": {"description": "fine"},
    })
    reg = await start_registry()
    pages = await list_all(reg.server.address)
    models = {m.filename: m for p in pages for m in p.models}
    assert set(models) == {"huge.safetensors", "big.safetensors", "small.safetensors"}
    huge = models["huge.safetensors"]
    assert len(huge.description) == limits.MAX_CHARS["description"]
    assert len(huge.trigger_words) == limits.MAX_ITEMS["trigger_words"]
    assert list(huge.tags) == ["t", "t", "t"]
    assert models["small.safetensors"].description == "fine"
    # The next write persists the bounded entries: the index shrinks back.
    await reg.stub.UpdateModel(update("small.safetensors", ["description"], description="still fine"))
    assert reg.index.stat().st_size < 1024 * 1024


# ---------------------------------------------------------------- 3. symlinks out of the volume

@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    write_checkpoint(folder / "secret-ckpt.safetensors")
    write_lora(folder / "secret-lora.safetensors")
    return folder


async def test_rescan_skips_links_out_of_the_volume_and_keeps_links_inside(reg, outside):
    reg.checkpoints.mkdir(exist_ok=True)
    (reg.checkpoints / "x.safetensors").symlink_to(outside / "secret-ckpt.safetensors")
    (reg.loras / "y.safetensors").symlink_to(outside / "secret-lora.safetensors")
    builtin = str(BUILTIN_LORAS[0]["filename"])  # registered from its known metadata, without a check
    (reg.loras / builtin).symlink_to(outside / "secret-lora.safetensors")
    write_lora(reg.user_models / "store" / "kept.safetensors")
    (reg.loras / "inside.safetensors").symlink_to(reg.user_models / "store" / "kept.safetensors")
    resp = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert [m.filename for m in resp.added] == ["inside.safetensors"]
    skipped = {s.path: s.reason for s in resp.skipped}
    assert set(skipped) == {"checkpoints/x.safetensors", "loras/y.safetensors", f"loras/{builtin}"}
    assert all(r.startswith("OUTSIDE_VOLUME") for r in skipped.values())


async def test_a_linked_folder_out_of_the_volume_is_outside_too(reg, outside):
    reg.loras.rmdir()
    reg.loras.symlink_to(outside)
    resp = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert list(resp.added) == []
    assert {s.path: s.reason[:14] for s in resp.skipped} == {
        "loras/secret-lora.safetensors": "OUTSIDE_VOLUME", "loras/secret-ckpt.safetensors": "OUTSIDE_VOLUME"}


async def test_create_refuses_a_link_out_of_the_volume(reg, outside):
    (reg.loras / "y.safetensors").symlink_to(outside / "secret-lora.safetensors")
    err, _ = await refused(reg.stub.CreateModel(create_request("y.safetensors", LORA)),
                           grpc.StatusCode.FAILED_PRECONDITION, "OUTSIDE_VOLUME")
    assert str(outside) not in err.details() and str(reg.user_models) not in err.details()


async def test_an_entry_whose_file_became_an_outside_link_is_never_read_nor_handed_out(reg, outside):
    write_checkpoint(reg.checkpoints / "c.safetensors")
    await reg.stub.CreateModel(create_request("c.safetensors", CHECKPOINT))
    name = await with_lora(reg, "l.safetensors")
    (reg.checkpoints / "c.safetensors").unlink()
    (reg.checkpoints / "c.safetensors").symlink_to(outside / "secret-ckpt.safetensors")
    (reg.loras / name).unlink()
    (reg.loras / name).symlink_to(outside / "secret-lora.safetensors")
    await refused(reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint="c.safetensors")),
                  grpc.StatusCode.FAILED_PRECONDITION, "OUTSIDE_VOLUME")
    await refused(reg.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="p", loras=[model_pb2.LoraSelection(name=name)])), grpc.StatusCode.FAILED_PRECONDITION, "OUTSIDE_VOLUME")
    listed = await reg.stub.ListModels(registry_pb2.ListModelsRequest())
    assert [m.file_present for m in listed.models] == [False, False]
    rescan = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert sorted(rescan.missing_filenames) == ["c.safetensors", name]


async def test_the_hasher_does_not_read_an_outside_link(start_registry, volumes, outside):
    user_models, _ = volumes
    (user_models / "loras").mkdir()
    (user_models / "loras" / "a-link.safetensors").symlink_to(outside / "secret-lora.safetensors")
    write_lora(user_models / "loras" / "b-real.safetensors")
    write_index(user_models, {"a-link.safetensors": {}, "b-real.safetensors": {}})  # no sha256 yet
    reg = await start_registry()

    async def sha(name: str) -> str:
        return (await reg.stub.GetModel(registry_pb2.GetModelRequest(filename=name))).model.sha256

    for _ in range(2000):  # the hasher goes in index order: once b is hashed, a was passed over
        if await sha("b-real.safetensors"):
            break
        await asyncio.sleep(0.01)
    assert await sha("b-real.safetensors")
    assert await sha("a-link.safetensors") == ""


# ---------------------------------------------------------------- 4. no server paths in errors

async def test_errors_name_files_relative_to_the_volume(reg):
    root = str(reg.user_models)
    err, meta = await refused(reg.stub.CreateModel(create_request("nope.safetensors", LORA)),
                              grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")
    assert "loras/nope.safetensors" in err.details() and root not in err.details()
    assert meta["path"] == "loras/nope.safetensors"

    name = await with_lora(reg)
    (reg.loras / name).unlink()
    err, meta = await refused(reg.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="p", loras=[model_pb2.LoraSelection(name=name)])), grpc.StatusCode.FAILED_PRECONDITION, "FILE_MISSING")
    assert root not in err.details() and meta["path"] == f"loras/{name}"

    write_checkpoint(reg.checkpoints / "c.safetensors")
    await reg.stub.CreateModel(create_request("c.safetensors", CHECKPOINT))
    (reg.checkpoints / "c.safetensors").unlink()
    err, meta = await refused(reg.stub.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(
        checkpoint="c.safetensors")), grpc.StatusCode.FAILED_PRECONDITION, "FILE_MISSING")
    assert root not in err.details() and root not in str(meta)

    (reg.loras / "junk.safetensors").write_bytes(b"not a model at all")
    err, _ = await refused(reg.stub.CreateModel(create_request("junk.safetensors", LORA)),
                           grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SAFETENSORS")
    assert root not in err.details()
    rescan = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert [s.path for s in rescan.skipped] == ["loras/junk.safetensors"]
    assert root not in rescan.skipped[0].reason


async def test_an_index_write_failure_does_not_name_the_server_path(reg):
    name = await with_lora(reg)
    reg.index.unlink()
    reg.index.mkdir()  # the rename over the index fails
    (reg.index / "blocker").write_text("x")
    err, meta = await refused(reg.stub.UpdateModel(update(name, ["description"], description="new")),
                              grpc.StatusCode.UNAVAILABLE, "INDEX_WRITE_FAILED")
    assert str(reg.user_models) not in err.details() and meta["path"] == ".metadata.json"


# ---------------------------------------------------------------- 3b. the inference service checks again

class HostileRegistry(registry_pb2_grpc.ModelRegistryServiceServicer):
    """Hands out paths outside the volumes (as a compromised or buggy registry might)."""

    def __init__(self, inside: Path, outside: Path) -> None:
        self.inside, self.outside = inside, outside

    async def GetActiveCheckpoint(self, request, context):
        return registry_pb2.GetActiveCheckpointResponse(checkpoint="c.safetensors", path=str(self.outside))

    async def GetModel(self, request, context):
        path = self.inside if request.filename == "ok.safetensors" else self.outside
        return registry_pb2.GetModelResponse(model=model_pb2.Model(
            filename=request.filename, type=CHECKPOINT, path=str(path)))

    async def ComposePrompt(self, request, context):
        return registry_pb2.ComposePromptResponse(prompt=request.prompt, loras=[
            model_pb2.ResolvedLora(filename="l.safetensors", path=str(self.outside))])

    async def ListLibraryRoots(self, request, context):  # asked before a path outside the volumes is refused
        return registry_pb2.ListLibraryRootsResponse()


async def test_inference_refuses_registry_paths_that_leave_the_volumes(volumes, outside):
    user_models, models = volumes
    checkpoints = user_models / "checkpoints"
    write_checkpoint(checkpoints / "real.safetensors")
    (checkpoints / "ok.safetensors").symlink_to(checkpoints / "real.safetensors")  # a link inside: fine
    (checkpoints / "link.safetensors").symlink_to(outside / "secret-ckpt.safetensors")
    servicer = HostileRegistry(checkpoints / "ok.safetensors", checkpoints / "link.safetensors")
    server = GrpcServer(name="hostile-registry", listen="127.0.0.1:0", bindings=[ServiceBinding.of(
        registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"], servicer,
        registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server)], error_domain="registry.modelmanager")
    await server.start()
    client = RegistryClient(server.address, default_checkpoint_path=models / "illustrious-xl" / "x.safetensors",
                            model_roots=(user_models, models))
    try:
        with pytest.raises(OutsideModelRoots) as caught:
            await client.checkpoint()
        assert str(outside) not in caught.value.message
        with pytest.raises(OutsideModelRoots):
            await client.checkpoint("link.safetensors")
        with pytest.raises(OutsideModelRoots):
            await client.compose_prompt("p", [model_pb2.LoraSelection(name="l")])
        resolved = await client.checkpoint("ok.safetensors")
        assert resolved.path == (checkpoints / "real.safetensors").resolve()
        # A plain path outside, no link involved, is refused too.
        servicer.outside = outside / "secret-ckpt.safetensors"
        with pytest.raises(OutsideModelRoots):
            await client.checkpoint()
    finally:
        await client.close()
        await server.stop(0)
