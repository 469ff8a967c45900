"""The CivitAI service's errors: service_kit leaves with this service's stable reasons.

One class per case a caller (or our own code) needs to tell apart. Messages
never carry the token: they are built from CivitAI's own error text and our
words, and `redact_text` runs over anything upstream before it lands here.
"""

from __future__ import annotations

from service_kit import errors as errors  # re-exported: callers name the base types as E.errors.*
from service_kit.logs import redact_text

DOMAIN = "civitai.modelmanager"

TOKEN_HINT = "set CIVITAI_TOKEN (or pass a token with the request) to an API key from civitai.com/user/account"

ACCEPTED_FORMS = (
    "https://civitai.com/models/{modelId}[/{slug}][?modelVersionId={versionId}]; "
    "https://civitai.com/model-versions/{versionId}; "
    "https://civitai.com/api/download/models/{versionId}[?fileId={fileId}&...]; "
    "https://civitai.com/api/v1/models/{modelId}, /api/v1/model-versions/{versionId}, "
    "/api/v1/model-versions/by-hash/{hash} "
    "(hosts civitai.com, civitai.red, civitai.green, with or without www.); "
    "a bare number (a model id); v:{versionId}; a 64-hex sha256 (or sha256:{hash}, hash:{hash}); "
    "an AIR such as urn:air:sdxl:lora:civitai:{modelId}@{versionId}"
)


class InvalidReference(errors.InvalidArgument):
    default_reason = "INVALID_REFERENCE"

    def __init__(self, reference: str, why: str) -> None:
        shown = redact_text(reference)[:200]
        super().__init__(
            f"cannot read {shown!r} as a CivitAI reference ({why}); accepted forms: {ACCEPTED_FORMS}",
            metadata={"reference": shown, "why": why},
        )


class MissingSelector(errors.InvalidArgument):
    """The request names nothing to look up (no reference, id, sha256 or filename)."""

    default_reason = "MISSING_SELECTOR"


class InvalidSha256(errors.InvalidArgument):
    default_reason = "INVALID_SHA256"


class InvalidPageSize(errors.InvalidArgument):
    default_reason = "INVALID_PAGE_SIZE"


class InvalidPageToken(errors.InvalidArgument):
    default_reason = "INVALID_PAGE_TOKEN"


class InvalidSort(errors.InvalidArgument):
    default_reason = "INVALID_SORT"


class InvalidPeriod(errors.InvalidArgument):
    default_reason = "INVALID_PERIOD"


class CivitaiUnauthenticated(errors.Unauthenticated):
    default_reason = "CIVITAI_UNAUTHENTICATED"


class EarlyAccess(errors.FailedPrecondition):
    default_reason = "EARLY_ACCESS"


class CivitaiForbidden(errors.PermissionDenied):
    default_reason = "CIVITAI_FORBIDDEN"


class CivitaiNotFound(errors.NotFound):
    default_reason = "CIVITAI_NOT_FOUND"


class ModelArchived(errors.FailedPrecondition):
    default_reason = "MODEL_ARCHIVED"


class TooManyItems(errors.InvalidArgument):
    """A bulk request over its limit (IdentifyFiles: 1,000 hashes)."""

    default_reason = "TOO_MANY_ITEMS"


class CivitaiUnavailable(errors.Unavailable):
    default_reason = "CIVITAI_UNAVAILABLE"


class CivitaiBadRequest(errors.InvalidArgument):
    default_reason = "CIVITAI_BAD_REQUEST"


class UnsupportedModelType(errors.FailedPrecondition):
    default_reason = "UNSUPPORTED_MODEL_TYPE"


class NoModelFile(errors.FailedPrecondition):
    """The version has no file we can install (only training data, or nothing), or the file asked for
    is training data (never installed)."""

    default_reason = "NO_MODEL_FILE"


class FileNotFound(errors.NotFound):
    """The reference names a file (id, or type/format/size/fp) that the version does not have."""

    default_reason = "FILE_NOT_FOUND"


class NotAModelFile(errors.FailedPrecondition):
    """CivitAI (or its storage) answered with a web page or JSON instead of the file."""

    default_reason = "NOT_A_MODEL_FILE"


class Sha256Mismatch(errors.DataLoss):
    default_reason = "SHA256_MISMATCH"


class IncompleteDownload(errors.DataLoss):
    default_reason = "INCOMPLETE_DOWNLOAD"


class InsufficientDiskSpace(errors.ResourceExhausted):
    default_reason = "INSUFFICIENT_DISK_SPACE"


class NoFreeFileName(errors.AlreadyExists):
    """Every name the installer would give the file (its name, then with `-{versionId}` and `-2`... added)
    is held by a file on the volume, a registered model or a running job. ALREADY_EXISTS, not
    RESOURCE_EXHAUSTED: existing files are in the way, and retrying later does not help until one goes."""

    default_reason = "NO_FREE_FILENAME"


class VolumeWriteFailed(errors.Internal):
    """The models volume refused a write for a reason other than a full disk (the errno is in metadata)."""

    default_reason = "VOLUME_WRITE_FAILED"


class DownloadCrashed(errors.Internal):
    """A download job failed on an unexpected exception; the details are in the server log only."""

    default_reason = "INTERNAL"


class NoSha256(errors.FailedPrecondition):
    """IdentifyFile of a registry file that has no sha256 recorded."""

    default_reason = "NO_SHA256"


class RegistryUnavailable(errors.Unavailable):
    """The model registry cannot be reached (it gave no status of its own)."""

    default_reason = "REGISTRY_UNAVAILABLE"


class JobNotFound(errors.NotFound):
    default_reason = "JOB_NOT_FOUND"


class ModelNotFound(errors.NotFound):
    """A registry filename that is not installed."""

    default_reason = "MODEL_NOT_FOUND"


class InvalidId(errors.InvalidArgument):
    """A CivitAI model or version id that is not positive (IgnoreUpdate, UnignoreUpdate)."""

    default_reason = "INVALID_ID"


class TooManyIgnored(errors.ResourceExhausted):
    """IgnoreUpdate past the bound on ignored versions (the store is read whole at each check)."""

    default_reason = "TOO_MANY_IGNORED"


class NotSameModel(errors.FailedPrecondition):
    """StartDownload's `replaces` names an entry of another CivitAI model (or the version itself)."""

    default_reason = "NOT_SAME_MODEL"
