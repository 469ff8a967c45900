"""Domain errors of the registry: service_kit leaves with stable reasons.

Each class fixes one reason so that code catching a case and the proto
documentation agree on one name.
"""

from __future__ import annotations

from pathlib import Path

from service_kit import errors

DOMAIN = "registry.modelmanager"


class InvalidFilename(errors.InvalidArgument):
    default_reason = "INVALID_FILENAME"


class UnsupportedExtension(errors.InvalidArgument):
    default_reason = "UNSUPPORTED_EXTENSION"


class PickleNotAllowed(errors.InvalidArgument):
    default_reason = "PICKLE_NOT_ALLOWED"


class InvalidSafetensors(errors.InvalidArgument):
    default_reason = "INVALID_SAFETENSORS"


class TypeMismatch(errors.InvalidArgument):
    default_reason = "TYPE_MISMATCH"


class MissingType(errors.InvalidArgument):
    default_reason = "MISSING_TYPE"


class InvalidWeight(errors.InvalidArgument):
    default_reason = "INVALID_WEIGHT"


class InvalidUpdateMask(errors.InvalidArgument):
    default_reason = "INVALID_UPDATE_MASK"


class InvalidPageToken(errors.InvalidArgument):
    default_reason = "INVALID_PAGE_TOKEN"


class InvalidPageSize(errors.InvalidArgument):
    default_reason = "INVALID_PAGE_SIZE"


class MissingHeader(errors.InvalidArgument):
    default_reason = "MISSING_HEADER"


class FieldTooLong(errors.InvalidArgument):
    """A text field (or one item of a list) over its limit (see limits.py)."""

    default_reason = "FIELD_TOO_LONG"


class TooManyItems(errors.InvalidArgument):
    default_reason = "TOO_MANY_ITEMS"


class ModelNotFound(errors.NotFound):
    default_reason = "MODEL_NOT_FOUND"


class FileNotFound(errors.NotFound):
    default_reason = "FILE_NOT_FOUND"


class LoraNotFound(errors.NotFound):
    default_reason = "LORA_NOT_FOUND"


class CheckpointNotFound(errors.NotFound):
    default_reason = "CHECKPOINT_NOT_FOUND"


class ModelAlreadyExists(errors.AlreadyExists):
    default_reason = "MODEL_ALREADY_EXISTS"


class ActiveCheckpoint(errors.FailedPrecondition):
    default_reason = "ACTIVE_CHECKPOINT"


class NotACheckpoint(errors.FailedPrecondition):
    default_reason = "NOT_A_CHECKPOINT"


class NotALora(errors.FailedPrecondition):
    default_reason = "NOT_A_LORA"


class FileMissing(errors.FailedPrecondition):
    default_reason = "FILE_MISSING"


class Sha256Mismatch(errors.FailedPrecondition):
    """A sha256 the client gave (CreateModel, or UploadModel's expected_sha256) disagrees with the bytes:
    the client's data is wrong, so FAILED_PRECONDITION (400), never DATA_LOSS (500)."""

    default_reason = "SHA256_MISMATCH"


class OutsideVolume(errors.FailedPrecondition):
    """The model's file is a symlink (or lies under one) whose target is outside the volume: never read."""

    default_reason = "OUTSIDE_VOLUME"


class ModelBusy(errors.Aborted):
    """The model is being deleted right now; a change to it would race the delete."""

    default_reason = "MODEL_BUSY"


class UploadTooLarge(errors.ResourceExhausted):
    default_reason = "UPLOAD_TOO_LARGE"


class IndexWriteFailed(errors.Unavailable):
    default_reason = "INDEX_WRITE_FAILED"


class CorruptIndexError(Exception):
    """The index file cannot be read; start-up stops and the file is left untouched."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"registry index {path} is unreadable ({detail}); it was left untouched. "
            f"Repair it or move it away (a fresh index is created when none exists) and start again."
        )
        self.path = path
        self.detail = detail
