import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from modelmanager.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_MODE_UNSPECIFIED: _ClassVar[ImportMode]
    IMPORT_MODE_IN_PLACE: _ClassVar[ImportMode]
    IMPORT_MODE_LINK: _ClassVar[ImportMode]
    IMPORT_MODE_COPY: _ClassVar[ImportMode]

class ImportState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_STATE_UNSPECIFIED: _ClassVar[ImportState]
    IMPORT_STATE_QUEUED: _ClassVar[ImportState]
    IMPORT_STATE_SCANNING: _ClassVar[ImportState]
    IMPORT_STATE_HASHING: _ClassVar[ImportState]
    IMPORT_STATE_IDENTIFYING: _ClassVar[ImportState]
    IMPORT_STATE_SUCCEEDED: _ClassVar[ImportState]
    IMPORT_STATE_FAILED: _ClassVar[ImportState]
    IMPORT_STATE_CANCELLED: _ClassVar[ImportState]
IMPORT_MODE_UNSPECIFIED: ImportMode
IMPORT_MODE_IN_PLACE: ImportMode
IMPORT_MODE_LINK: ImportMode
IMPORT_MODE_COPY: ImportMode
IMPORT_STATE_UNSPECIFIED: ImportState
IMPORT_STATE_QUEUED: ImportState
IMPORT_STATE_SCANNING: ImportState
IMPORT_STATE_HASHING: ImportState
IMPORT_STATE_IDENTIFYING: ImportState
IMPORT_STATE_SUCCEEDED: ImportState
IMPORT_STATE_FAILED: ImportState
IMPORT_STATE_CANCELLED: ImportState

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "type", "base_model", "query", "root_id", "folder")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ROOT_ID_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    type: _model_pb2.ModelType
    base_model: str
    query: str
    root_id: str
    folder: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., type: _Optional[_Union[_model_pb2.ModelType, str]] = ..., base_model: _Optional[str] = ..., query: _Optional[str] = ..., root_id: _Optional[str] = ..., folder: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token", "total_size")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.Model]
    next_page_token: str
    total_size: int
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("filename",)
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    filename: str
    def __init__(self, filename: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("model", "update_mask")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("filename", "keep_file", "delete_file")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    KEEP_FILE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FILE_FIELD_NUMBER: _ClassVar[int]
    filename: str
    keep_file: bool
    delete_file: bool
    def __init__(self, filename: _Optional[str] = ..., keep_file: _Optional[bool] = ..., delete_file: _Optional[bool] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class UploadModelHeader(_message.Message):
    __slots__ = ("filename", "type", "display_name", "short_name", "trigger_words", "recommended_weight", "base_model", "tags", "description", "expected_sha256", "total_size_bytes", "civitai_model_id", "civitai_version_id", "civitai_url", "require_commit")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SHORT_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_URL_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_COMMIT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    type: _model_pb2.ModelType
    display_name: str
    short_name: str
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    recommended_weight: float
    base_model: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    description: str
    expected_sha256: str
    total_size_bytes: int
    civitai_model_id: int
    civitai_version_id: int
    civitai_url: str
    require_commit: bool
    def __init__(self, filename: _Optional[str] = ..., type: _Optional[_Union[_model_pb2.ModelType, str]] = ..., display_name: _Optional[str] = ..., short_name: _Optional[str] = ..., trigger_words: _Optional[_Iterable[str]] = ..., recommended_weight: _Optional[float] = ..., base_model: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., expected_sha256: _Optional[str] = ..., total_size_bytes: _Optional[int] = ..., civitai_model_id: _Optional[int] = ..., civitai_version_id: _Optional[int] = ..., civitai_url: _Optional[str] = ..., require_commit: _Optional[bool] = ...) -> None: ...

class UploadModelCommit(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("header", "chunk", "commit")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    header: UploadModelHeader
    chunk: bytes
    commit: UploadModelCommit
    def __init__(self, header: _Optional[_Union[UploadModelHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., commit: _Optional[_Union[UploadModelCommit, _Mapping]] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class GetActiveCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetActiveCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "path", "model", "file_present")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FILE_PRESENT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    path: str
    model: _model_pb2.Model
    file_present: bool
    def __init__(self, checkpoint: _Optional[str] = ..., path: _Optional[str] = ..., model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ..., file_present: _Optional[bool] = ...) -> None: ...

class SetActiveCheckpointRequest(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    def __init__(self, checkpoint: _Optional[str] = ...) -> None: ...

class SetActiveCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "path", "model", "file_present")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FILE_PRESENT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    path: str
    model: _model_pb2.Model
    file_present: bool
    def __init__(self, checkpoint: _Optional[str] = ..., path: _Optional[str] = ..., model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ..., file_present: _Optional[bool] = ...) -> None: ...

class ComposePromptRequest(_message.Message):
    __slots__ = ("prompt", "loras")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    loras: _containers.RepeatedCompositeFieldContainer[_model_pb2.LoraSelection]
    def __init__(self, prompt: _Optional[str] = ..., loras: _Optional[_Iterable[_Union[_model_pb2.LoraSelection, _Mapping]]] = ...) -> None: ...

class ComposePromptResponse(_message.Message):
    __slots__ = ("prompt", "injected_trigger_words", "loras")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    INJECTED_TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    injected_trigger_words: _containers.RepeatedScalarFieldContainer[str]
    loras: _containers.RepeatedCompositeFieldContainer[_model_pb2.ResolvedLora]
    def __init__(self, prompt: _Optional[str] = ..., injected_trigger_words: _Optional[_Iterable[str]] = ..., loras: _Optional[_Iterable[_Union[_model_pb2.ResolvedLora, _Mapping]]] = ...) -> None: ...

class RescanModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RescanModelsResponse(_message.Message):
    __slots__ = ("added", "missing_filenames", "skipped")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FILENAMES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    added: _containers.RepeatedCompositeFieldContainer[_model_pb2.Model]
    missing_filenames: _containers.RepeatedScalarFieldContainer[str]
    skipped: _containers.RepeatedCompositeFieldContainer[RescanSkippedFile]
    def __init__(self, added: _Optional[_Iterable[_Union[_model_pb2.Model, _Mapping]]] = ..., missing_filenames: _Optional[_Iterable[str]] = ..., skipped: _Optional[_Iterable[_Union[RescanSkippedFile, _Mapping]]] = ...) -> None: ...

class RescanSkippedFile(_message.Message):
    __slots__ = ("path", "reason")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    path: str
    reason: str
    def __init__(self, path: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LibraryRoot(_message.Message):
    __slots__ = ("id", "path", "write_back", "added_at", "model_count", "from_flag")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WRITE_BACK_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    FROM_FLAG_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    write_back: bool
    added_at: _timestamp_pb2.Timestamp
    model_count: int
    from_flag: bool
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ..., write_back: _Optional[bool] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_count: _Optional[int] = ..., from_flag: _Optional[bool] = ...) -> None: ...

class AddLibraryRootRequest(_message.Message):
    __slots__ = ("path", "write_back")
    PATH_FIELD_NUMBER: _ClassVar[int]
    WRITE_BACK_FIELD_NUMBER: _ClassVar[int]
    path: str
    write_back: bool
    def __init__(self, path: _Optional[str] = ..., write_back: _Optional[bool] = ...) -> None: ...

class AddLibraryRootResponse(_message.Message):
    __slots__ = ("root",)
    ROOT_FIELD_NUMBER: _ClassVar[int]
    root: LibraryRoot
    def __init__(self, root: _Optional[_Union[LibraryRoot, _Mapping]] = ...) -> None: ...

class ListLibraryRootsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLibraryRootsResponse(_message.Message):
    __slots__ = ("roots",)
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    roots: _containers.RepeatedCompositeFieldContainer[LibraryRoot]
    def __init__(self, roots: _Optional[_Iterable[_Union[LibraryRoot, _Mapping]]] = ...) -> None: ...

class RemoveLibraryRootRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RemoveLibraryRootResponse(_message.Message):
    __slots__ = ("root", "removed_models")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_MODELS_FIELD_NUMBER: _ClassVar[int]
    root: LibraryRoot
    removed_models: int
    def __init__(self, root: _Optional[_Union[LibraryRoot, _Mapping]] = ..., removed_models: _Optional[int] = ...) -> None: ...

class StartImportRequest(_message.Message):
    __slots__ = ("path", "root_id", "mode", "no_identify", "write_back", "force_identify")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROOT_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NO_IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    WRITE_BACK_FIELD_NUMBER: _ClassVar[int]
    FORCE_IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    path: str
    root_id: str
    mode: ImportMode
    no_identify: bool
    write_back: bool
    force_identify: bool
    def __init__(self, path: _Optional[str] = ..., root_id: _Optional[str] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., no_identify: _Optional[bool] = ..., write_back: _Optional[bool] = ..., force_identify: _Optional[bool] = ...) -> None: ...

class StartImportResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: ImportJob
    def __init__(self, job: _Optional[_Union[ImportJob, _Mapping]] = ...) -> None: ...

class ImportJob(_message.Message):
    __slots__ = ("id", "root_id", "path", "mode", "state", "files_seen", "models_found", "registered", "already_known", "missing", "files_hashed", "files_to_hash", "bytes_hashed", "bytes_to_hash", "identified", "not_on_civitai", "identify_failed", "skipped", "error", "error_reason", "created_at", "finished_at", "identify_note")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FILES_SEEN_FIELD_NUMBER: _ClassVar[int]
    MODELS_FOUND_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_KNOWN_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    FILES_HASHED_FIELD_NUMBER: _ClassVar[int]
    FILES_TO_HASH_FIELD_NUMBER: _ClassVar[int]
    BYTES_HASHED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TO_HASH_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_FIELD_NUMBER: _ClassVar[int]
    NOT_ON_CIVITAI_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    root_id: str
    path: str
    mode: ImportMode
    state: ImportState
    files_seen: int
    models_found: int
    registered: int
    already_known: int
    missing: int
    files_hashed: int
    files_to_hash: int
    bytes_hashed: int
    bytes_to_hash: int
    identified: int
    not_on_civitai: int
    identify_failed: int
    skipped: _containers.RepeatedCompositeFieldContainer[RescanSkippedFile]
    error: str
    error_reason: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    identify_note: str
    def __init__(self, id: _Optional[str] = ..., root_id: _Optional[str] = ..., path: _Optional[str] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., state: _Optional[_Union[ImportState, str]] = ..., files_seen: _Optional[int] = ..., models_found: _Optional[int] = ..., registered: _Optional[int] = ..., already_known: _Optional[int] = ..., missing: _Optional[int] = ..., files_hashed: _Optional[int] = ..., files_to_hash: _Optional[int] = ..., bytes_hashed: _Optional[int] = ..., bytes_to_hash: _Optional[int] = ..., identified: _Optional[int] = ..., not_on_civitai: _Optional[int] = ..., identify_failed: _Optional[int] = ..., skipped: _Optional[_Iterable[_Union[RescanSkippedFile, _Mapping]]] = ..., error: _Optional[str] = ..., error_reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identify_note: _Optional[str] = ...) -> None: ...

class GetImportRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetImportResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: ImportJob
    def __init__(self, job: _Optional[_Union[ImportJob, _Mapping]] = ...) -> None: ...

class WatchImportRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchImportResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: ImportJob
    def __init__(self, job: _Optional[_Union[ImportJob, _Mapping]] = ...) -> None: ...

class ListImportsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListImportsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[ImportJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[ImportJob, _Mapping]]] = ...) -> None: ...

class CancelImportRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelImportResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: ImportJob
    def __init__(self, job: _Optional[_Union[ImportJob, _Mapping]] = ...) -> None: ...

class RefreshFromCivitaiRequest(_message.Message):
    __slots__ = ("filenames", "force")
    FILENAMES_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    filenames: _containers.RepeatedScalarFieldContainer[str]
    force: bool
    def __init__(self, filenames: _Optional[_Iterable[str]] = ..., force: _Optional[bool] = ...) -> None: ...

class RefreshFromCivitaiResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.Model]
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.Model, _Mapping]]] = ...) -> None: ...

class GetPreviewRequest(_message.Message):
    __slots__ = ("filename",)
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    filename: str
    def __init__(self, filename: _Optional[str] = ...) -> None: ...

class GetPreviewResponse(_message.Message):
    __slots__ = ("image", "preview")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    preview: _model_pb2.ModelPreview
    def __init__(self, image: _Optional[bytes] = ..., preview: _Optional[_Union[_model_pb2.ModelPreview, _Mapping]] = ...) -> None: ...

class SetPreviewRequest(_message.Message):
    __slots__ = ("filename", "image", "nsfw_level", "source")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NSFW_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    filename: str
    image: bytes
    nsfw_level: int
    source: str
    def __init__(self, filename: _Optional[str] = ..., image: _Optional[bytes] = ..., nsfw_level: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class SetPreviewResponse(_message.Message):
    __slots__ = ("preview",)
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    preview: _model_pb2.ModelPreview
    def __init__(self, preview: _Optional[_Union[_model_pb2.ModelPreview, _Mapping]] = ...) -> None: ...

class ListDuplicatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDuplicatesResponse(_message.Message):
    __slots__ = ("groups", "reclaimable_bytes", "unhashed")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    RECLAIMABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNHASHED_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[DuplicateGroup]
    reclaimable_bytes: int
    unhashed: int
    def __init__(self, groups: _Optional[_Iterable[_Union[DuplicateGroup, _Mapping]]] = ..., reclaimable_bytes: _Optional[int] = ..., unhashed: _Optional[int] = ...) -> None: ...

class DuplicateGroup(_message.Message):
    __slots__ = ("sha256", "size_bytes", "entries", "reclaimable_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    entries: _containers.RepeatedCompositeFieldContainer[DuplicateEntry]
    reclaimable_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[DuplicateEntry, _Mapping]]] = ..., reclaimable_bytes: _Optional[int] = ...) -> None: ...

class DuplicateEntry(_message.Message):
    __slots__ = ("model", "file_number")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FILE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    file_number: int
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ..., file_number: _Optional[int] = ...) -> None: ...

class GetDiskUsageRequest(_message.Message):
    __slots__ = ("biggest",)
    BIGGEST_FIELD_NUMBER: _ClassVar[int]
    biggest: int
    def __init__(self, biggest: _Optional[int] = ...) -> None: ...

class GetDiskUsageResponse(_message.Message):
    __slots__ = ("by_type", "by_root", "biggest", "total_bytes", "model_count", "volume_free_bytes", "volume_total_bytes", "missing_count")
    BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    BY_ROOT_FIELD_NUMBER: _ClassVar[int]
    BIGGEST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    VOLUME_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MISSING_COUNT_FIELD_NUMBER: _ClassVar[int]
    by_type: _containers.RepeatedCompositeFieldContainer[TypeDiskUsage]
    by_root: _containers.RepeatedCompositeFieldContainer[RootDiskUsage]
    biggest: _containers.RepeatedCompositeFieldContainer[_model_pb2.Model]
    total_bytes: int
    model_count: int
    volume_free_bytes: int
    volume_total_bytes: int
    missing_count: int
    def __init__(self, by_type: _Optional[_Iterable[_Union[TypeDiskUsage, _Mapping]]] = ..., by_root: _Optional[_Iterable[_Union[RootDiskUsage, _Mapping]]] = ..., biggest: _Optional[_Iterable[_Union[_model_pb2.Model, _Mapping]]] = ..., total_bytes: _Optional[int] = ..., model_count: _Optional[int] = ..., volume_free_bytes: _Optional[int] = ..., volume_total_bytes: _Optional[int] = ..., missing_count: _Optional[int] = ...) -> None: ...

class TypeDiskUsage(_message.Message):
    __slots__ = ("type", "bytes", "model_count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    type: _model_pb2.ModelType
    bytes: int
    model_count: int
    def __init__(self, type: _Optional[_Union[_model_pb2.ModelType, str]] = ..., bytes: _Optional[int] = ..., model_count: _Optional[int] = ...) -> None: ...

class RootDiskUsage(_message.Message):
    __slots__ = ("root_id", "path", "bytes", "model_count", "free_bytes", "filesystem_bytes")
    ROOT_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_BYTES_FIELD_NUMBER: _ClassVar[int]
    root_id: str
    path: str
    bytes: int
    model_count: int
    free_bytes: int
    filesystem_bytes: int
    def __init__(self, root_id: _Optional[str] = ..., path: _Optional[str] = ..., bytes: _Optional[int] = ..., model_count: _Optional[int] = ..., free_bytes: _Optional[int] = ..., filesystem_bytes: _Optional[int] = ...) -> None: ...

class BatchUpdateTagsRequest(_message.Message):
    __slots__ = ("filenames", "add_tags", "remove_tags")
    FILENAMES_FIELD_NUMBER: _ClassVar[int]
    ADD_TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    filenames: _containers.RepeatedScalarFieldContainer[str]
    add_tags: _containers.RepeatedScalarFieldContainer[str]
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filenames: _Optional[_Iterable[str]] = ..., add_tags: _Optional[_Iterable[str]] = ..., remove_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchUpdateTagsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.Model]
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.Model, _Mapping]]] = ...) -> None: ...

class ReadModelFileRequest(_message.Message):
    __slots__ = ("sha256", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ReadModelFileResponse(_message.Message):
    __slots__ = ("chunk", "offset", "total_size")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    offset: int
    total_size: int
    def __init__(self, chunk: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...
