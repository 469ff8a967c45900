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

class ModelSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_SOURCE_UNSPECIFIED: _ClassVar[ModelSource]
    MODEL_SOURCE_LOCAL: _ClassVar[ModelSource]
    MODEL_SOURCE_CIVITAI: _ClassVar[ModelSource]
    MODEL_SOURCE_UPLOAD: _ClassVar[ModelSource]
    MODEL_SOURCE_BUILTIN: _ClassVar[ModelSource]
MODEL_TYPE_UNSPECIFIED: ModelType
MODEL_TYPE_LORA: ModelType
MODEL_TYPE_CHECKPOINT: ModelType
MODEL_SOURCE_UNSPECIFIED: ModelSource
MODEL_SOURCE_LOCAL: ModelSource
MODEL_SOURCE_CIVITAI: ModelSource
MODEL_SOURCE_UPLOAD: ModelSource
MODEL_SOURCE_BUILTIN: ModelSource

class Model(_message.Message):
    __slots__ = ("filename", "type", "display_name", "short_name", "source", "trigger_words", "recommended_weight", "base_model", "tags", "description", "file_size_bytes", "added_at", "civitai_model_id", "civitai_version_id", "civitai_url", "sha256", "path", "inspection", "file_present")
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
    def __init__(self, filename: _Optional[str] = ..., type: _Optional[_Union[ModelType, str]] = ..., display_name: _Optional[str] = ..., short_name: _Optional[str] = ..., source: _Optional[_Union[ModelSource, str]] = ..., trigger_words: _Optional[_Iterable[str]] = ..., recommended_weight: _Optional[float] = ..., base_model: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., file_size_bytes: _Optional[int] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., civitai_model_id: _Optional[int] = ..., civitai_version_id: _Optional[int] = ..., civitai_url: _Optional[str] = ..., sha256: _Optional[str] = ..., path: _Optional[str] = ..., inspection: _Optional[_Union[FileInspection, _Mapping]] = ..., file_present: _Optional[bool] = ...) -> None: ...

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
