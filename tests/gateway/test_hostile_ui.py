"""The web UI as a hostile client uses it: Gradio's own HTTP routes, driven by hand over real HTTP.

A real gateway with the UI mounted (and an API key, so the UI asks for a login), in front of recording
gRPC services. Each test is one way a client tried to make the gateway read, fetch, decode or log
something it should not.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import structlog
from gw_helpers import CountingListener, free_port, proxy_env, running_gateway, settings_for
from gw_stubs import EndlessInference, RecordingRegistry, inference_binding, registry_binding, serve
from PIL import Image

from gateway.ui.handlers.generate import DEFAULT_VAE, LANCZOS, REGION_HEADERS
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc, inference_pb2
from service_kit import ServiceBinding

REPO = Path(__file__).resolve().parents[2]
KEY = "ui-test-key"
FILE = {"meta": {"_type": "gradio.FileData"}}


class RecordingInference(EndlessInference):
    def __init__(self) -> None:
        super().__init__()
        self.upscales: list[bytes] = []

    async def Upscale(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.upscales.append(request.image)
        yield inference_pb2.UpscaleResponse(
            result=inference_pb2.ImageResult(job_id="u1", png=png(16, 16), width=16, height=16, seed=1))


class HostileCivitai(civitai_pb2_grpc.CivitaiServiceServicer):
    """CivitAI metadata written by an attacker: HTML, Markdown links and a javascript: URL."""

    async def GetModelInfo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return civitai_pb2.GetModelInfoResponse(info=civitai_pb2.CivitaiModelInfo(
            name="Nice <img src=https://tracker.example/px.gif> [click](https://evil.example)",
            version_name="v1 <script>x()</script>", civitai_type="LORA", base_model="SDXL <b>1.0</b>",
            trigger_words=["`</code><img src=x>`", "**bold**"], civitai_url="javascript:alert(1)",
            supported=True))


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@pytest.fixture
async def services() -> AsyncIterator[tuple[RecordingRegistry, RecordingInference, str, str, str]]:
    registry, inference = RecordingRegistry(), RecordingInference()
    reg_server = await serve("registry", registry_binding(registry))
    inf_server = await serve("inference", inference_binding(inference))
    civ_server = await serve("civitai", ServiceBinding.of(
        civitai_pb2.DESCRIPTOR.services_by_name["CivitaiService"], HostileCivitai(),
        civitai_pb2_grpc.add_CivitaiServiceServicer_to_server))
    try:
        yield registry, inference, reg_server.address, inf_server.address, civ_server.address
    finally:
        for server in (reg_server, inf_server, civ_server):
            await server.stop(0)


@pytest.fixture
async def ui(services: Any) -> AsyncIterator[httpx.AsyncClient]:
    _, _, registry, inference, civitai = services
    settings = settings_for(ui=True, registry=registry, inference=inference, civitai=civitai, api_key=KEY)
    async with running_gateway(settings) as http:
        await login(http)
        yield http


async def login(http: httpx.AsyncClient) -> None:
    r = await http.post("/login", data={"username": "u", "password": KEY})
    assert r.status_code == 200, r.text


async def upload(http: httpx.AsyncClient, name: str, content: bytes) -> str:
    r = await http.post("/gradio_api/upload", files={"files": (name, content)})
    assert r.status_code == 200, r.text
    return r.json()[0]


async def call(http: httpx.AsyncClient, api: str, data: list[Any]) -> tuple[int, str]:
    """POST /gradio_api/call/<api>, then read its result stream: (status of the POST, result text)."""
    r = await http.post(f"/gradio_api/call/{api}", json={"data": data})
    if r.status_code != 200:
        return r.status_code, r.text
    result = await http.get(f"/gradio_api/call/{api}/{r.json()['event_id']}")
    return r.status_code, result.text


def upscale_args(path: str) -> list[Any]:
    # image, prompt, negative, LoRAs, scale, strength, steps, tile, seed; then upscaler model, VAE, tile padding,
    # mask blur, seams fix, its width, regions (issue 14), at their defaults.
    return [{"path": path, **FILE}, "p", "", {}, 2, 0.5, 4, 64, -1,
            LANCZOS, DEFAULT_VAE, 0, 0, "None", 64, {"headers": REGION_HEADERS, "data": [], "metadata": None}]


async def test_an_event_cannot_name_a_server_file(ui: httpx.AsyncClient, services: Any,
                                                  tmp_path: Path) -> None:
    registry, inference, *_ = services
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"MODELMGR_API_KEY=" + KEY.encode())
    for target in (str(secret), "/proc/self/environ", "/etc/passwd"):
        status, text = await call(ui, "upscale", upscale_args(target))
        assert status == 403 and "FILE_NOT_UPLOADED" in text, text
        status, text = await call(ui, "upload", [{"path": target, **FILE}, "LoRA", "", ""])
        assert status == 403 and "FILE_NOT_UPLOADED" in text, text
    # Nothing was read: the services saw no bytes, and the cache holds no copy to fetch.
    assert registry.upload_header is None and inference.upscales == []
    served = await ui.get(f"/gradio_api/file={secret}")
    assert served.status_code == 403 and KEY not in served.text


async def test_a_path_outside_the_uploads_that_looks_like_one_is_refused(ui: httpx.AsyncClient,
                                                                         services: Any) -> None:
    registry, *_ = services
    uploaded = await upload(ui, "a.safetensors", b"weights")
    for trick in (uploaded + "/../../../../etc/passwd", str(Path(uploaded).parent), uploaded.upper(),
                  "http://127.0.0.1:1/x.safetensors"):
        status, text = await call(ui, "upload", [{"path": trick, **FILE}, "LoRA", "", ""])
        assert status == 403, (trick, text)
    assert registry.upload_header is None


async def test_only_the_uploader_may_use_an_upload_and_it_is_removed_after_use(
        ui: httpx.AsyncClient, services: Any) -> None:
    registry, *_ = services
    uploaded = await upload(ui, "mine.safetensors", b"my weights")
    async with httpx.AsyncClient(base_url=ui.base_url, timeout=60) as other:
        await login(other)  # the same key, another login: another client
        status, text = await call(other, "upload", [{"path": uploaded, **FILE}, "LoRA", "", ""])
        assert status == 403 and "FILE_NOT_UPLOADED" in text, text
        assert registry.upload_header is None
    status, text = await call(ui, "upload", [{"path": uploaded, **FILE}, "LoRA", "", ""])
    assert status == 200 and "Uploaded mine.safetensors" in text, text
    assert registry.upload_header is not None and registry.upload_bytes == len(b"my weights")
    assert not await asyncio.to_thread(os.path.exists, uploaded)  # the UI's copy of a model file goes once it is on the volume
    status, text = await call(ui, "upload", [{"path": uploaded, **FILE}, "LoRA", "", ""])
    assert status == 403  # and cannot be named again


async def test_an_image_bomb_is_refused_from_its_header(ui: httpx.AsyncClient, services: Any) -> None:
    _, inference, *_ = services
    bomb = png(13000, 13000)
    assert len(bomb) < 200_000  # a small file that decodes to 169 megapixels
    uploaded = await upload(ui, "bomb.png", bomb)
    status, text = await call(ui, "upscale", upscale_args(uploaded))
    assert status == 413 and "IMAGE_TOO_LARGE" in text and "13000x13000" in text, text
    assert inference.upscales == []
    # A normal image goes through to the inference service.
    small = await upload(ui, "small.png", png(32, 32))
    status, text = await call(ui, "upscale", upscale_args(small))
    assert status == 200 and "Done" in text, text
    assert len(inference.upscales) == 1


async def test_ui_bodies_are_bounded_before_gradio_reads_them(ui: httpx.AsyncClient) -> None:
    big = json.dumps({"data": ["x" * (2 * 1024 * 1024)]})
    r = await ui.post("/gradio_api/call/preview", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["details"][0]["reason"] == "BODY_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b"x" * (1024 * 1024)

    r = await ui.post("/gradio_api/queue/join", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = await ui.post("/login", content=b"u=" + b"x" * 100_000,
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    counting = CountingListener()
    yield counting
    counting.close()


async def test_file_routes_never_fetch_a_url(ui: httpx.AsyncClient, listener: CountingListener) -> None:
    target = f"http://127.0.0.1:{listener.port}/x.png"
    for path in (f"/gradio_api/file={target}", f"/gradio_api/file/{target}",
                 f"/gradio_api/proxy={target}", "/gradio_api/file=http%3A%2F%2F127.0.0.1%3A1%2Fx"):
        r = await ui.get(path)
        assert r.status_code == 403, (path, r.text)
    await asyncio.sleep(0.3)
    assert listener.seen == []


async def test_an_unknown_queue_session_is_a_quiet_404(ui: httpx.AsyncClient) -> None:
    with structlog.testing.capture_logs() as logs:
        r = await ui.get("/gradio_api/queue/data", params={"session_hash": "nope"})
    assert r.status_code == 404
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")], logs


async def test_civitai_metadata_is_shown_as_text(ui: httpx.AsyncClient) -> None:
    status, text = await call(ui, "fetch_info", ["https://civitai.com/models/1"])
    assert status == 200, text
    markdown = json.loads(text.split("data:", 1)[1])[0]
    for injected in ("<img", "<script", "<b>", "](https://evil", "javascript:"):
        assert injected not in markdown, (injected, markdown)
    assert "&lt;img src=x&gt;" in markdown and "&lt;script&gt;" in markdown


def test_the_gateway_starts_and_serves_the_ui_without_any_outbound_connection(
        listener: CountingListener) -> None:
    proxy = f"http://127.0.0.1:{listener.port}"
    # Gradio's own switch set the other way: the gateway turns its telemetry off whatever it says.
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "True", **proxy_env(proxy)}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--listen", f"127.0.0.1:{port}"], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = None
        for _ in range(600):  # a guard against hanging, not a timing assertion
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5, trust_env=False)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "the gateway exited"
                time.sleep(0.1)
        assert page is not None and page.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/gradio_api/info", timeout=30, trust_env=False).status_code == 200
        time.sleep(3)  # Gradio's version check and analytics ran in threads at start-up, if at all
    finally:
        proc.terminate()
        proc.wait(60)
    assert listener.seen == []
