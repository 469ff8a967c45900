"""A real registry and inference service on 127.0.0.1 with the tiny models of every type (issue 14), for the
model-type and upscale-parity tests (a plain module: tests/ is not a package)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from inference_helpers import copy_into
from inference_registry import start_registry
from PIL import Image

from inference_svc.app import create_server
from inference_svc.config import InferenceSettings
from modelmanager.v1 import inference_pb2, inference_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import errors

FOLDERS = {
    model_pb2.MODEL_TYPE_CHECKPOINT: "checkpoints",
    model_pb2.MODEL_TYPE_LORA: "loras",
    model_pb2.MODEL_TYPE_EMBEDDING: "embeddings",
    model_pb2.MODEL_TYPE_VAE: "vaes",
    model_pb2.MODEL_TYPE_UPSCALER: "upscalers",
}


@dataclass
class Stack:
    inference: inference_pb2_grpc.InferenceServiceStub
    registry: registry_pb2_grpc.ModelRegistryServiceStub
    user_models: Path

    async def add(self, src: Path, kind: int, *, activate: bool = False, triggers: tuple[str, ...] = ()) -> str:
        """The file copied into its type's folder and registered (the registry checks its type from the tensors)."""
        copy_into(src, self.user_models / FOLDERS[kind])
        await self.registry.CreateModel(registry_pb2.CreateModelRequest(
            model=model_pb2.Model(filename=src.name, type=kind, trigger_words=list(triggers))))
        if activate:
            await self.registry.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=src.name))
        return src.name


async def start_stack(volumes, channel_factory, tmp_path):
    user_models, models = volumes
    for sub in FOLDERS.values():
        (user_models / sub).mkdir(exist_ok=True)
    registry = await start_registry(user_models, models)
    server = await create_server(InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        config_cache_dir=tmp_path / "configs", outputs_dir=tmp_path / "outputs"))
    await server.start()
    stack = Stack(inference_pb2_grpc.InferenceServiceStub(channel_factory(server.address)),
                  registry_pb2_grpc.ModelRegistryServiceStub(channel_factory(registry.address)), user_models)
    return stack, (server, registry)


async def collect(call) -> list:
    return [event async for event in call]


def result_of(events) -> inference_pb2.ImageResult:
    assert events[-1].WhichOneof("event") == "result"
    return events[-1].result


def stages(events) -> list[str]:
    return [e.progress.stage for e in events if e.WhichOneof("event") == "progress"]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def png_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


async def expect_error(coro, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await coro
    assert failure.value.code() == code, failure.value.details()
    info = errors.error_info_of(failure.value)
    assert info is not None and info.reason == reason, (info, failure.value.details())
    return failure.value
