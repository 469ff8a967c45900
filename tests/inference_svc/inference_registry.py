"""A registry for the inference wire tests: the real metadata_svc when it is importable, else a stand-in.

The stand-in implements only what the inference service and these tests call
(CreateModel for files in place, GetModel, Get/SetActiveCheckpoint,
ComposePrompt), following registry.proto's documented behaviour.
"""

from __future__ import annotations

from pathlib import Path

from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, errors

DEFAULT = "illustrious-xl"


class StandInRegistry(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self, user_models: Path, models: Path):
        self.user_models, self.models = user_models, models
        self.entries: dict[str, model_pb2.Model] = {}
        self.active = DEFAULT

    def _active_path(self) -> str:
        if self.active == DEFAULT:
            return str(self.models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors")
        return self.entries[self.active].path

    async def CreateModel(self, request, context):
        model = model_pb2.Model()
        model.CopyFrom(request.model)
        folder = "loras" if model.type == model_pb2.MODEL_TYPE_LORA else "checkpoints"
        path = self.user_models / folder / model.filename
        if not path.is_file():
            raise errors.NotFound(f"no file {path}", reason="FILE_NOT_FOUND")
        model.path = str(path)
        model.file_present = True
        model.recommended_weight = model.recommended_weight or 1.0
        self.entries[model.filename] = model
        return registry_pb2.CreateModelResponse(model=model)

    async def GetModel(self, request, context):
        if request.filename not in self.entries:
            raise errors.NotFound(f"no model {request.filename}", reason="MODEL_NOT_FOUND")
        return registry_pb2.GetModelResponse(model=self.entries[request.filename])

    async def GetActiveCheckpoint(self, request, context):
        return registry_pb2.GetActiveCheckpointResponse(checkpoint=self.active, path=self._active_path())

    async def SetActiveCheckpoint(self, request, context):
        if request.checkpoint != DEFAULT and request.checkpoint not in self.entries:
            raise errors.NotFound(f"no checkpoint {request.checkpoint}", reason="CHECKPOINT_NOT_FOUND")
        self.active = request.checkpoint
        return registry_pb2.SetActiveCheckpointResponse(checkpoint=self.active, path=self._active_path())

    async def ComposePrompt(self, request, context):
        injected: list[str] = []
        resolved = []
        for selection in request.loras:
            name = selection.name.lower()
            found = next(
                (m for m in self.entries.values() if m.type == model_pb2.MODEL_TYPE_LORA
                 and name in (m.filename.lower(), m.display_name.lower(), m.short_name.lower())),
                None,
            )
            if found is None:
                raise errors.NotFound(f"no LoRA {selection.name!r}", reason="LORA_NOT_FOUND",
                                      metadata={"lora": selection.name})
            weight = selection.weight if selection.HasField("weight") else found.recommended_weight
            resolved.append(model_pb2.ResolvedLora(filename=found.filename, path=found.path, weight=weight,
                                                   trigger_words=list(found.trigger_words)))
            for word in found.trigger_words:
                if word.lower() not in request.prompt.lower() and word.lower() not in (w.lower() for w in injected):
                    injected.append(word)
        prompt = ", ".join([*injected, request.prompt]) if injected else request.prompt
        return registry_pb2.ComposePromptResponse(prompt=prompt, injected_trigger_words=injected, loras=resolved)


async def start_registry(user_models: Path, models: Path) -> GrpcServer:
    try:
        from metadata_svc.app import create_server
        from metadata_svc.config import RegistrySettings
    except ImportError:
        server = GrpcServer(
            name="registry-stand-in",
            listen="127.0.0.1:0",
            bindings=[
                ServiceBinding.of(
                    registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"],
                    StandInRegistry(user_models, models),
                    registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server,
                )
            ],
            error_domain="registry.modelmanager",
        )
    else:
        server = await create_server(
            RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)
        )
    await server.start()
    return server
