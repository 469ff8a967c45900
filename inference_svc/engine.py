"""The jobs: what Generate, Upscale and LoadCheckpoint do, between the registry and the GPU.

Each `submit_*` coroutine asks the registry what to run (on the event loop),
then queues a job whose body runs in the worker thread: switch to the
checkpoint, set the LoRAs, run diffusers, encode the PNG.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from inference_svc.checkpoint_cache import Acquired, CachedCheckpoint, CheckpointCache
from inference_svc.device import DeviceInfo, empty_cache, is_out_of_memory
from inference_svc.embeddings import EmbeddingCache, EmbeddingSpec, used_in
from inference_svc.errors import JobCancelled, OutOfMemory, UpscalerNotFound, VaeNotFound
from inference_svc.images import encode_png
from inference_svc.infotext import output_infotext
from inference_svc.job_queue import Job, JobContext, JobQueue
from inference_svc.lora_manager import LoraManager, LoraSpec
from inference_svc.model_hashes import FileHashes, autov2
from inference_svc.outputs import OutputLora, OutputParameters, OutputStore, SavedOutput
from inference_svc.pipelines import GenerateParams, generate, scheduler_in_use
from inference_svc.regions import RegionRequest, scaled_rect
from inference_svc.registry_client import RegistryClient, ResolvedCheckpoint
from inference_svc.upscale_models import UpscalerCache, UpscalerSpec, enlarge
from inference_svc.upscaler import (
    ControlNetTile,
    RegionJob,
    UpscaleParams,
    img2img_steps,
    patch_count,
    plan_tiles,
    target_size,
    upscale,
)
from inference_svc.vae import VaeCache, VaeSpec
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit import get_logger

log = get_logger("inference_svc.engine")


@dataclass
class ImageOutput:
    png: bytes
    width: int
    height: int
    seed: int
    checkpoint: str
    timings: dict[str, float] = field(default_factory=dict)
    # The saved copy in the outputs folder; "" when it could not be saved.
    output_id: str = ""


def _lora_specs(composed: registry_pb2.ComposePromptResponse) -> list[LoraSpec]:
    return [LoraSpec(x.filename, Path(x.path), x.weight) for x in composed.loras]


@dataclass(frozen=True)
class PreparedRegion:
    request: RegionRequest
    # The global prompt and LoRAs with the region's on top.
    composed: registry_pb2.ComposePromptResponse


@dataclass(frozen=True)
class Prepared:
    """What the registry said for one request."""

    checkpoint: ResolvedCheckpoint
    composed: registry_pb2.ComposePromptResponse
    # Those whose token the prompts (regions' included) hold.
    embeddings: tuple[EmbeddingSpec, ...] = ()
    vae: VaeSpec | None = None
    upscaler: UpscalerSpec | None = None
    regions: tuple[PreparedRegion, ...] = ()

    @property
    def loras(self) -> list[LoraSpec]:
        return _lora_specs(self.composed)


class InferenceEngine:
    def __init__(
        self,
        *,
        device: DeviceInfo,
        cache: CheckpointCache,
        loras: LoraManager,
        registry: RegistryClient,
        queue: JobQueue,
        controlnet: ControlNetTile,
        outputs: OutputStore,
        hashes: FileHashes,
        embeddings: EmbeddingCache | None = None,
        vaes: VaeCache | None = None,
        upscalers: UpscalerCache | None = None,
    ):
        self.device = device
        self.cache = cache
        self.loras = loras
        self.registry = registry
        self.queue = queue
        self.controlnet = controlnet
        self.outputs = outputs
        self.hashes = hashes
        self.embeddings = embeddings or EmbeddingCache()
        self.vaes = vaes or VaeCache(device)
        self.upscalers = upscalers or UpscalerCache(device)

    # ---- on the event loop -------------------------------------------------------------------

    async def prepare(
        self, prompt: str, loras: list[model_pb2.LoraSelection], checkpoint: str, *, negative_prompt: str = "",
        vae: str = "", upscaler: str = "", regions: tuple[RegionRequest, ...] = (),
    ) -> Prepared:
        resolved = await self.registry.checkpoint(checkpoint)
        composed = await self.registry.compose_prompt(prompt, loras)
        prepared_regions = []
        for region in regions:
            # The region's LoRAs on top of the global ones: the same name takes the region's weight.
            names = {lora.name for lora in region.loras}
            merged = [lora for lora in loras if lora.name not in names] + list(region.loras)
            text = f"{prompt}, {region.prompt}" if prompt and region.prompt else prompt or region.prompt
            prepared_regions.append(PreparedRegion(region, await self.registry.compose_prompt(text, merged)))
        texts = [composed.prompt, negative_prompt, *(r.composed.prompt for r in prepared_regions)]
        embeddings = await self._embeddings(texts)
        vae_spec = await self._vae(vae or await self.registry.default_vae(resolved.name))
        upscaler_spec = None
        if upscaler:
            path = await self.registry.model_file(upscaler, model_pb2.MODEL_TYPE_UPSCALER, UpscalerNotFound, "upscaler")
            upscaler_spec = UpscalerSpec(upscaler, path)
        return Prepared(resolved, composed, embeddings, vae_spec, upscaler_spec, tuple(prepared_regions))

    async def _embeddings(self, texts: list[str]) -> tuple[EmbeddingSpec, ...]:
        if not any(texts):
            return ()
        listed = {e.filename: e for e in await self.registry.embeddings()}
        used = []
        specs = [EmbeddingSpec(e.filename, e.token, e.path) for e in listed.values()]
        for spec in used_in(specs, *texts):  # only the used ones' paths are confined (and may be refused)
            entry = await self.registry.confine_embedding(listed[spec.filename])
            used.append(EmbeddingSpec(spec.filename, spec.token, entry.path))
        return tuple(used)

    async def _vae(self, filename: str) -> VaeSpec | None:
        if not filename:
            return None
        path = await self.registry.model_file(filename, model_pb2.MODEL_TYPE_VAE, VaeNotFound, "vae")
        return VaeSpec(filename, path)

    async def submit_generate(self, prepared: Prepared, params: GenerateParams) -> Job:
        return self.queue.submit("generate", lambda ctx: self._guard(ctx, self._generate, prepared, params))

    async def submit_upscale(self, prepared: Prepared, params: UpscaleParams, image: Image.Image) -> Job:
        return self.queue.submit("upscale", lambda ctx: self._guard(ctx, self._upscale, prepared, params, image))

    async def submit_load(self, checkpoint: str) -> Job:
        resolved = await self.registry.checkpoint(checkpoint)
        return self.queue.submit("load", lambda ctx: self._guard(ctx, self._load, resolved))

    # ---- in the worker thread -----------------------------------------------------------------

    def _guard(self, ctx: JobContext, body: Any, *args: Any) -> Any:
        """Run a job body; out-of-memory becomes RESOURCE_EXHAUSTED and the cache stays usable."""
        if ctx.cancelled():
            raise JobCancelled("job cancelled before it started")
        try:
            return body(ctx, *args)
        except OutOfMemory:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                empty_cache(self.device)
                log.warning("job.out_of_memory", job_id=ctx.job_id, error=str(exc)[:200])
                raise OutOfMemory(f"out of memory: {str(exc)[:200]}", metadata={"job_id": ctx.job_id}) from exc
            raise

    def _acquire(self, ctx: JobContext, checkpoint: ResolvedCheckpoint, stage: str | None) -> Acquired:
        """Switch to the checkpoint; progress events carry `stage`, or the loader's own stage when None."""

        def report(loader_stage: str, fraction: float) -> None:
            ctx.progress(stage or loader_stage, fraction=fraction)

        return self.cache.acquire(checkpoint.name, checkpoint.path, report)

    def _prepare_pipeline(self, ctx: JobContext, prepared: Prepared, steps: int) -> tuple[Acquired, float]:
        """Switch to the checkpoint and apply the LoRA set, once per job (`steps`: the job's denoising steps,
        every tile's for an upscale: what decides whether the set is merged)."""
        acquired = self._acquire(ctx, prepared.checkpoint, "loading_checkpoint")
        started = time.perf_counter()
        specs = prepared.loras
        if any(str(s.path) not in acquired.entry.adapters for s in specs):
            ctx.progress("loading_loras")
        self.loras.apply(acquired.entry, specs, steps)
        return acquired, time.perf_counter() - started

    def _generate(self, ctx: JobContext, prepared: Prepared, params: GenerateParams) -> ImageOutput:
        started = time.perf_counter()
        # A checkpoint is gigabytes: its hash (for the infotext) runs while the job loads and denoises.
        checkpoint_sha256 = self.hashes.start_sha256(prepared.checkpoint.path)
        acquired, lora_seconds = self._prepare_pipeline(ctx, prepared, params.steps)

        def on_step(step: int, total: int) -> None:
            ctx.progress("denoising", step=step, total_steps=total)
            if step == total:
                ctx.progress("decoding", step=step, total_steps=total)

        inference_started = time.perf_counter()
        # The model gets the composed prompt: the selected LoRAs' trigger words are what make them work.
        with self._models_for(acquired.entry, prepared):
            image = generate(acquired.entry, replace(params, prompt=prepared.composed.prompt), on_step, ctx.cancelled)
        inference_seconds = time.perf_counter() - inference_started
        parameters = self._parameters(prepared, params, checkpoint_sha256.result())
        text = output_infotext("generate", parameters, image.width, image.height,
                               scheduler_in_use(acquired.entry, params.scheduler))
        return self._output(ctx, "generate", image, parameters, text, acquired, lora_seconds, inference_seconds,
                            started)

    def _upscale(self, ctx: JobContext, prepared: Prepared, params: UpscaleParams, image: Image.Image) -> ImageOutput:
        started = time.perf_counter()
        checkpoint_sha256 = self.hashes.start_sha256(prepared.checkpoint.path)
        controlnet = self.controlnet.get()
        width, height = target_size(image.width, image.height, params.scale_factor)
        tiles = len(plan_tiles(width, height, params.tile_size, params.tile_overlap))
        # The global set's steps: the tiles' and the seams pass's (regions switch to their own sets).
        seams = patch_count(width, height, params, [])
        acquired, lora_seconds = self._prepare_pipeline(
            ctx, prepared, img2img_steps(params.steps, params.strength) * tiles
            + img2img_steps(params.steps, params.seams_fix_strength) * seams)
        entry = acquired.entry

        def on_step(step: int, total: int, tile: int, tiles: int, stage: str = "upscaling") -> None:
            ctx.progress(stage, step=step, total_steps=total, tile=tile, total_tiles=tiles)

        def on_enlarge_tile(tile: int, tiles: int) -> None:
            ctx.progress("enlarging", tile=tile, total_tiles=tiles)

        inference_started = time.perf_counter()
        descriptor = self.upscalers.get(prepared.upscaler)
        enlarged = enlarge(descriptor, image, (width, height), on_enlarge_tile, ctx.cancelled)
        regions = [self._region_job(entry, region, image.size, (width, height), params) for region in prepared.regions]
        restore_global = (lambda: self.loras.apply(entry, prepared.loras, None)) if regions else None
        with self._models_for(entry, prepared):
            result = upscale(entry, image, replace(params, prompt=prepared.composed.prompt), on_step,
                             ctx.cancelled, controlnet=controlnet, enlarged=enlarged, regions=regions,
                             after_regions=restore_global)
        inference_seconds = time.perf_counter() - inference_started
        parameters = self._parameters(
            prepared, params, checkpoint_sha256.result(), scale_factor=params.scale_factor,
            strength=params.strength, tile_size=params.tile_size, tile_overlap=params.tile_overlap,
            controlnet=controlnet is not None, upscaler=prepared.upscaler.filename if prepared.upscaler else "")
        text = output_infotext("upscale", parameters, result.width, result.height,
                               scheduler_in_use(acquired.entry, params.scheduler))
        return self._output(ctx, "upscale", result, parameters, text, acquired, lora_seconds, inference_seconds,
                            started)

    def _region_job(self, entry: CachedCheckpoint, region: PreparedRegion, source: tuple[int, int],
                    target: tuple[int, int], params: UpscaleParams) -> RegionJob:
        rect = scaled_rect(region.request, source, target)
        steps = img2img_steps(params.steps, params.strength) * patch_count(*target, replace(params, seams_fix=""), [rect])
        specs = _lora_specs(region.composed)
        return RegionJob(rect, region.composed.prompt, lambda: self.loras.apply(entry, specs, steps))

    @contextmanager
    def _models_for(self, entry: CachedCheckpoint, prepared: Prepared) -> Iterator[None]:
        """The job's VAE and embeddings on the pipeline for the block; the pipeline as it was after."""
        with self.vaes.swapped(entry, prepared.vae), self.embeddings.active(entry, list(prepared.embeddings)):
            yield

    def _parameters(self, prepared: Prepared, params: GenerateParams | UpscaleParams, checkpoint_sha256: str,
                    **upscale_only: Any) -> OutputParameters:
        """What an output records: the request, the prompt the model got, the models used (the infotext
        names the checkpoint, LoRAs and VAE by hash or name, as A1111 does)."""
        return OutputParameters(
            prompt=params.prompt, negative_prompt=params.negative_prompt, final_prompt=prepared.composed.prompt,
            injected_trigger_words=tuple(prepared.composed.injected_trigger_words),
            steps=params.steps, guidance_scale=params.guidance_scale, seed=params.seed, scheduler=params.scheduler,
            checkpoint=prepared.checkpoint.name, checkpoint_hash=autov2(checkpoint_sha256),
            loras=self._output_loras(prepared), vae=prepared.vae.filename if prepared.vae else "",
            embeddings=tuple(e.filename for e in prepared.embeddings), **upscale_only)

    def _output_loras(self, prepared: Prepared) -> tuple[OutputLora, ...]:
        # AutoV3 is not in the registry's answer: hashed here, once per file version (a LoRA is megabytes).
        return tuple(OutputLora(spec.filename, spec.weight, self.hashes.lora_autov3(spec.path))
                     for spec in prepared.loras)

    def _output(
        self,
        ctx: JobContext,
        kind: str,
        image: Image.Image,
        parameters: OutputParameters,
        infotext: str,
        acquired: Acquired,
        lora_seconds: float,
        inference_seconds: float,
        started: float,
    ) -> ImageOutput:
        record = self.outputs.new_record(kind, image.width, image.height, parameters, infotext)
        png = encode_png(image, infotext, record.png_record())
        output_id = self._save(record, png)
        return ImageOutput(
            png=png,
            width=image.width,
            height=image.height,
            seed=parameters.seed,
            checkpoint=parameters.checkpoint,
            output_id=output_id,
            timings={
                "queued_seconds": ctx.queued_seconds,
                "load_seconds": acquired.seconds,
                "lora_seconds": lora_seconds,
                "inference_seconds": inference_seconds,
                "total_seconds": ctx.queued_seconds + time.perf_counter() - started,
            },
        )

    def _save(self, record: SavedOutput, png: bytes) -> str:
        """The saved output's id, or "" when the folder refused it (full, read-only): the client still
        gets its image, and the log says why."""
        try:
            return self.outputs.save(record, png).id
        except OSError as exc:
            log.error("output.save_failed", id=record.id, folder=str(self.outputs.root), error=str(exc)[:200])
            return ""

    def _load(self, ctx: JobContext, checkpoint: ResolvedCheckpoint) -> Acquired:
        return self._acquire(ctx, checkpoint, None)
