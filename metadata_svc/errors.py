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


class UnsafePickle(errors.InvalidArgument):
    """A pickle that torch's weights-only unpickler refuses: it holds more than tensors and plain data."""

    default_reason = "UNSAFE_PICKLE"


class NotAVae(errors.InvalidArgument):
    default_reason = "NOT_A_VAE"


class VaeNotFound(errors.NotFound):
    default_reason = "VAE_NOT_FOUND"


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


class InvalidType(errors.InvalidArgument):
    """ListModels' type filter is not a ModelType this registry knows."""

    default_reason = "INVALID_TYPE"


class MissingHeader(errors.InvalidArgument):
    default_reason = "MISSING_HEADER"


class DuplicateHeader(errors.InvalidArgument):
    """An upload sent a second header after the first."""

    default_reason = "DUPLICATE_HEADER"


class InvalidSize(errors.InvalidArgument):
    """An upload's total_size_bytes is negative."""

    default_reason = "INVALID_SIZE"


class InvalidSha256(errors.InvalidArgument):
    """An upload's expected_sha256 (or ReadModelFile's sha256) is not 64 hex digits."""

    default_reason = "INVALID_SHA256"


class SizeMismatch(errors.InvalidArgument):
    """More or fewer bytes arrived than the upload's total_size_bytes announced."""

    default_reason = "SIZE_MISMATCH"


class NotCommitted(errors.InvalidArgument):
    """An upload with require_commit ended without its commit message."""

    default_reason = "NOT_COMMITTED"


class AmbiguousLora(errors.InvalidArgument):
    """A LoRA name that matches several LoRAs; the filename is unambiguous."""

    default_reason = "AMBIGUOUS_LORA"


class DuplicateLora(errors.InvalidArgument):
    """The same LoRA is selected twice in one ComposePrompt."""

    default_reason = "DUPLICATE_LORA"


class FieldTooLong(errors.InvalidArgument):
    """A text field (or one item of a list) over its limit (see limits.py)."""

    default_reason = "FIELD_TOO_LONG"


class TooManyItems(errors.InvalidArgument):
    default_reason = "TOO_MANY_ITEMS"


class MissingTags(errors.InvalidArgument):
    """BatchUpdateTags names no tag to add or remove."""

    default_reason = "MISSING_TAGS"


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


class FileChanged(errors.FailedPrecondition):
    """ReadModelFile: the file no longer is what its entry hashed (another size or mtime), or it
    changed while it was being sent. A rescan or re-import hashes it again."""

    default_reason = "FILE_CHANGED"


class InvalidOffset(errors.OutOfRange):
    """ReadModelFile's offset is negative or past the end of the file."""

    default_reason = "INVALID_OFFSET"


class ModelBusy(errors.Aborted):
    """The model is being deleted right now; a change to it would race the delete."""

    default_reason = "MODEL_BUSY"


class UploadInProgress(errors.Aborted):
    """The filename is reserved by an upload that is still running; it is free again when that ends."""

    default_reason = "UPLOAD_IN_PROGRESS"


class UploadIdleTimeout(errors.DeadlineExceeded):
    """The client sent nothing for the configured idle time; the upload was abandoned."""

    default_reason = "UPLOAD_IDLE_TIMEOUT"


class UploadTooLarge(errors.ResourceExhausted):
    default_reason = "UPLOAD_TOO_LARGE"


class IndexWriteFailed(errors.Unavailable):
    default_reason = "INDEX_WRITE_FAILED"


# Library roots and imports.


class InvalidRootPath(errors.InvalidArgument):
    """Not an absolute path to an existing folder."""

    default_reason = "INVALID_ROOT_PATH"


class RootNotAllowed(errors.PermissionDenied):
    """The folder is not under one of the registry's --library-allow folders."""

    default_reason = "ROOT_NOT_ALLOWED"


class RootAlreadyExists(errors.AlreadyExists):
    default_reason = "ROOT_ALREADY_EXISTS"


class RootOverlaps(errors.FailedPrecondition):
    """The folder is inside or around the volume or another root."""

    default_reason = "ROOT_OVERLAPS"


class RootNotFound(errors.NotFound):
    default_reason = "ROOT_NOT_FOUND"


class MissingSelector(errors.InvalidArgument):
    default_reason = "MISSING_SELECTOR"


class InvalidImportMode(errors.InvalidArgument):
    default_reason = "INVALID_IMPORT_MODE"


class ImportInProgress(errors.Aborted):
    default_reason = "IMPORT_IN_PROGRESS"


class ImportNotFound(errors.NotFound):
    default_reason = "IMPORT_NOT_FOUND"


class CivitaiUnavailable(errors.Unavailable):
    """The CivitAI service did not answer (service_kit.peer's rule names it so)."""

    default_reason = "CIVITAI_UNAVAILABLE"


# Previews.


class PreviewNotFound(errors.NotFound):
    default_reason = "PREVIEW_NOT_FOUND"


class InvalidImage(errors.InvalidArgument):
    default_reason = "INVALID_IMAGE"


class ImageTooLarge(errors.ResourceExhausted):
    default_reason = "IMAGE_TOO_LARGE"


class CorruptIndexError(Exception):
    """The index file cannot be read; start-up stops and the file is left untouched."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"registry index {path} is unreadable ({detail}); it was left untouched. "
            f"Repair it or move it away (a fresh index is created when none exists) and start again."
        )
        self.path = path
        self.detail = detail
