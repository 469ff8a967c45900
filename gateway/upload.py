"""Multipart uploads streamed chunk by chunk into the registry's client-streaming UploadModel.

The request body is read with `request.stream()` and parsed incrementally by
python-multipart's `MultipartParser`; each piece of the file part goes out as
an `UploadModelRequest.chunk` as soon as about 1 MiB has gathered, with gRPC
flow control as back-pressure. Nothing holds the whole file: memory stays flat
whatever its size.

The registry installs the file only on a final `commit` message, which goes
out once the whole body is read and valid (one file part, fields in bounds,
closing boundary, Content-Length reached); any error, a client that goes away
and a client that sends nothing for `upload_idle_timeout` seconds (408)
cancel the call instead, and the registry discards the `.part` and the name.

Fields describe the file and must come before the file part in the body
(`curl -F type=lora -F file=@x.safetensors` sends them in that order); query
parameters of the same names work too. Fields: filename (defaults to the
uploaded file's name), type (`lora`, `checkpoint`, `embedding`, `vae` or `upscaler`), display_name,
short_name, trigger_words and tags (comma-separated or repeated),
recommended_weight, base_model, description, expected_sha256, size (bytes,
checked against the limit before anything is sent).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

from gateway.clients import ServiceClients
from gateway.errors import ApiError, error_info
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit import get_logger

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = get_logger("gateway.upload")

CHUNK_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
LIST_FIELDS = ("trigger_words", "tags")
TEXT_FIELDS = ("filename", "type", "display_name", "short_name", "recommended_weight", "base_model",
               "description", "expected_sha256", "size")


# The names a client may give a type by (CivitAI's own among them), lowercase.
MODEL_TYPE_NAMES = {
    model_pb2.MODEL_TYPE_LORA: ("lora", "loras", "locon", "lycoris", "dora"),
    model_pb2.MODEL_TYPE_CHECKPOINT: ("checkpoint", "checkpoints"),
    model_pb2.MODEL_TYPE_EMBEDDING: ("embedding", "embeddings", "textualinversion", "textual_inversion"),
    model_pb2.MODEL_TYPE_VAE: ("vae", "vaes"),
    model_pb2.MODEL_TYPE_UPSCALER: ("upscaler", "upscalers"),
    model_pb2.MODEL_TYPE_UNSPECIFIED: ("", "unspecified"),
}


def model_type(value: str) -> int:
    v = value.strip().lower().removeprefix("model_type_")
    for kind, names in MODEL_TYPE_NAMES.items():
        if v in names:
            return int(kind)
    raise ApiError.local(400, f"unknown model type {value!r}; use 'lora', 'checkpoint', 'embedding', 'vae' "
                         "or 'upscaler'", "INVALID_MODEL_TYPE")


def split_list(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def build_header(fields: dict[str, list[str]], upload_name: str | None) -> registry_pb2.UploadModelHeader:
    def one(name: str) -> str:
        vals = fields.get(name) or [""]
        return vals[-1].strip()

    header = registry_pb2.UploadModelHeader(
        filename=one("filename") or (upload_name or ""),
        type=model_type(one("type")),
        display_name=one("display_name"),
        short_name=one("short_name"),
        trigger_words=split_list(fields.get("trigger_words", [])),
        base_model=one("base_model"),
        tags=split_list(fields.get("tags", [])),
        description=one("description"),
        expected_sha256=one("expected_sha256").lower(),
    )
    try:
        if one("recommended_weight"):
            header.recommended_weight = float(one("recommended_weight"))
        if one("size"):
            header.total_size_bytes = int(one("size"))
    except ValueError as exc:
        raise ApiError.local(400, f"bad number in upload fields: {exc}", "INVALID_REQUEST") from None
    return header


class _Upload:
    """State of one streamed upload: the parser's events, the fields so far, the gRPC call."""

    def __init__(self, clients: ServiceClients, fields: dict[str, list[str]], limit: int) -> None:
        self.clients = clients
        self.fields = fields
        self.limit = limit
        self.events: list[tuple[str, Any]] = []
        self.headers: dict[str, str] = {}
        self._hname = b""
        self._hvalue = b""
        self.part_name: str | None = None
        self.part_filename: str | None = None
        self.field_value = bytearray()
        self.buffer = bytearray()
        self.sent = 0
        self.call: Any = None
        self.file_done = False
        self.committed = False
        self.filename = ""

    # Parser callbacks (synchronous): only record what happened.
    def callbacks(self) -> MultipartCallbacks:
        def header_field(data: bytes, start: int, end: int) -> None:
            self._hname += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            self._hvalue += data[start:end]

        def header_end() -> None:
            self.headers[self._hname.decode("latin-1").lower()] = self._hvalue.decode("utf-8", "replace")
            self._hname = self._hvalue = b""

        return {
            "on_part_begin": lambda: self.events.append(("begin", None)),
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": lambda: self.events.append(("headers", dict(self.headers))),
            "on_part_data": lambda data, start, end: self.events.append(("data", bytes(data[start:end]))),
            "on_part_end": lambda: self.events.append(("end", None)),
        }

    async def handle(self) -> None:
        events, self.events = self.events, []
        for kind, value in events:
            if kind == "begin":
                self.headers = {}
            elif kind == "headers":
                _, params = parse_options_header(value.get("content-disposition", ""))
                self.part_name = params.get(b"name", b"").decode("utf-8", "replace")
                raw_filename = params.get(b"filename")
                self.part_filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
                self.field_value = bytearray()
                if self.part_filename is not None:
                    await self._start_file()
            elif kind == "data":
                if self.part_filename is not None:
                    await self._file_bytes(value)
                else:
                    self.field_value += value
                    if len(self.field_value) > MAX_FIELD_BYTES:
                        raise ApiError.local(400, f"form field {self.part_name!r} is too long", "INVALID_REQUEST")
            elif kind == "end":
                if self.part_filename is not None:
                    await self._flush()  # no commit yet: the rest of the body may still be refused
                    self.file_done = True
                elif self.part_name in LIST_FIELDS + TEXT_FIELDS:
                    self.fields.setdefault(self.part_name, []).append(self.field_value.decode("utf-8", "replace"))
                self.part_filename = None

    async def _start_file(self) -> None:
        if self.call is not None:
            raise ApiError.local(400, "send exactly one file part", "INVALID_REQUEST")
        header = build_header(self.fields, self.part_filename)
        header.require_commit = True
        self.filename = header.filename
        if header.total_size_bytes > self.limit:
            raise _too_large(self.limit)
        self.call = self.clients.registry.UploadModel()
        await self._write(registry_pb2.UploadModelRequest(header=header))

    async def _file_bytes(self, data: bytes) -> None:
        self.buffer += data
        if self.sent + len(self.buffer) > self.limit:
            raise _too_large(self.limit)
        while len(self.buffer) >= CHUNK_BYTES:
            chunk = bytes(self.buffer[:CHUNK_BYTES])
            del self.buffer[:CHUNK_BYTES]
            await self._send(chunk)

    async def _flush(self) -> None:
        if self.buffer:
            chunk = bytes(self.buffer)
            self.buffer.clear()
            await self._send(chunk)

    async def _send(self, chunk: bytes) -> None:
        self.sent += len(chunk)
        await self._write(registry_pb2.UploadModelRequest(chunk=chunk))

    async def commit(self) -> registry_pb2.UploadModelResponse:
        """The whole body was read and is valid: ask the registry to install the file."""
        await self._write(registry_pb2.UploadModelRequest(commit=registry_pb2.UploadModelCommit()))
        self.committed = True
        await self._write(None)
        return await self.result()

    async def _write(self, message: registry_pb2.UploadModelRequest | None) -> None:
        try:
            if message is None:
                await self.call.done_writing()
            else:
                await self.call.write(message)
        except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
            # The registry already answered (e.g. the name exists): report its error.
            await self.result()
            raise ApiError.local(500, "the registry ended the upload early", "UPLOAD_ABORTED") from None

    async def result(self) -> registry_pb2.UploadModelResponse:
        try:
            return await self.call
        except grpc.aio.AioRpcError as exc:
            raise self.clients.error(exc, "registry") from None


def _too_large(limit: int) -> ApiError:
    return ApiError.local(413, f"upload larger than the limit of {limit} bytes", "UPLOAD_TOO_LARGE",
                          {"limit_bytes": str(limit)})


def _idle(timeout: float) -> ApiError:
    return ApiError(408, grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the upload sent nothing for {timeout:g} s and was abandoned; nothing was installed",
                    [error_info("UPLOAD_IDLE_TIMEOUT", {"idle_timeout_s": f"{timeout:g}"})])


async def _body(request: Request, idle_timeout: float) -> Any:
    """The request body's pieces; ApiError 408 when the client sends nothing for `idle_timeout` seconds
    (a stall, or a Content-Length larger than what it sends), so that it cannot hold the upload forever."""
    stream = aiter(request.stream())
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                data = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _idle(idle_timeout) from None
        yield data


async def stream_upload(request: Request, clients: ServiceClients, limit: int) -> registry_pb2.UploadModelResponse:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError.local(400, "send the file as multipart/form-data", "INVALID_REQUEST")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + 1024 * 1024:
        raise _too_large(limit)
    fields: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key in LIST_FIELDS + TEXT_FIELDS:
            fields.setdefault(key, []).append(value)
    idle_timeout = request.app.state.settings.upload_idle_timeout
    upload = _Upload(clients, fields, limit)
    parser = MultipartParser(params[b"boundary"], upload.callbacks())
    try:
        async for data in _body(request, idle_timeout):
            parser.write(data)
            await upload.handle()
        parser.finalize()
        await upload.handle()
        if upload.call is None or not upload.file_done:
            raise ApiError.local(400, "no complete file part in the upload", "MISSING_FILE")
        if parser.state != MultipartState.END:
            raise ApiError.local(400, "the multipart body ends without its closing boundary", "INVALID_REQUEST")
        return await upload.commit()
    except ClientDisconnect:
        raise ApiError.local(499, "the client went away during the upload", "CLIENT_DISCONNECTED") from None
    except ValueError as exc:  # malformed multipart
        raise ApiError.local(400, f"malformed multipart body: {exc}", "INVALID_REQUEST") from None
    finally:
        # Not committed: cancelling is what tells the registry to discard the .part and free the name.
        if upload.call is not None and not upload.committed and not upload.call.done():
            log.info("upload.abandoned", filename=upload.filename)
            upload.call.cancel()
