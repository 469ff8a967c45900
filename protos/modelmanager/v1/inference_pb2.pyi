import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from modelmanager.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SeamsFix(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEAMS_FIX_UNSPECIFIED: _ClassVar[SeamsFix]
    SEAMS_FIX_BAND_PASS: _ClassVar[SeamsFix]
    SEAMS_FIX_HALF_TILE: _ClassVar[SeamsFix]
SEAMS_FIX_UNSPECIFIED: SeamsFix
SEAMS_FIX_BAND_PASS: SeamsFix
SEAMS_FIX_HALF_TILE: SeamsFix

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "loras", "width", "height", "steps", "guidance_scale", "seed", "scheduler", "checkpoint", "vae")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    VAE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    loras: _containers.RepeatedCompositeFieldContainer[_model_pb2.LoraSelection]
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    scheduler: str
    checkpoint: str
    vae: str
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., loras: _Optional[_Iterable[_Union[_model_pb2.LoraSelection, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., seed: _Optional[int] = ..., scheduler: _Optional[str] = ..., checkpoint: _Optional[str] = ..., vae: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("queued", "progress", "result")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    queued: JobQueued
    progress: JobProgress
    result: ImageResult
    def __init__(self, queued: _Optional[_Union[JobQueued, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., result: _Optional[_Union[ImageResult, _Mapping]] = ...) -> None: ...

class UpscaleRequest(_message.Message):
    __slots__ = ("image", "prompt", "negative_prompt", "loras", "scale_factor", "steps", "strength", "guidance_scale", "seed", "scheduler", "tile_size", "tile_overlap", "checkpoint", "vae", "upscaler", "tile_padding", "mask_blur", "seams_fix", "seams_fix_width", "seams_fix_strength", "seams_fix_mask_blur", "seams_fix_padding", "regions")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    VAE_FIELD_NUMBER: _ClassVar[int]
    UPSCALER_FIELD_NUMBER: _ClassVar[int]
    TILE_PADDING_FIELD_NUMBER: _ClassVar[int]
    MASK_BLUR_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIX_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIX_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIX_MASK_BLUR_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIX_PADDING_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    prompt: str
    negative_prompt: str
    loras: _containers.RepeatedCompositeFieldContainer[_model_pb2.LoraSelection]
    scale_factor: float
    steps: int
    strength: float
    guidance_scale: float
    seed: int
    scheduler: str
    tile_size: int
    tile_overlap: int
    checkpoint: str
    vae: str
    upscaler: str
    tile_padding: int
    mask_blur: int
    seams_fix: SeamsFix
    seams_fix_width: int
    seams_fix_strength: float
    seams_fix_mask_blur: int
    seams_fix_padding: int
    regions: _containers.RepeatedCompositeFieldContainer[UpscaleRegion]
    def __init__(self, image: _Optional[bytes] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., loras: _Optional[_Iterable[_Union[_model_pb2.LoraSelection, _Mapping]]] = ..., scale_factor: _Optional[float] = ..., steps: _Optional[int] = ..., strength: _Optional[float] = ..., guidance_scale: _Optional[float] = ..., seed: _Optional[int] = ..., scheduler: _Optional[str] = ..., tile_size: _Optional[int] = ..., tile_overlap: _Optional[int] = ..., checkpoint: _Optional[str] = ..., vae: _Optional[str] = ..., upscaler: _Optional[str] = ..., tile_padding: _Optional[int] = ..., mask_blur: _Optional[int] = ..., seams_fix: _Optional[_Union[SeamsFix, str]] = ..., seams_fix_width: _Optional[int] = ..., seams_fix_strength: _Optional[float] = ..., seams_fix_mask_blur: _Optional[int] = ..., seams_fix_padding: _Optional[int] = ..., regions: _Optional[_Iterable[_Union[UpscaleRegion, _Mapping]]] = ...) -> None: ...

class UpscaleRegion(_message.Message):
    __slots__ = ("x", "y", "width", "height", "prompt", "loras")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    prompt: str
    loras: _containers.RepeatedCompositeFieldContainer[_model_pb2.LoraSelection]
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., prompt: _Optional[str] = ..., loras: _Optional[_Iterable[_Union[_model_pb2.LoraSelection, _Mapping]]] = ...) -> None: ...

class UpscaleResponse(_message.Message):
    __slots__ = ("queued", "progress", "result")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    queued: JobQueued
    progress: JobProgress
    result: ImageResult
    def __init__(self, queued: _Optional[_Union[JobQueued, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., result: _Optional[_Union[ImageResult, _Mapping]] = ...) -> None: ...

class JobQueued(_message.Message):
    __slots__ = ("job_id", "position")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    position: int
    def __init__(self, job_id: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("job_id", "stage", "step", "total_steps", "tile", "total_tiles")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TILE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TILES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    stage: str
    step: int
    total_steps: int
    tile: int
    total_tiles: int
    def __init__(self, job_id: _Optional[str] = ..., stage: _Optional[str] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., tile: _Optional[int] = ..., total_tiles: _Optional[int] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("job_id", "png", "width", "height", "seed", "final_prompt", "injected_trigger_words", "loras", "checkpoint", "timings", "output_id", "vae", "embeddings", "upscaler")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FINAL_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INJECTED_TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ID_FIELD_NUMBER: _ClassVar[int]
    VAE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    UPSCALER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    png: bytes
    width: int
    height: int
    seed: int
    final_prompt: str
    injected_trigger_words: _containers.RepeatedScalarFieldContainer[str]
    loras: _containers.RepeatedCompositeFieldContainer[_model_pb2.ResolvedLora]
    checkpoint: str
    timings: Timings
    output_id: str
    vae: str
    embeddings: _containers.RepeatedScalarFieldContainer[str]
    upscaler: str
    def __init__(self, job_id: _Optional[str] = ..., png: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., final_prompt: _Optional[str] = ..., injected_trigger_words: _Optional[_Iterable[str]] = ..., loras: _Optional[_Iterable[_Union[_model_pb2.ResolvedLora, _Mapping]]] = ..., checkpoint: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., output_id: _Optional[str] = ..., vae: _Optional[str] = ..., embeddings: _Optional[_Iterable[str]] = ..., upscaler: _Optional[str] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queued_seconds", "load_seconds", "lora_seconds", "inference_seconds", "total_seconds")
    QUEUED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LORA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    queued_seconds: float
    load_seconds: float
    lora_seconds: float
    inference_seconds: float
    total_seconds: float
    def __init__(self, queued_seconds: _Optional[float] = ..., load_seconds: _Optional[float] = ..., lora_seconds: _Optional[float] = ..., inference_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ...) -> None: ...

class LoadCheckpointRequest(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    def __init__(self, checkpoint: _Optional[str] = ...) -> None: ...

class LoadCheckpointResponse(_message.Message):
    __slots__ = ("queued", "progress", "result")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    queued: JobQueued
    progress: LoadProgress
    result: LoadResult
    def __init__(self, queued: _Optional[_Union[JobQueued, _Mapping]] = ..., progress: _Optional[_Union[LoadProgress, _Mapping]] = ..., result: _Optional[_Union[LoadResult, _Mapping]] = ...) -> None: ...

class LoadProgress(_message.Message):
    __slots__ = ("stage", "fraction")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    fraction: float
    def __init__(self, stage: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class LoadResult(_message.Message):
    __slots__ = ("checkpoint", "load_seconds", "loaded_from", "size_bytes")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOADED_FROM_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    load_seconds: float
    loaded_from: str
    size_bytes: int
    def __init__(self, checkpoint: _Optional[str] = ..., load_seconds: _Optional[float] = ..., loaded_from: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("device", "dtype", "current_checkpoint", "checkpoints", "memory_allocated_bytes", "memory_budget_bytes", "queue_depth", "busy", "attention", "vaes", "upscalers")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    VAES_FIELD_NUMBER: _ClassVar[int]
    UPSCALERS_FIELD_NUMBER: _ClassVar[int]
    device: str
    dtype: str
    current_checkpoint: str
    checkpoints: _containers.RepeatedCompositeFieldContainer[LoadedCheckpoint]
    memory_allocated_bytes: int
    memory_budget_bytes: int
    queue_depth: int
    busy: bool
    attention: str
    vaes: _containers.RepeatedScalarFieldContainer[str]
    upscalers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device: _Optional[str] = ..., dtype: _Optional[str] = ..., current_checkpoint: _Optional[str] = ..., checkpoints: _Optional[_Iterable[_Union[LoadedCheckpoint, _Mapping]]] = ..., memory_allocated_bytes: _Optional[int] = ..., memory_budget_bytes: _Optional[int] = ..., queue_depth: _Optional[int] = ..., busy: _Optional[bool] = ..., attention: _Optional[str] = ..., vaes: _Optional[_Iterable[str]] = ..., upscalers: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadedCheckpoint(_message.Message):
    __slots__ = ("checkpoint", "path", "location", "size_bytes", "adapters", "load_seconds", "embeddings")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    path: str
    location: str
    size_bytes: int
    adapters: _containers.RepeatedScalarFieldContainer[str]
    load_seconds: float
    embeddings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, checkpoint: _Optional[str] = ..., path: _Optional[str] = ..., location: _Optional[str] = ..., size_bytes: _Optional[int] = ..., adapters: _Optional[_Iterable[str]] = ..., load_seconds: _Optional[float] = ..., embeddings: _Optional[_Iterable[str]] = ...) -> None: ...

class ListSchedulersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSchedulersResponse(_message.Message):
    __slots__ = ("schedulers",)
    SCHEDULERS_FIELD_NUMBER: _ClassVar[int]
    schedulers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schedulers: _Optional[_Iterable[str]] = ...) -> None: ...

class ListOutputsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOutputsResponse(_message.Message):
    __slots__ = ("outputs", "next_page_token")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Output]
    next_page_token: str
    def __init__(self, outputs: _Optional[_Iterable[_Union[Output, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetOutputRequest(_message.Message):
    __slots__ = ("id", "without_image")
    ID_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    without_image: bool
    def __init__(self, id: _Optional[str] = ..., without_image: _Optional[bool] = ...) -> None: ...

class GetOutputResponse(_message.Message):
    __slots__ = ("output", "png")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    output: Output
    png: bytes
    def __init__(self, output: _Optional[_Union[Output, _Mapping]] = ..., png: _Optional[bytes] = ...) -> None: ...

class DeleteOutputRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteOutputResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Output(_message.Message):
    __slots__ = ("id", "kind", "created_at", "width", "height", "size_bytes", "parameters", "infotext")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    INFOTEXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    created_at: _timestamp_pb2.Timestamp
    width: int
    height: int
    size_bytes: int
    parameters: OutputParameters
    infotext: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., parameters: _Optional[_Union[OutputParameters, _Mapping]] = ..., infotext: _Optional[str] = ...) -> None: ...

class OutputParameters(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "final_prompt", "injected_trigger_words", "steps", "guidance_scale", "seed", "scheduler", "checkpoint", "checkpoint_hash", "loras", "scale_factor", "strength", "tile_size", "tile_overlap", "controlnet")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    FINAL_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INJECTED_TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_HASH_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CONTROLNET_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    final_prompt: str
    injected_trigger_words: _containers.RepeatedScalarFieldContainer[str]
    steps: int
    guidance_scale: float
    seed: int
    scheduler: str
    checkpoint: str
    checkpoint_hash: str
    loras: _containers.RepeatedCompositeFieldContainer[OutputLora]
    scale_factor: float
    strength: float
    tile_size: int
    tile_overlap: int
    controlnet: bool
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., final_prompt: _Optional[str] = ..., injected_trigger_words: _Optional[_Iterable[str]] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., seed: _Optional[int] = ..., scheduler: _Optional[str] = ..., checkpoint: _Optional[str] = ..., checkpoint_hash: _Optional[str] = ..., loras: _Optional[_Iterable[_Union[OutputLora, _Mapping]]] = ..., scale_factor: _Optional[float] = ..., strength: _Optional[float] = ..., tile_size: _Optional[int] = ..., tile_overlap: _Optional[int] = ..., controlnet: _Optional[bool] = ...) -> None: ...

class OutputLora(_message.Message):
    __slots__ = ("filename", "weight", "hash")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    filename: str
    weight: float
    hash: str
    def __init__(self, filename: _Optional[str] = ..., weight: _Optional[float] = ..., hash: _Optional[str] = ...) -> None: ...
