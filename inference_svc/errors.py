"""The inference service's errors: service_kit's hierarchy with this domain's reasons.

Reasons are the ones documented in inference.proto; the server interceptor
turns each into a gRPC status with an ErrorInfo (domain DOMAIN).
"""

from __future__ import annotations

from pathlib import Path

from service_kit import errors


def shown_path(path: Path | str) -> str:
    """A model file as a client is shown it: its folder and name (`loras/x.safetensors`,
    `illustrious-xl/Illustrious-XL-v0.1.safetensors`), never the server's absolute path."""
    return "/".join(Path(path).parts[-2:])

DOMAIN = "inference.modelmanager"


# Bad input, whatever the case: each case below is a class with a reason of its own; this name (the
# shared base, not a class of this domain: it has no reason to document) catches them all.
InvalidRequest = errors.InvalidArgument


class EmptyLoraName(InvalidRequest):
    """A LoraSelection whose name is blank."""

    default_reason = "EMPTY_LORA_NAME"


class InvalidImage(InvalidRequest):
    """The image is empty, or not a PNG, JPEG or WebP that decodes."""

    default_reason = "INVALID_IMAGE"


class InvalidSize(InvalidRequest):
    """A width, height, tile size or overlap off the multiple-of-8 grid or its bounds, or an output too large."""

    default_reason = "INVALID_SIZE"


class OutOfRangeValue(InvalidRequest):
    """A number (strength, guidance, LoRA weight...) outside its range, or NaN."""

    default_reason = "OUT_OF_RANGE_VALUE"


class UnknownScheduler(InvalidRequest):
    default_reason = "UNKNOWN_SCHEDULER"


class CheckpointNotFound(errors.NotFound):
    default_reason = "CHECKPOINT_NOT_FOUND"


class LoraNotFound(errors.NotFound):
    default_reason = "LORA_NOT_FOUND"


class CheckpointLoadFailed(errors.FailedPrecondition):
    """Corrupt file, wrong architecture, unsupported format. The previous checkpoint keeps working."""

    default_reason = "CHECKPOINT_LOAD_FAILED"


class OutsideModelRoots(errors.FailedPrecondition):
    """A path from the registry resolves (symlinks followed) outside the user-models and models volumes and
    every library root the registry lists."""

    default_reason = "OUTSIDE_MODEL_ROOTS"


class LoraIncompatible(errors.FailedPrecondition):
    default_reason = "LORA_INCOMPATIBLE"


class ControlNetLoadFailed(errors.FailedPrecondition):
    default_reason = "CONTROLNET_LOAD_FAILED"


class OutOfMemory(errors.ResourceExhausted):
    default_reason = "OUT_OF_MEMORY"


class QueueFull(errors.ResourceExhausted):
    default_reason = "QUEUE_FULL"


class RegistryUnavailable(errors.Unavailable):
    default_reason = "REGISTRY_UNAVAILABLE"


class WorkerLost(errors.Unavailable):
    """A fleet worker died (or its node went away) while it held the job; another serves the next one."""

    default_reason = "WORKER_LOST"


class NoWorkers(errors.Unavailable):
    """The fleet has no worker that can take the job (none started yet, or all gone)."""

    default_reason = "NO_WORKERS"


class ModelFileUnverified(errors.FailedPrecondition):
    """A worker without the shared volume fetches model files by sha256 (node_cache.py): the registry has
    none for this file yet (hashed in the background), or the bytes it sent do not hash to it."""

    default_reason = "MODEL_FILE_UNVERIFIED"


class NodeCacheFull(errors.ResourceExhausted):
    """The file does not fit the node cache's byte bound beside the files jobs are using."""

    default_reason = "NODE_CACHE_FULL"


class InvalidOutputId(InvalidRequest):
    """An output id this service could not have made (a path, a wildcard...): refused before any file is touched."""

    default_reason = "INVALID_OUTPUT_ID"


class InvalidPageSize(InvalidRequest):
    default_reason = "INVALID_PAGE_SIZE"


class InvalidPageToken(InvalidRequest):
    default_reason = "INVALID_PAGE_TOKEN"


class OutputNotFound(errors.NotFound):
    default_reason = "OUTPUT_NOT_FOUND"


class JobCancelled(errors.Cancelled):
    """Raised inside a running job (from the step callback) when its client went away."""

    default_reason = "CANCELLED"


class InvalidRegion(InvalidRequest):
    """An upscale region that is empty, lies outside the image, or one too many."""

    default_reason = "INVALID_REGION"


class VaeNotFound(errors.NotFound):
    default_reason = "VAE_NOT_FOUND"


class UpscalerNotFound(errors.NotFound):
    default_reason = "UPSCALER_NOT_FOUND"


class VaeLoadFailed(errors.FailedPrecondition):
    """Unreadable, or not a VAE the checkpoint's decoder takes (other tensors, other shapes)."""

    default_reason = "VAE_LOAD_FAILED"


class UpscalerLoadFailed(errors.FailedPrecondition):
    """Unreadable, an architecture spandrel does not recognise, or a pickle the weights-only unpickler refuses."""

    default_reason = "UPSCALER_LOAD_FAILED"


class EmbeddingLoadFailed(errors.FailedPrecondition):
    """Unreadable, or without the `clip_l` and `clip_g` tensors of an SDXL embedding."""

    default_reason = "EMBEDDING_LOAD_FAILED"


class EmbeddingIncompatible(errors.FailedPrecondition):
    """Vectors whose widths are not the checkpoint's text encoders'."""

    default_reason = "EMBEDDING_INCOMPATIBLE"
