"""InferenceService over gRPC: checks requests, submits jobs, streams their events as messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from inference_svc.device import memory_allocated
from inference_svc.engine import ImageOutput, InferenceEngine, Prepared
from inference_svc.images import decode_image
from inference_svc.job_queue import Done, Failed, Job, Progress, Queued
from inference_svc.pipelines import SCHEDULERS
from inference_svc.validation import check_upscale_output, generate_params, upscale_params
from modelmanager.v1 import inference_pb2, inference_pb2_grpc


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, engine: InferenceEngine):
        self.engine = engine

    async def Generate(self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext):
        params = generate_params(request)
        prepared = await self.engine.prepare(request.prompt, list(request.loras), request.checkpoint)
        job = await self.engine.submit_generate(prepared, params)
        async for message in self._stream(job, prepared, inference_pb2.GenerateResponse):
            yield message

    async def Upscale(self, request: inference_pb2.UpscaleRequest, context: grpc.aio.ServicerContext):
        params = upscale_params(request)
        image = decode_image(request.image)
        check_upscale_output(image.width, image.height, params)
        prepared = await self.engine.prepare(request.prompt, list(request.loras), request.checkpoint)
        job = await self.engine.submit_upscale(prepared, params, image)
        async for message in self._stream(job, prepared, inference_pb2.UpscaleResponse):
            yield message

    async def LoadCheckpoint(self, request: inference_pb2.LoadCheckpointRequest, context: grpc.aio.ServicerContext):
        job = await self.engine.submit_load(request.checkpoint)
        try:
            async for event in job.stream():
                if isinstance(event, Queued):
                    yield inference_pb2.LoadCheckpointResponse(
                        queued=inference_pb2.JobQueued(job_id=job.id, position=event.position)
                    )
                elif isinstance(event, Progress):
                    yield inference_pb2.LoadCheckpointResponse(
                        progress=inference_pb2.LoadProgress(stage=event.stage, fraction=event.fraction)
                    )
                elif isinstance(event, Failed):
                    raise event.error
                elif isinstance(event, Done):
                    acquired = event.result
                    yield inference_pb2.LoadCheckpointResponse(
                        result=inference_pb2.LoadResult(
                            checkpoint=acquired.entry.name,
                            load_seconds=acquired.seconds,
                            loaded_from=acquired.loaded_from,
                            size_bytes=acquired.entry.size_bytes,
                        )
                    )
        finally:
            if not job.finished:
                self.engine.queue.cancel(job)

    async def GetStatus(self, request: inference_pb2.GetStatusRequest, context: grpc.aio.ServicerContext):
        engine = self.engine
        entries = engine.cache.snapshot()
        current = engine.cache.current
        return inference_pb2.GetStatusResponse(
            device=str(engine.device.device),
            dtype=engine.device.dtype_name,
            current_checkpoint=current.name if current else "",
            checkpoints=[
                inference_pb2.LoadedCheckpoint(
                    checkpoint=e.name,
                    path=str(e.path),
                    location=e.location,
                    size_bytes=e.size_bytes,
                    adapters=[p.rsplit("/", 1)[-1] for p in list(e.adapters)],
                    load_seconds=e.load_seconds,
                )
                for e in entries
            ],
            memory_allocated_bytes=memory_allocated(engine.device) or sum(e.size_bytes for e in entries),
            memory_budget_bytes=engine.cache.device_budget,
            queue_depth=engine.queue.depth,
            busy=engine.queue.busy,
            attention=engine.device.attention,
        )

    async def ListSchedulers(self, request: inference_pb2.ListSchedulersRequest, context: grpc.aio.ServicerContext):
        return inference_pb2.ListSchedulersResponse(schedulers=list(SCHEDULERS))

    async def _stream(self, job: Job, prepared: Prepared, response: Callable[..., Any]) -> AsyncIterator[Any]:
        """Job events -> response messages; cancels the job if the client goes away first."""
        try:
            async for event in job.stream():
                if isinstance(event, Queued):
                    yield response(queued=inference_pb2.JobQueued(job_id=job.id, position=event.position))
                elif isinstance(event, Progress):
                    yield response(
                        progress=inference_pb2.JobProgress(
                            job_id=job.id,
                            stage=event.stage,
                            step=event.step,
                            total_steps=event.total_steps,
                            tile=event.tile,
                            total_tiles=event.total_tiles,
                        )
                    )
                elif isinstance(event, Failed):
                    raise event.error
                elif isinstance(event, Done):
                    yield response(result=_image_result(job, prepared, event.result))
        finally:
            # GeneratorExit / CancelledError when the client cancelled: stop the job within one step.
            if not job.finished:
                self.engine.queue.cancel(job)


def _image_result(job: Job, prepared: Prepared, output: ImageOutput) -> inference_pb2.ImageResult:
    return inference_pb2.ImageResult(
        job_id=job.id,
        png=output.png,
        width=output.width,
        height=output.height,
        seed=output.seed,
        final_prompt=prepared.composed.prompt,
        injected_trigger_words=list(prepared.composed.injected_trigger_words),
        loras=list(prepared.composed.loras),
        checkpoint=output.checkpoint,
        timings=inference_pb2.Timings(**output.timings),
    )
