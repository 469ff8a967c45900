"""Recording gRPC services for the gateway's own behaviour (things the real services cannot show).

Real grpc.aio servers (service_kit.GrpcServer on port 0) whose handlers raise
a chosen error, record the metadata they saw, stream until cancelled, or count
uploaded bytes; used for the error table, request-id propagation, disconnect
semantics and the flat-memory upload. Everything else is tested against the
real services.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import grpc

from modelmanager.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    model_pb2,
    registry_pb2,
    registry_pb2_grpc,
)
from service_kit import GrpcServer, ServiceBinding
from service_kit.errors import ServiceError


class RecordingRegistry(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.raise_error: ServiceError | None = None
        self.upload_bytes = 0
        self.upload_chunks = 0
        self.upload_header: registry_pb2.UploadModelHeader | None = None
        self.upload_cancelled = asyncio.Event()
        self.upload_ended = asyncio.Event()

    async def ListModels(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if self.raise_error is not None:
            raise self.raise_error
        return registry_pb2.ListModelsResponse(
            models=[model_pb2.Model(filename="a.safetensors", type=model_pb2.MODEL_TYPE_LORA)], total_size=1
        )

    async def UploadModel(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        digest = hashlib.sha256()
        context.add_done_callback(lambda ctx: ctx.cancelled() and self.upload_cancelled.set())
        try:
            async for req in request_iterator:
                if req.WhichOneof("payload") == "header":
                    self.upload_header = req.header
                else:
                    self.upload_bytes += len(req.chunk)
                    self.upload_chunks += 1
                    digest.update(req.chunk)
        except asyncio.CancelledError:
            self.upload_cancelled.set()
            raise
        finally:
            self.upload_ended.set()
        assert self.upload_header is not None
        return registry_pb2.UploadModelResponse(
            model=model_pb2.Model(filename=self.upload_header.filename, type=self.upload_header.type,
                                  file_size_bytes=self.upload_bytes, sha256=digest.hexdigest())
        )


class EndlessInference(inference_pb2_grpc.InferenceServiceServicer):
    """Generate streams progress every `interval` seconds until the caller cancels."""

    def __init__(self, interval: float = 0.02, steps: int | None = None, fail_after: int | None = None) -> None:
        self.interval = interval
        self.steps = steps
        self.fail_after = fail_after
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.finished = asyncio.Event()

    async def Generate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.started.set()
        try:
            yield inference_pb2.GenerateResponse(queued=inference_pb2.JobQueued(job_id="j1", position=0))
            step = 0
            while self.steps is None or step < self.steps:
                step += 1
                if self.fail_after is not None and step > self.fail_after:
                    from service_kit.errors import ResourceExhausted

                    raise ResourceExhausted("out of memory on the device", reason="OUT_OF_MEMORY")
                await asyncio.sleep(self.interval)
                yield inference_pb2.GenerateResponse(
                    progress=inference_pb2.JobProgress(job_id="j1", stage="denoising", step=step,
                                                       total_steps=self.steps or 0))
            yield inference_pb2.GenerateResponse(
                result=inference_pb2.ImageResult(job_id="j1", png=b"\x89PNG fake", width=8, height=8, seed=1))
            self.finished.set()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def serve(name: str, binding: ServiceBinding) -> GrpcServer:
    server = GrpcServer(name=name, listen="127.0.0.1:0", bindings=[binding], error_domain=f"{name}.test")
    await server.start()
    return server


def registry_binding(servicer: RecordingRegistry) -> ServiceBinding:
    return ServiceBinding.of(registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"], servicer,
                             registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server)


def inference_binding(servicer: EndlessInference) -> ServiceBinding:
    return ServiceBinding.of(inference_pb2.DESCRIPTOR.services_by_name["InferenceService"], servicer,
                             inference_pb2_grpc.add_InferenceServiceServicer_to_server)
