import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TYPE_UNSPECIFIED: _ClassVar[ModelType]
    MODEL_TYPE_LORA: _ClassVar[ModelType]
    MODEL_TYPE_CHECKPOINT: _ClassVar[ModelType]
    MODEL_TYPE_EMBEDDING: _ClassVar[ModelType]
    MODEL_TYPE_VAE: _ClassVar[ModelType]
    MODEL_TYPE_UPSCALER: _ClassVar[ModelType]

class ModelSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_SOURCE_UNSPECIFIED: _ClassVar[ModelSource]
    MODEL_SOURCE_LOCAL: _ClassVar[ModelSource]
    MODEL_SOURCE_CIVITAI: _ClassVar[ModelSource]
    MODEL_SOURCE_UPLOAD: _ClassVar[ModelSource]
    MODEL_SOURCE_BUILTIN: _ClassVar[ModelSource]

class CivitaiLookupState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIVITAI_LOOKUP_STATE_UNSPECIFIED: _ClassVar[CivitaiLookupState]
    CIVITAI_LOOKUP_STATE_PENDING: _ClassVar[CivitaiLookupState]
    CIVITAI_LOOKUP_STATE_FOUND: _ClassVar[CivitaiLookupState]
    CIVITAI_LOOKUP_STATE_NOT_FOUND: _ClassVar[CivitaiLookupState]
    CIVITAI_LOOKUP_STATE_FAILED: _ClassVar[CivitaiLookupState]
MODEL_TYPE_UNSPECIFIED: ModelType
MODEL_TYPE_LORA: ModelType
MODEL_TYPE_CHECKPOINT: ModelType
MODEL_TYPE_EMBEDDING: ModelType
MODEL_TYPE_VAE: ModelType
MODEL_TYPE_UPSCALER: ModelType
MODEL_SOURCE_UNSPECIFIED: ModelSource
MODEL_SOURCE_LOCAL: ModelSource
MODEL_SOURCE_CIVITAI: ModelSource
MODEL_SOURCE_UPLOAD: ModelSource
MODEL_SOURCE_BUILTIN: ModelSource
CIVITAI_LOOKUP_STATE_UNSPECIFIED: CivitaiLookupState
CIVITAI_LOOKUP_STATE_PENDING: CivitaiLookupState
CIVITAI_LOOKUP_STATE_FOUND: CivitaiLookupState
CIVITAI_LOOKUP_STATE_NOT_FOUND: CivitaiLookupState
CIVITAI_LOOKUP_STATE_FAILED: CivitaiLookupState

class Model(_message.Message):
    __slots__ = ("filename", "type", "display_name", "short_name", "source", "trigger_words", "recommended_weight", "base_model", "tags", "description", "file_size_bytes", "added_at", "civitai_model_id", "civitai_version_id", "civitai_url", "sha256", "path", "inspection", "file_present", "root_id", "folder", "file_name", "preview", "nsfw_level", "autov2", "autov3", "user_edited_fields", "civitai_version_name", "civitai_lookup", "notes", "default_vae", "embedding_token", "negative_embedding")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SHORT_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_URL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    INSPECTION_FIELD_NUMBER: _ClassVar[int]
    FILE_PRESENT_FIELD_NUMBER: _ClassVar[int]
    ROOT_ID_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    NSFW_LEVEL_FIELD_NUMBER: _ClassVar[int]
    AUTOV2_FIELD_NUMBER: _ClassVar[int]
    AUTOV3_FIELD_NUMBER: _ClassVar[int]
    USER_EDITED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_LOOKUP_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VAE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    filename: str
    type: ModelType
    display_name: str
    short_name: str
    source: ModelSource
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    recommended_weight: float
    base_model: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    description: str
    file_size_bytes: int
    added_at: _timestamp_pb2.Timestamp
    civitai_model_id: int
    civitai_version_id: int
    civitai_url: str
    sha256: str
    path: str
    inspection: FileInspection
    file_present: bool
    root_id: str
    folder: str
    file_name: str
    preview: ModelPreview
    nsfw_level: int
    autov2: str
    autov3: str
    user_edited_fields: _containers.RepeatedScalarFieldContainer[str]
    civitai_version_name: str
    civitai_lookup: CivitaiLookup
    notes: str
    default_vae: str
    embedding_token: str
    negative_embedding: bool
    def __init__(self, filename: _Optional[str] = ..., type: _Optional[_Union[ModelType, str]] = ..., display_name: _Optional[str] = ..., short_name: _Optional[str] = ..., source: _Optional[_Union[ModelSource, str]] = ..., trigger_words: _Optional[_Iterable[str]] = ..., recommended_weight: _Optional[float] = ..., base_model: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., file_size_bytes: _Optional[int] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., civitai_model_id: _Optional[int] = ..., civitai_version_id: _Optional[int] = ..., civitai_url: _Optional[str] = ..., sha256: _Optional[str] = ..., path: _Optional[str] = ..., inspection: _Optional[_Union[FileInspection, _Mapping]] = ..., file_present: _Optional[bool] = ..., root_id: _Optional[str] = ..., folder: _Optional[str] = ..., file_name: _Optional[str] = ..., preview: _Optional[_Union[ModelPreview, _Mapping]] = ..., nsfw_level: _Optional[int] = ..., autov2: _Optional[str] = ..., autov3: _Optional[str] = ..., user_edited_fields: _Optional[_Iterable[str]] = ..., civitai_version_name: _Optional[str] = ..., civitai_lookup: _Optional[_Union[CivitaiLookup, _Mapping]] = ..., notes: _Optional[str] = ..., default_vae: _Optional[str] = ..., embedding_token: _Optional[str] = ..., negative_embedding: _Optional[bool] = ...) -> None: ...

class CivitaiLookup(_message.Message):
    __slots__ = ("state", "checked_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    state: CivitaiLookupState
    checked_at: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[CivitaiLookupState, str]] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelPreview(_message.Message):
    __slots__ = ("sha256", "content_type", "width", "height", "nsfw_level", "source")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    NSFW_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    content_type: str
    width: int
    height: int
    nsfw_level: int
    source: str
    def __init__(self, sha256: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., nsfw_level: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class FileInspection(_message.Message):
    __slots__ = ("format", "detected_type", "architecture", "lora_format", "tensor_count", "header_metadata")
    class HeaderMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DETECTED_TYPE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    LORA_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TENSOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    HEADER_METADATA_FIELD_NUMBER: _ClassVar[int]
    format: str
    detected_type: str
    architecture: str
    lora_format: str
    tensor_count: int
    header_metadata: _containers.ScalarMap[str, str]
    def __init__(self, format: _Optional[str] = ..., detected_type: _Optional[str] = ..., architecture: _Optional[str] = ..., lora_format: _Optional[str] = ..., tensor_count: _Optional[int] = ..., header_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LoraSelection(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class ResolvedLora(_message.Message):
    __slots__ = ("filename", "path", "weight", "trigger_words", "display_name", "base_model", "sha256")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    filename: str
    path: str
    weight: float
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    display_name: str
    base_model: str
    sha256: str
    def __init__(self, filename: _Optional[str] = ..., path: _Optional[str] = ..., weight: _Optional[float] = ..., trigger_words: _Optional[_Iterable[str]] = ..., display_name: _Optional[str] = ..., base_model: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...
