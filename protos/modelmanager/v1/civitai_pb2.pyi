import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from modelmanager.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReferenceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFERENCE_KIND_UNSPECIFIED: _ClassVar[ReferenceKind]
    REFERENCE_KIND_MODEL: _ClassVar[ReferenceKind]
    REFERENCE_KIND_VERSION: _ClassVar[ReferenceKind]
    REFERENCE_KIND_HASH: _ClassVar[ReferenceKind]

class DownloadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOWNLOAD_STATE_UNSPECIFIED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_QUEUED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_RUNNING: _ClassVar[DownloadState]
    DOWNLOAD_STATE_VERIFYING: _ClassVar[DownloadState]
    DOWNLOAD_STATE_REGISTERING: _ClassVar[DownloadState]
    DOWNLOAD_STATE_SUCCEEDED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_FAILED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_CANCELLED: _ClassVar[DownloadState]
REFERENCE_KIND_UNSPECIFIED: ReferenceKind
REFERENCE_KIND_MODEL: ReferenceKind
REFERENCE_KIND_VERSION: ReferenceKind
REFERENCE_KIND_HASH: ReferenceKind
DOWNLOAD_STATE_UNSPECIFIED: DownloadState
DOWNLOAD_STATE_QUEUED: DownloadState
DOWNLOAD_STATE_RUNNING: DownloadState
DOWNLOAD_STATE_VERIFYING: DownloadState
DOWNLOAD_STATE_REGISTERING: DownloadState
DOWNLOAD_STATE_SUCCEEDED: DownloadState
DOWNLOAD_STATE_FAILED: DownloadState
DOWNLOAD_STATE_CANCELLED: DownloadState

class CivitaiReference(_message.Message):
    __slots__ = ("kind", "model_id", "version_id", "file_id", "hash", "host", "original")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    kind: ReferenceKind
    model_id: int
    version_id: int
    file_id: int
    hash: str
    host: str
    original: str
    def __init__(self, kind: _Optional[_Union[ReferenceKind, str]] = ..., model_id: _Optional[int] = ..., version_id: _Optional[int] = ..., file_id: _Optional[int] = ..., hash: _Optional[str] = ..., host: _Optional[str] = ..., original: _Optional[str] = ...) -> None: ...

class ParseReferenceRequest(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class ParseReferenceResponse(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: CivitaiReference
    def __init__(self, reference: _Optional[_Union[CivitaiReference, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("reference", "model_id", "version_id", "sha256", "token")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    reference: str
    model_id: int
    version_id: int
    sha256: str
    token: str
    def __init__(self, reference: _Optional[str] = ..., model_id: _Optional[int] = ..., version_id: _Optional[int] = ..., sha256: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: CivitaiModelInfo
    def __init__(self, info: _Optional[_Union[CivitaiModelInfo, _Mapping]] = ...) -> None: ...

class CivitaiModelInfo(_message.Message):
    __slots__ = ("model_id", "version_id", "name", "version_name", "civitai_type", "model_type", "base_model", "trigger_words", "description", "tags", "creator", "nsfw", "file", "files", "versions", "images", "civitai_url", "air", "early_access_deadline", "supported", "recommended_weight", "installed_filename", "mode", "stats")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    NSFW_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_URL_FIELD_NUMBER: _ClassVar[int]
    AIR_FIELD_NUMBER: _ClassVar[int]
    EARLY_ACCESS_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_FILENAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    model_id: int
    version_id: int
    name: str
    version_name: str
    civitai_type: str
    model_type: _model_pb2.ModelType
    base_model: str
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    creator: str
    nsfw: bool
    file: CivitaiFile
    files: _containers.RepeatedCompositeFieldContainer[CivitaiFile]
    versions: _containers.RepeatedCompositeFieldContainer[CivitaiVersion]
    images: _containers.RepeatedCompositeFieldContainer[PreviewImage]
    civitai_url: str
    air: str
    early_access_deadline: _timestamp_pb2.Timestamp
    supported: bool
    recommended_weight: float
    installed_filename: str
    mode: str
    stats: CivitaiStats
    def __init__(self, model_id: _Optional[int] = ..., version_id: _Optional[int] = ..., name: _Optional[str] = ..., version_name: _Optional[str] = ..., civitai_type: _Optional[str] = ..., model_type: _Optional[_Union[_model_pb2.ModelType, str]] = ..., base_model: _Optional[str] = ..., trigger_words: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., creator: _Optional[str] = ..., nsfw: _Optional[bool] = ..., file: _Optional[_Union[CivitaiFile, _Mapping]] = ..., files: _Optional[_Iterable[_Union[CivitaiFile, _Mapping]]] = ..., versions: _Optional[_Iterable[_Union[CivitaiVersion, _Mapping]]] = ..., images: _Optional[_Iterable[_Union[PreviewImage, _Mapping]]] = ..., civitai_url: _Optional[str] = ..., air: _Optional[str] = ..., early_access_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., supported: _Optional[bool] = ..., recommended_weight: _Optional[float] = ..., installed_filename: _Optional[str] = ..., mode: _Optional[str] = ..., stats: _Optional[_Union[CivitaiStats, _Mapping]] = ...) -> None: ...

class CivitaiStats(_message.Message):
    __slots__ = ("download_count", "thumbs_up_count", "thumbs_down_count", "favorite_count", "comment_count", "rating", "rating_count")
    DOWNLOAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    THUMBS_UP_COUNT_FIELD_NUMBER: _ClassVar[int]
    THUMBS_DOWN_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAVORITE_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    RATING_COUNT_FIELD_NUMBER: _ClassVar[int]
    download_count: int
    thumbs_up_count: int
    thumbs_down_count: int
    favorite_count: int
    comment_count: int
    rating: float
    rating_count: int
    def __init__(self, download_count: _Optional[int] = ..., thumbs_up_count: _Optional[int] = ..., thumbs_down_count: _Optional[int] = ..., favorite_count: _Optional[int] = ..., comment_count: _Optional[int] = ..., rating: _Optional[float] = ..., rating_count: _Optional[int] = ...) -> None: ...

class CivitaiFile(_message.Message):
    __slots__ = ("id", "name", "size_bytes", "type", "format", "fp", "size", "sha256", "primary", "download_url", "pickle_scan_result", "virus_scan_result")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FP_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    PICKLE_SCAN_RESULT_FIELD_NUMBER: _ClassVar[int]
    VIRUS_SCAN_RESULT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    size_bytes: int
    type: str
    format: str
    fp: str
    size: str
    sha256: str
    primary: bool
    download_url: str
    pickle_scan_result: str
    virus_scan_result: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., type: _Optional[str] = ..., format: _Optional[str] = ..., fp: _Optional[str] = ..., size: _Optional[str] = ..., sha256: _Optional[str] = ..., primary: _Optional[bool] = ..., download_url: _Optional[str] = ..., pickle_scan_result: _Optional[str] = ..., virus_scan_result: _Optional[str] = ...) -> None: ...

class CivitaiVersion(_message.Message):
    __slots__ = ("id", "name", "base_model", "published_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    base_model: str
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., base_model: _Optional[str] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PreviewImage(_message.Message):
    __slots__ = ("url", "width", "height", "nsfw_level", "type")
    URL_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    NSFW_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    url: str
    width: int
    height: int
    nsfw_level: int
    type: str
    def __init__(self, url: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., nsfw_level: _Optional[int] = ..., type: _Optional[str] = ...) -> None: ...

class StartDownloadRequest(_message.Message):
    __slots__ = ("reference", "file_id", "token", "replaces", "delete_replaced")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    DELETE_REPLACED_FIELD_NUMBER: _ClassVar[int]
    reference: str
    file_id: int
    token: str
    replaces: str
    delete_replaced: bool
    def __init__(self, reference: _Optional[str] = ..., file_id: _Optional[int] = ..., token: _Optional[str] = ..., replaces: _Optional[str] = ..., delete_replaced: _Optional[bool] = ...) -> None: ...

class StartDownloadResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DownloadJob
    def __init__(self, job: _Optional[_Union[DownloadJob, _Mapping]] = ...) -> None: ...

class DownloadJob(_message.Message):
    __slots__ = ("id", "reference", "state", "model_id", "version_id", "file_id", "name", "filename", "model_type", "bytes_done", "total_bytes", "bytes_per_second", "eta_seconds", "resume_count", "model", "error", "create_time", "update_time", "already_installed", "bytes_transferred", "replaces", "delete_replaced", "carried_fields", "replaced_deleted", "replace_note")
    ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESUME_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ALREADY_INSTALLED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    DELETE_REPLACED_FIELD_NUMBER: _ClassVar[int]
    CARRIED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_DELETED_FIELD_NUMBER: _ClassVar[int]
    REPLACE_NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    reference: str
    state: DownloadState
    model_id: int
    version_id: int
    file_id: int
    name: str
    filename: str
    model_type: _model_pb2.ModelType
    bytes_done: int
    total_bytes: int
    bytes_per_second: float
    eta_seconds: float
    resume_count: int
    model: _model_pb2.Model
    error: _status_pb2.Status
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    already_installed: bool
    bytes_transferred: int
    replaces: str
    delete_replaced: bool
    carried_fields: _containers.RepeatedScalarFieldContainer[str]
    replaced_deleted: bool
    replace_note: str
    def __init__(self, id: _Optional[str] = ..., reference: _Optional[str] = ..., state: _Optional[_Union[DownloadState, str]] = ..., model_id: _Optional[int] = ..., version_id: _Optional[int] = ..., file_id: _Optional[int] = ..., name: _Optional[str] = ..., filename: _Optional[str] = ..., model_type: _Optional[_Union[_model_pb2.ModelType, str]] = ..., bytes_done: _Optional[int] = ..., total_bytes: _Optional[int] = ..., bytes_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., resume_count: _Optional[int] = ..., model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., already_installed: _Optional[bool] = ..., bytes_transferred: _Optional[int] = ..., replaces: _Optional[str] = ..., delete_replaced: _Optional[bool] = ..., carried_fields: _Optional[_Iterable[str]] = ..., replaced_deleted: _Optional[bool] = ..., replace_note: _Optional[str] = ...) -> None: ...

class GetDownloadRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetDownloadResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DownloadJob
    def __init__(self, job: _Optional[_Union[DownloadJob, _Mapping]] = ...) -> None: ...

class WatchDownloadRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchDownloadResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DownloadJob
    def __init__(self, job: _Optional[_Union[DownloadJob, _Mapping]] = ...) -> None: ...

class ListDownloadsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "active_only")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    active_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., active_only: _Optional[bool] = ...) -> None: ...

class ListDownloadsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[DownloadJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[DownloadJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelDownloadRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelDownloadResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DownloadJob
    def __init__(self, job: _Optional[_Union[DownloadJob, _Mapping]] = ...) -> None: ...

class SearchModelsRequest(_message.Message):
    __slots__ = ("query", "types", "base_models", "sort", "period", "nsfw", "page_size", "page_token", "token")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    BASE_MODELS_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    NSFW_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    query: str
    types: _containers.RepeatedScalarFieldContainer[str]
    base_models: _containers.RepeatedScalarFieldContainer[str]
    sort: str
    period: str
    nsfw: bool
    page_size: int
    page_token: str
    token: str
    def __init__(self, query: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., base_models: _Optional[_Iterable[str]] = ..., sort: _Optional[str] = ..., period: _Optional[str] = ..., nsfw: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class SearchModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[CivitaiModelInfo]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[CivitaiModelInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IdentifyFileRequest(_message.Message):
    __slots__ = ("filename", "sha256", "token")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    filename: str
    sha256: str
    token: str
    def __init__(self, filename: _Optional[str] = ..., sha256: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class IdentifyFileResponse(_message.Message):
    __slots__ = ("sha256", "info")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    info: CivitaiModelInfo
    def __init__(self, sha256: _Optional[str] = ..., info: _Optional[_Union[CivitaiModelInfo, _Mapping]] = ...) -> None: ...

class IdentifyFilesRequest(_message.Message):
    __slots__ = ("sha256s", "with_previews", "token")
    SHA256S_FIELD_NUMBER: _ClassVar[int]
    WITH_PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    sha256s: _containers.RepeatedScalarFieldContainer[str]
    with_previews: bool
    token: str
    def __init__(self, sha256s: _Optional[_Iterable[str]] = ..., with_previews: _Optional[bool] = ..., token: _Optional[str] = ...) -> None: ...

class IdentifyFilesResponse(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[IdentifiedFile]
    def __init__(self, files: _Optional[_Iterable[_Union[IdentifiedFile, _Mapping]]] = ...) -> None: ...

class IdentifiedFile(_message.Message):
    __slots__ = ("sha256", "found", "info", "preview", "preview_content_type", "preview_image")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    found: bool
    info: CivitaiModelInfo
    preview: bytes
    preview_content_type: str
    preview_image: PreviewImage
    def __init__(self, sha256: _Optional[str] = ..., found: _Optional[bool] = ..., info: _Optional[_Union[CivitaiModelInfo, _Mapping]] = ..., preview: _Optional[bytes] = ..., preview_content_type: _Optional[str] = ..., preview_image: _Optional[_Union[PreviewImage, _Mapping]] = ...) -> None: ...

class CheckUpdatesRequest(_message.Message):
    __slots__ = ("filenames", "token")
    FILENAMES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    filenames: _containers.RepeatedScalarFieldContainer[str]
    token: str
    def __init__(self, filenames: _Optional[_Iterable[str]] = ..., token: _Optional[str] = ...) -> None: ...

class CheckUpdatesResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[ModelUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[ModelUpdate, _Mapping]]] = ...) -> None: ...

class ModelUpdate(_message.Message):
    __slots__ = ("filename", "model_id", "installed_version_id", "installed_version_name", "latest_version_id", "latest_version_name", "update_available", "civitai_url", "early_access", "early_access_deadline", "latest_base_model", "latest_published_at", "ignored", "checked")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_URL_FIELD_NUMBER: _ClassVar[int]
    EARLY_ACCESS_FIELD_NUMBER: _ClassVar[int]
    EARLY_ACCESS_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    LATEST_BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    LATEST_PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    filename: str
    model_id: int
    installed_version_id: int
    installed_version_name: str
    latest_version_id: int
    latest_version_name: str
    update_available: bool
    civitai_url: str
    early_access: bool
    early_access_deadline: _timestamp_pb2.Timestamp
    latest_base_model: str
    latest_published_at: _timestamp_pb2.Timestamp
    ignored: bool
    checked: bool
    def __init__(self, filename: _Optional[str] = ..., model_id: _Optional[int] = ..., installed_version_id: _Optional[int] = ..., installed_version_name: _Optional[str] = ..., latest_version_id: _Optional[int] = ..., latest_version_name: _Optional[str] = ..., update_available: _Optional[bool] = ..., civitai_url: _Optional[str] = ..., early_access: _Optional[bool] = ..., early_access_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latest_base_model: _Optional[str] = ..., latest_published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ignored: _Optional[bool] = ..., checked: _Optional[bool] = ...) -> None: ...

class IgnoreUpdateRequest(_message.Message):
    __slots__ = ("model_id", "version_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: int
    version_id: int
    def __init__(self, model_id: _Optional[int] = ..., version_id: _Optional[int] = ...) -> None: ...

class IgnoreUpdateResponse(_message.Message):
    __slots__ = ("ignored_version_ids",)
    IGNORED_VERSION_IDS_FIELD_NUMBER: _ClassVar[int]
    ignored_version_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ignored_version_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class UnignoreUpdateRequest(_message.Message):
    __slots__ = ("model_id", "version_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: int
    version_id: int
    def __init__(self, model_id: _Optional[int] = ..., version_id: _Optional[int] = ...) -> None: ...

class UnignoreUpdateResponse(_message.Message):
    __slots__ = ("ignored_version_ids",)
    IGNORED_VERSION_IDS_FIELD_NUMBER: _ClassVar[int]
    ignored_version_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ignored_version_ids: _Optional[_Iterable[int]] = ...) -> None: ...
