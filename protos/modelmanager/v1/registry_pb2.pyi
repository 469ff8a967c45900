from google.protobuf import field_mask_pb2 as _field_mask_pb2
from modelmanager.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "type", "base_model", "query")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    type: _model_pb2.ModelType
    base_model: str
    query: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., type: _Optional[_Union[_model_pb2.ModelType, str]] = ..., base_model: _Optional[str] = ..., query: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("filename", "keep_file")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    KEEP_FILE_FIELD_NUMBER: _ClassVar[int]
    filename: str
    keep_file: bool
    def __init__(self, filename: _Optional[str] = ..., keep_file: _Optional[bool] = ...) -> None: ...

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
