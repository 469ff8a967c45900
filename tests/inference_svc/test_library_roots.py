"""LoRAs and checkpoints in the registry's library roots load; every other path outside the volumes is refused.

The library roots come from the registry's ListLibraryRoots, never from a client. A registry stand-in
(a real gRPC servicer on 127.0.0.1) hands out paths and roots as a registry that indexes a library in
place would, so each case is exact; the inference service and the tiny models are real.
"""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pytest
from inference_helpers import SIZE, copy_into
from PIL import Image

from inference_svc.app import create_server
from inference_svc.config import InferenceSettings
from inference_svc.errors import OutsideModelRoots
from inference_svc.registry_client import RegistryClient
from modelmanager.v1 import inference_pb2, inference_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, errors


class LibraryRegistry(registry_pb2_grpc.ModelRegistryServiceServicer):
    """Entries by name -> path (anywhere), the library roots it lists, and how often they were asked for."""

    def __init__(self) -> None:
        self.address = ""
        self.roots: list[str] = []
        self.entries: dict[str, Path] = {}
        self.active = ""
        self.roots_asked = 0

    async def ListLibraryRoots(self, request, context):
        self.roots_asked += 1
        return registry_pb2.ListLibraryRootsResponse(
            roots=[registry_pb2.LibraryRoot(id=f"r{i}", path=path) for i, path in enumerate(self.roots)])

    async def GetActiveCheckpoint(self, request, context):
        return registry_pb2.GetActiveCheckpointResponse(checkpoint=self.active, path=str(self.entries[self.active]))

    async def GetModel(self, request, context):
        return registry_pb2.GetModelResponse(model=model_pb2.Model(
            filename=request.filename, type=model_pb2.MODEL_TYPE_CHECKPOINT, path=str(self.entries[request.filename])))

    async def ListModels(self, request, context):
        # Generate asks for the embeddings (issue 14); this registry has none.
        return registry_pb2.ListModelsResponse()

    async def ComposePrompt(self, request, context):
        loras = [model_pb2.ResolvedLora(filename=s.name, path=str(self.entries[s.name]),
                                        weight=s.weight if s.HasField("weight") else 1.0) for s in request.loras]
        return registry_pb2.ComposePromptResponse(prompt=request.prompt, loras=loras)


@pytest.fixture
async def registry():
    servicer = LibraryRegistry()
    server = GrpcServer(name="library-registry", listen="127.0.0.1:0", bindings=[ServiceBinding.of(
        registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"], servicer,
        registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server)], error_domain="registry.modelmanager")
    await server.start()
    servicer.address = server.address
    yield servicer
    await server.stop(0)


@pytest.fixture
def library(tmp_path, volumes) -> Path:
    """A library root beside the volumes (as an A1111 install's models/ folder would be)."""
    root = tmp_path / "a1111" / "models"
    (root / "Lora" / "styles").mkdir(parents=True)
    (root / "Stable-diffusion").mkdir()
    return root


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


@pytest.fixture
async def client(registry, volumes):
    user_models, models = volumes
    # A TTL no test outlives: every re-ask below is the one a miss makes, never the clock's.
    made = RegistryClient(registry.address, default_checkpoint_path=models / "illustrious-xl" / "x.safetensors",
                          model_roots=(user_models, models), library_roots_ttl_s=3600)
    yield made
    await made.close()


async def lora_path(client: RegistryClient, name: str) -> Path:
    reply = await client.compose_prompt("p", [model_pb2.LoraSelection(name=name)])
    return Path(reply.loras[0].path)


async def test_a_lora_and_a_checkpoint_in_a_library_root_are_loadable(registry, client, library, tiny):
    registry.roots = [str(library)]
    registry.entries = {"kohya.safetensors": copy_into(tiny.lora_kohya, library / "Lora" / "styles"),
                        "tiny-a.safetensors": copy_into(tiny.checkpoint_a, library / "Stable-diffusion")}
    registry.active = "tiny-a.safetensors"
    assert await lora_path(client, "kohya.safetensors") == library / "Lora" / "styles" / "kohya.safetensors"
    assert (await client.checkpoint()).path == library / "Stable-diffusion" / "tiny-a.safetensors"
    assert (await client.checkpoint("tiny-a.safetensors")).path == library / "Stable-diffusion" / "tiny-a.safetensors"
    assert registry.roots_asked == 1  # cached: one Generate with a checkpoint and LoRAs asks once


async def test_a_file_outside_every_root_is_refused_after_asking_again(registry, client, library, outside, tiny):
    registry.roots = [str(library)]
    registry.entries = {"stray.safetensors": copy_into(tiny.lora_kohya, outside)}
    with pytest.raises(OutsideModelRoots) as caught:
        await lora_path(client, "stray.safetensors")
    assert caught.value.reason == "OUTSIDE_MODEL_ROOTS" and caught.value.metadata == {"model": "LoRA stray.safetensors"}
    assert str(outside) not in caught.value.message and str(library) not in caught.value.message
    assert registry.roots_asked == 1  # the first ask was fresh: no second one
    with pytest.raises(OutsideModelRoots):
        await lora_path(client, "stray.safetensors")
    assert registry.roots_asked == 2  # a miss on the cache asks once more before refusing


async def test_a_root_added_after_the_cache_was_filled_is_honoured_on_the_first_miss(registry, client, library,
                                                                                      tmp_path, tiny):
    registry.roots = [str(library)]
    registry.entries = {"kohya.safetensors": copy_into(tiny.lora_kohya, library / "Lora")}
    await lora_path(client, "kohya.safetensors")
    comfy = tmp_path / "ComfyUI" / "models" / "loras"
    registry.roots.append(str(comfy.parent.parent))
    registry.entries["peft.safetensors"] = copy_into(tiny.lora_peft, comfy)
    assert await lora_path(client, "peft.safetensors") == comfy / "peft.safetensors"
    assert registry.roots_asked == 2
    registry.roots.clear()  # removed from the registry: within the TTL the cached roots still hold
    assert await lora_path(client, "peft.safetensors") == comfy / "peft.safetensors"


async def test_the_roots_cache_expires(registry, volumes, library, tiny):
    user_models, models = volumes
    client = RegistryClient(registry.address, default_checkpoint_path=models / "x.safetensors",
                            model_roots=(user_models, models), library_roots_ttl_s=0)
    registry.roots = [str(library)]
    registry.entries = {"kohya.safetensors": copy_into(tiny.lora_kohya, library / "Lora")}
    try:
        await lora_path(client, "kohya.safetensors")
        await lora_path(client, "kohya.safetensors")
        assert registry.roots_asked == 2
        registry.roots.clear()  # the registry no longer knows the root: its files stop loading
        with pytest.raises(OutsideModelRoots):
            await lora_path(client, "kohya.safetensors")
    finally:
        await client.close()


async def test_a_symlink_inside_a_root_that_leads_out_is_refused(registry, client, library, outside, tiny):
    registry.roots = [str(library)]
    secret = copy_into(tiny.lora_kohya, outside)
    (library / "Lora" / "link.safetensors").symlink_to(secret)
    (library / "Lora" / "linked-folder").symlink_to(outside, target_is_directory=True)
    registry.entries = {"link.safetensors": library / "Lora" / "link.safetensors",
                        "via-folder.safetensors": library / "Lora" / "linked-folder" / secret.name,
                        "dotdot.safetensors": library / "Lora" / ".." / ".." / ".." / "elsewhere" / secret.name}
    for name in registry.entries:
        with pytest.raises(OutsideModelRoots):
            await lora_path(client, name)


async def test_a_link_inside_a_root_to_another_file_in_it_loads_its_real_path(registry, client, library, tiny):
    registry.roots = [str(library)]
    real = copy_into(tiny.lora_kohya, library / "Lora")
    (library / "Lora" / "alias.safetensors").symlink_to(real)
    registry.entries = {"alias.safetensors": library / "Lora" / "alias.safetensors"}
    assert await lora_path(client, "alias.safetensors") == real


async def test_a_root_reached_through_a_link_is_still_the_root(registry, client, library, tmp_path, tiny):
    (tmp_path / "mnt").symlink_to(library, target_is_directory=True)
    registry.roots = [str(tmp_path / "mnt")]
    registry.entries = {"kohya.safetensors": copy_into(tiny.lora_kohya, library / "Lora")}
    assert await lora_path(client, "kohya.safetensors") == library / "Lora" / "kohya.safetensors"


@pytest.mark.parametrize("root", ["", ".", "elsewhere", "../.."])
async def test_a_root_that_is_not_an_absolute_path_is_no_root(registry, client, outside, tiny, monkeypatch, root):
    # A relative root would resolve against the service's working directory: here, the folder of the file.
    monkeypatch.chdir(outside.parent if root == "elsewhere" else outside)
    registry.roots = [root]
    registry.entries = {"stray.safetensors": copy_into(tiny.lora_kohya, outside)}
    with pytest.raises(OutsideModelRoots):
        await lora_path(client, "stray.safetensors")


async def test_a_registry_that_cannot_list_its_roots_loads_nothing_outside_the_volumes(volumes, outside, tiny):
    class Broken(LibraryRegistry):
        async def ListLibraryRoots(self, request, context):
            raise errors.Unavailable("the index could not be read", reason="INDEX_READ_FAILED")

    servicer = Broken()
    servicer.entries = {"stray.safetensors": copy_into(tiny.lora_kohya, outside)}
    server = GrpcServer(name="broken-registry", listen="127.0.0.1:0", bindings=[ServiceBinding.of(
        registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"], servicer,
        registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server)], error_domain="registry.modelmanager")
    await server.start()
    user_models, models = volumes
    client = RegistryClient(server.address, default_checkpoint_path=models / "x.safetensors",
                            model_roots=(user_models, models))
    try:
        with pytest.raises(errors.Unavailable) as caught:  # the registry's own answer, passed on
            await lora_path(client, "stray.safetensors")
        assert caught.value.reason == "INDEX_READ_FAILED"
    finally:
        await client.close()
        await server.stop(0)


# ---------------------------------------------------------------- through the wire: Generate


@pytest.fixture
async def inference(registry, volumes, channel_factory, tmp_path):
    user_models, models = volumes
    server = await create_server(InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        config_cache_dir=tmp_path / "configs"))
    await server.start()
    yield inference_pb2_grpc.InferenceServiceStub(channel_factory(server.address))
    await server.stop(0)


def generate(**fields) -> inference_pb2.GenerateRequest:
    defaults = {"prompt": "a photo of a cat", "width": SIZE, "height": SIZE, "steps": 2, "guidance_scale": 5.0, "seed": 7}
    return inference_pb2.GenerateRequest(**{**defaults, **fields})


async def result(call) -> inference_pb2.ImageResult:
    events = [event async for event in call]
    assert events[-1].WhichOneof("event") == "result"
    return events[-1].result


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


async def test_generate_applies_a_lora_from_a_library_root_and_refuses_one_outside(registry, inference, library,
                                                                                   outside, tiny):
    registry.roots = [str(library)]
    registry.entries = {"tiny-a.safetensors": copy_into(tiny.checkpoint_a, library / "Stable-diffusion"),
                        "kohya.safetensors": copy_into(tiny.lora_kohya, library / "Lora" / "styles"),
                        "stray.safetensors": copy_into(tiny.lora_peft, outside)}
    (library / "Lora" / "link.safetensors").symlink_to(outside / "peft.safetensors")
    registry.entries["link.safetensors"] = library / "Lora" / "link.safetensors"
    registry.active = "tiny-a.safetensors"
    bare = await result(inference.Generate(generate()))
    styled = await result(inference.Generate(generate(loras=[model_pb2.LoraSelection(name="kohya.safetensors")])))
    assert np.abs(pixels(styled.png) - pixels(bare.png)).mean() > 1.0
    assert [x.filename for x in styled.loras] == ["kohya.safetensors"]
    for name in ("stray.safetensors", "link.safetensors"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await result(inference.Generate(generate(loras=[model_pb2.LoraSelection(name=name)])))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = errors.error_info_of(caught.value)
        assert info is not None and info.reason == "OUTSIDE_MODEL_ROOTS", caught.value.details()
        assert str(outside) not in caught.value.details() and str(library) not in caught.value.details()


# ---------------------------------------------------------------- end to end: the real registry's library roots


async def test_a_lora_imported_in_place_by_the_real_registry_applies_in_generate(library, volumes, channel_factory,
                                                                                 tmp_path, tiny):
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings

    user_models, models = volumes
    lora = copy_into(tiny.lora_kohya, library / "Lora" / "styles")
    checkpoint = copy_into(tiny.checkpoint_a, library / "Stable-diffusion")
    registry = await create_registry(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models,
                                                      models_dir=models, library_root=[str(library)]))
    await registry.start()
    server = await create_server(InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        config_cache_dir=tmp_path / "configs"))
    await server.start()
    try:
        reg = registry_pb2_grpc.ModelRegistryServiceStub(channel_factory(registry.address))
        inference = inference_pb2_grpc.InferenceServiceStub(channel_factory(server.address))
        (root,) = (await reg.ListLibraryRoots(registry_pb2.ListLibraryRootsRequest())).roots
        job = (await reg.StartImport(registry_pb2.StartImportRequest(root_id=root.id, no_identify=True))).job
        async for update in reg.WatchImport(registry_pb2.WatchImportRequest(id=job.id), timeout=120):
            job = update.job
        assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED, job.error
        entry = (await reg.GetModel(registry_pb2.GetModelRequest(filename=lora.name))).model
        assert Path(entry.path) == lora.resolve()  # indexed where it is, not copied into the volume
        await reg.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=checkpoint.name))
        bare = await result(inference.Generate(generate()))
        styled = await result(inference.Generate(generate(loras=[model_pb2.LoraSelection(name=lora.name)])))
        assert np.abs(pixels(styled.png) - pixels(bare.png)).mean() > 1.0
        assert [x.filename for x in styled.loras] == [lora.name]
        assert not any((user_models / "loras").glob("*"))
    finally:
        await server.stop(0)
        await registry.stop(0)
