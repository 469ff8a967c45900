"""InferenceService over gRPC: checks requests, submits jobs, streams their events as messages;
the outputs folder's records as messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from google.protobuf import timestamp_pb2

from inference_svc.device import memory_allocated
from inference_svc.engine import ImageOutput, InferenceEngine, Prepared
from inference_svc.images import decode_image
from inference_svc.job_queue import Done, Failed, Job, Progress, Queued
from inference_svc.outputs import SavedOutput
from inference_svc.pipelines import SCHEDULERS
from inference_svc.validation import check_upscale_output, generate_params, upscale_params
from modelmanager.v1 import inference_pb2, inference_pb2_grpc

# GenerateResponse or UpscaleResponse: the same oneof of queued / progress / result.
JobResponse = TypeVar("JobResponse", inference_pb2.GenerateResponse, inference_pb2.UpscaleResponse)


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, engine: InferenceEngine):
        self.engine = engine

    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        params = generate_params(request)
        prepared = await self.engine.prepare(request.prompt, list(request.loras), request.checkpoint,
                                             negative_prompt=request.negative_prompt, vae=request.vae)
        job = await self.engine.submit_generate(prepared, params)
        async for message in self._stream(job, prepared, inference_pb2.GenerateResponse):
            yield message

    async def Upscale(
        self, request: inference_pb2.UpscaleRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.UpscaleResponse]:
        params = upscale_params(request)
        image = decode_image(request.image)
        check_upscale_output(image.width, image.height, params)
        prepared = await self.engine.prepare(request.prompt, list(request.loras), request.checkpoint,
                                             negative_prompt=request.negative_prompt, vae=request.vae,
                                             upscaler=request.upscaler, regions=params.regions)
        job = await self.engine.submit_upscale(prepared, params, image)
        async for message in self._stream(job, prepared, inference_pb2.UpscaleResponse):
            yield message

    async def LoadCheckpoint(
        self, request: inference_pb2.LoadCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.LoadCheckpointResponse]:
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

    async def GetStatus(
        self, request: inference_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.GetStatusResponse:
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
                    embeddings=engine.embeddings.held(e),
                )
                for e in entries
            ],
            memory_allocated_bytes=memory_allocated(engine.device) or sum(e.size_bytes for e in entries),
            memory_budget_bytes=engine.cache.device_budget,
            queue_depth=engine.queue.depth,
            busy=engine.queue.busy,
            attention=engine.device.attention,
            vaes=engine.vaes.held(),
            upscalers=engine.upscalers.held(),
        )

    async def ListSchedulers(
        self, request: inference_pb2.ListSchedulersRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ListSchedulersResponse:
        return inference_pb2.ListSchedulersResponse(schedulers=list(SCHEDULERS))

    # The outputs folder does file I/O: off the event loop.

    async def ListOutputs(
        self, request: inference_pb2.ListOutputsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ListOutputsResponse:
        page, token = await asyncio.to_thread(self.engine.outputs.page, request.page_size, request.page_token)
        return inference_pb2.ListOutputsResponse(outputs=[_output(o) for o in page], next_page_token=token)

    async def GetOutput(
        self, request: inference_pb2.GetOutputRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.GetOutputResponse:
        record, png = await asyncio.to_thread(
            self.engine.outputs.get, request.id, with_image=not request.without_image
        )
        return inference_pb2.GetOutputResponse(output=_output(record), png=png)

    async def DeleteOutput(
        self, request: inference_pb2.DeleteOutputRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.DeleteOutputResponse:
        await asyncio.to_thread(self.engine.outputs.delete, request.id)
        return inference_pb2.DeleteOutputResponse()

    async def _stream(
        self, job: Job, prepared: Prepared, response: Callable[..., JobResponse]
    ) -> AsyncIterator[JobResponse]:
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
        output_id=output.output_id,
        vae=prepared.vae.filename if prepared.vae else "",
        embeddings=[e.filename for e in prepared.embeddings],
        upscaler=prepared.upscaler.filename if prepared.upscaler else "",
    )


def _output(record: SavedOutput) -> inference_pb2.Output:
    p = record.parameters
    created_at = timestamp_pb2.Timestamp()
    created_at.FromDatetime(record.created_at)
    return inference_pb2.Output(
        id=record.id,
        kind=record.kind,
        created_at=created_at,
        width=record.width,
        height=record.height,
        size_bytes=record.size_bytes,
        infotext=record.infotext,
        parameters=inference_pb2.OutputParameters(
            prompt=p.prompt,
            negative_prompt=p.negative_prompt,
            final_prompt=p.final_prompt,
            injected_trigger_words=list(p.injected_trigger_words),
            steps=p.steps,
            guidance_scale=p.guidance_scale,
            seed=p.seed,
            scheduler=p.scheduler,
            checkpoint=p.checkpoint,
            checkpoint_hash=p.checkpoint_hash,
            loras=[inference_pb2.OutputLora(filename=x.filename, weight=x.weight, hash=x.hash) for x in p.loras],
            scale_factor=p.scale_factor,
            strength=p.strength,
            tile_size=p.tile_size,
            tile_overlap=p.tile_overlap,
            controlnet=p.controlnet,
        ),
    )
