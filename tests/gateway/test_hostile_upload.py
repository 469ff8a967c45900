"""POST /api/v1/models/upload against a hostile client: the real registry and gateway on 127.0.0.1,
bodies written byte by byte over a raw socket where httpx would not send them (two file parts,
a lying Content-Length, a stall). Whatever is refused leaves no file, no index entry and a free name."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from gw_helpers import running_gateway, settings_for, start_server

from devtools import model_files
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import insecure_channel

metadata_app = pytest.importorskip("metadata_svc.app")
metadata_config = pytest.importorskip("metadata_svc.config")

BOUNDARY = "hostileboundary42"
# Generous: only the tests about stalls shorten it, and they wait for it to pass, never time it.
PATIENT = 600.0
SHORT = 1.0


@dataclass
class Stack:
    http: httpx.AsyncClient
    port: int
    user_models: Path
    registry: str

    @property
    def loras(self) -> Path:
        return self.user_models / "loras"

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.loras.iterdir()) if self.loras.exists() else []

    async def names(self) -> list[str]:
        resp = await self.http.get("/api/v1/models")
        assert resp.status_code == 200, resp.text
        return [m["filename"] for m in resp.json()["models"]]


StartStack = Callable[..., Awaitable[Stack]]


@pytest_asyncio.fixture
async def start_stack(tmp_path: Path) -> AsyncIterator[StartStack]:
    """start_stack(upload_idle_timeout=...) -> a real registry over temp volumes and a gateway in front."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(idle_timeout: float = PATIENT, registry_limit: int = 1 << 30) -> Stack:
            user_models, models = tmp_path / "user-models", tmp_path / "models"
            user_models.mkdir()
            models.mkdir()
            registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
                listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models, max_upload_bytes=registry_limit)))
            stack.push_async_callback(registry.stop, 0)
            settings = settings_for(registry=registry.address, upload_idle_timeout=idle_timeout)
            http = await stack.enter_async_context(running_gateway(settings))
            return Stack(http, http.base_url.port, user_models, registry.address)

        yield start


@pytest.fixture(scope="module")
def lora() -> bytes:
    """A tiny SDXL LoRA (kohya key names), enough for the registry's header inspection."""
    return model_files.make_safetensors("lora", 0)


def field(name: str, value: str | bytes) -> bytes:
    value = value.encode() if isinstance(value, str) else value
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode() + value + b"\r\n"


def file_part(filename: str, data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"


def closing() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


async def post(stack: Stack, body: bytes) -> httpx.Response:
    return await stack.http.post("/api/v1/models/upload", content=body,
                                 headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})


async def good_upload(stack: Stack, name: str, data: bytes) -> httpx.Response:
    return await post(stack, field("type", "lora") + file_part(name, data) + closing())


def error_of(resp: httpx.Response) -> tuple[int, str, str, str]:
    err = resp.json()["error"]
    return resp.status_code, err["status"], err["details"][0]["reason"], err["message"]


class RawUpload:
    """An upload written by hand over a socket: headers with any Content-Length, then the body in pieces."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, stack: Stack, content_length: int) -> RawUpload:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write((f"POST /api/v1/models/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                      f"Content-Length: {content_length}\r\n\r\n").encode())
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict]:
        # A generous fallback so that a server that never answers fails the test instead of hanging it.
        return await asyncio.wait_for(self._response(), 120)

    async def _response(self) -> tuple[int, dict]:
        status_line = await self.reader.readline()
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), json.loads(body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(6000):  # a generous limit for a loaded machine; not a timing assertion
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


# ---------------------------------------------------------------- 1. a refused upload installs nothing


@pytest.mark.parametrize("after_file", ["second_file", "long_field", "no_closing_boundary"])
async def test_a_refused_upload_installs_nothing(start_stack: StartStack, lora: bytes, after_file: str) -> None:
    stack = await start_stack()
    tail = {
        "second_file": file_part("b.safetensors", lora) + closing(),
        "long_field": field("description", "x" * (65 * 1024)) + closing(),
        "no_closing_boundary": field("tags", "x"),  # the body ends before its closing boundary
    }[after_file]
    resp = await post(stack, field("type", "lora") + file_part("a.safetensors", lora) + tail)
    status, code, _, _ = error_of(resp)
    assert (status, code) == (400, "INVALID_ARGUMENT"), resp.text
    assert await stack.names() == []
    # The refused upload's name is free: a correct retry is installed, not answered 409.
    retry = await good_upload(stack, "a.safetensors", lora)
    assert retry.status_code == 201, retry.text
    assert await stack.names() == ["a.safetensors"]
    assert stack.leftovers() == ["a.safetensors"]


async def test_the_registry_installs_a_require_commit_upload_only_on_its_commit(start_stack: StartStack,
                                                                               lora: bytes) -> None:
    """The protocol under the gateway: a stream that ends without its commit (as a cancelled call may
    look to the server) installs nothing; one that has it is installed."""
    stack = await start_stack()

    def messages(name: str, commit: bool) -> list[registry_pb2.UploadModelRequest]:
        header = registry_pb2.UploadModelHeader(filename=name, type=model_pb2.MODEL_TYPE_LORA, require_commit=True)
        out = [registry_pb2.UploadModelRequest(header=header), registry_pb2.UploadModelRequest(chunk=lora)]
        if commit:
            out.append(registry_pb2.UploadModelRequest(commit=registry_pb2.UploadModelCommit()))
        return out

    async with insecure_channel(stack.registry) as channel:
        stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UploadModel(iter(messages("c.safetensors", commit=False)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert stack.leftovers() == [] and await stack.names() == []
        done = await stub.UploadModel(iter(messages("c.safetensors", commit=True)))
        assert done.model.file_size_bytes == len(lora)
    assert stack.leftovers() == ["c.safetensors"]


# ---------------------------------------------------------------- 2. a size that does not match is 400


@pytest.mark.parametrize("declared", [-10, +10], ids=["more_bytes_than_declared", "fewer_bytes_than_declared"])
async def test_a_size_mismatch_is_400(start_stack: StartStack, lora: bytes, declared: int) -> None:
    stack = await start_stack()
    body = field("type", "lora") + field("size", str(len(lora) + declared)) + file_part("s.safetensors", lora)
    resp = await post(stack, body + closing())
    status, code, reason, message = error_of(resp)
    assert (status, code, reason) == (400, "INVALID_ARGUMENT", "SIZE_MISMATCH"), resp.text
    assert "s.safetensors" in message
    assert await stack.names() == [] and stack.leftovers() == []


async def test_over_the_registrys_own_limit_is_413_not_429(start_stack: StartStack, lora: bytes) -> None:
    stack = await start_stack(registry_limit=len(lora) - 1)
    status, code, reason, _ = error_of(await good_upload(stack, "big.safetensors", lora))
    assert (status, code, reason) == (413, "RESOURCE_EXHAUSTED", "UPLOAD_TOO_LARGE")
    assert stack.leftovers() == []


# ---------------------------------------------------------------- 3. a name held by an upload in progress


async def test_a_name_held_by_an_upload_in_progress_is_not_said_to_exist(start_stack: StartStack,
                                                                         lora: bytes) -> None:
    stack = await start_stack()
    body = field("type", "lora") + file_part("busy.safetensors", lora) + closing()
    stalled = await RawUpload.open(stack, len(body))
    try:
        await stalled.send(body[:len(body) // 2])
        await eventually(lambda: any(n.startswith(".upload-") for n in stack.leftovers()))
        resp = await good_upload(stack, "busy.safetensors", lora)
        status, code, reason, message = error_of(resp)
        assert (status, code, reason) == (409, "ABORTED", "UPLOAD_IN_PROGRESS"), resp.text
        assert "in progress" in message and "already exists" not in message
    finally:
        await stalled.close()
    # A model that is really there still says so.
    await eventually(lambda: stack.leftovers() == [])
    assert (await good_upload(stack, "busy.safetensors", lora)).status_code == 201
    status, code, reason, _ = error_of(await good_upload(stack, "busy.safetensors", lora))
    assert (status, reason) == (409, "MODEL_ALREADY_EXISTS")


# ---------------------------------------------------------------- 4. an idle upload is abandoned


async def test_a_stalled_upload_is_abandoned_after_the_idle_timeout(start_stack: StartStack, lora: bytes) -> None:
    stack = await start_stack(idle_timeout=SHORT)
    body = field("type", "lora") + file_part("stall.safetensors", lora) + closing()
    stalled = await RawUpload.open(stack, len(body))
    try:
        await stalled.send(body[:len(body) // 2])
        status, err = await stalled.response()  # the client is still there: it is told why
    finally:
        await stalled.close()
    assert status == 408, err
    assert (err["error"]["status"], err["error"]["details"][0]["reason"]) == ("DEADLINE_EXCEEDED",
                                                                            "UPLOAD_IDLE_TIMEOUT")
    await eventually(lambda: stack.leftovers() == [])  # the .part is gone
    assert await stack.names() == []
    assert (await good_upload(stack, "stall.safetensors", lora)).status_code == 201  # and the name is free


async def test_a_body_shorter_than_its_content_length_registers_nothing(start_stack: StartStack,
                                                                        lora: bytes) -> None:
    stack = await start_stack(idle_timeout=SHORT)
    body = field("type", "lora") + file_part("short.safetensors", lora) + closing()
    liar = await RawUpload.open(stack, len(body) + 100)
    try:
        await liar.send(body)  # the whole multipart body, closing boundary included, but 100 bytes short
        status, err = await liar.response()
    finally:
        await liar.close()
    assert status == 408, err
    await eventually(lambda: stack.leftovers() == [])
    assert await stack.names() == []


async def test_a_body_cut_short_by_the_client_registers_nothing(start_stack: StartStack, lora: bytes) -> None:
    stack = await start_stack()
    body = field("type", "lora") + file_part("cut.safetensors", lora) + closing()
    liar = await RawUpload.open(stack, len(body) + 100)
    await liar.send(body)
    await eventually(lambda: any(n.startswith(".upload-") for n in stack.leftovers()))
    await liar.close()  # and goes away
    await eventually(lambda: stack.leftovers() == [])
    assert await stack.names() == []
    assert (await good_upload(stack, "cut.safetensors", lora)).status_code == 201


# ---------------------------------------------------------------- 5. errors name the user's file only


@pytest.mark.parametrize("content", ["bad_json", "truncated_tensors"])
async def test_upload_errors_name_the_users_file_not_server_paths(start_stack: StartStack, lora: bytes,
                                                                  content: str) -> None:
    stack = await start_stack()
    data = {
        "bad_json": b"\x08\x00\x00\x00\x00\x00\x00\x00notjson!",
        "truncated_tensors": lora[:-16],  # the header says the tensors run past the end of the file
    }[content]
    resp = await post(stack, field("type", "lora") + file_part("mine.safetensors", data) + closing())
    status, _, reason, message = error_of(resp)
    assert (status, reason) == (400, "INVALID_SAFETENSORS"), resp.text
    assert "mine.safetensors" in message
    for leak in (".upload-", ".part", str(stack.user_models), " object at 0x"):
        assert leak not in resp.text, resp.text
    assert stack.leftovers() == []
