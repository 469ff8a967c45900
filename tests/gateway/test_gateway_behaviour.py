"""The gateway's own behaviour over real HTTP: errors, 503 for a down service, API key,
request ids, SSE framing, disconnect cancelling a generate, and a flat-memory streamed upload."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import grpc
import pytest
from gw_helpers import read_sse, running_gateway, settings_for
from gw_stubs import (
    EndlessInference,
    RecordingRegistry,
    inference_binding,
    registry_binding,
    serve,
)

from gateway.errors import HTTP_STATUS
from service_kit import errors as svc_errors


async def test_down_service_is_503_naming_it() -> None:
    settings = settings_for()
    async with running_gateway(settings) as http:
        for path, service in (("/api/v1/models", "registry"), ("/api/v1/downloads", "civitai"),
                              ("/api/v1/inference/status", "inference")):
            resp = await http.get(path)
            assert resp.status_code == 503, resp.text
            err = resp.json()["error"]
            assert err["status"] == "UNAVAILABLE"
            assert service in err["message"]
            assert err["details"][0]["reason"] == "SERVICE_UNAVAILABLE"
            assert err["details"][0]["metadata"] == {"service": service}  # the address only in the log
        health = await http.get("/api/v1/health")
        assert health.status_code == 503
        health = health.json()
        assert health["status"] == "degraded"
        assert set(health["services"].values()) == {"UNAVAILABLE"}


@pytest.mark.parametrize(
    "error_cls",
    [svc_errors.InvalidArgument, svc_errors.NotFound, svc_errors.AlreadyExists, svc_errors.FailedPrecondition,
     svc_errors.PermissionDenied, svc_errors.Unauthenticated, svc_errors.ResourceExhausted,
     svc_errors.OutOfRange, svc_errors.Aborted, svc_errors.DeadlineExceeded, svc_errors.Unavailable,
     svc_errors.DataLoss, svc_errors.Unimplemented, svc_errors.Internal],
)
async def test_grpc_codes_map_per_googles_table_keeping_error_info(error_cls: type) -> None:
    registry = RecordingRegistry()
    registry.raise_error = error_cls("it went wrong", reason="SOME_REASON", metadata={"filename": "x.safetensors"})
    server = await serve("registry", registry_binding(registry))
    try:
        async with running_gateway(settings_for(registry=server.address)) as http:
            resp = await http.get("/api/v1/models")
    finally:
        await server.stop(0)
    code: grpc.StatusCode = error_cls.code
    assert resp.status_code == HTTP_STATUS[code]
    err = resp.json()["error"]
    assert err["code"] == resp.status_code
    assert err["status"] == code.name
    assert err["message"] == "it went wrong"
    info = err["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "SOME_REASON"
    assert info["domain"] == "registry.test"
    assert info["metadata"] == {"filename": "x.safetensors"}


def test_table_matches_google_rpc_code_proto() -> None:
    expected = {"OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
                "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401,
                "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
                "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500}
    assert {code.name: status for code, status in HTTP_STATUS.items()} == expected


@pytest.mark.parametrize("ui", [False, True], ids=["api-only", "with-ui"])
async def test_bad_body_and_unknown_route_use_the_error_envelope(ui: bool) -> None:
    async with running_gateway(settings_for(ui=ui)) as http:
        resp = await http.post("/api/v1/prompt/compose", json={"prompt": "x", "no_such_field": 1})
        assert resp.status_code == 400
        assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert "no_such_field" in resp.json()["error"]["message"]
        resp = await http.get("/api/v1/nope")
        assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND"
        resp = await http.delete("/api/v1/health")
        assert resp.status_code == 405 and resp.headers["allow"] == "GET"
        assert resp.json()["error"]["details"][0]["reason"] == "METHOD_NOT_ALLOWED"
        resp = await http.get("/api/v1/models", params={"page_size": "many"})
        assert resp.status_code == 400 and resp.json()["error"]["details"][1]["field_violations"]


async def test_api_key_is_required_when_set() -> None:
    registry = RecordingRegistry()
    server = await serve("registry", registry_binding(registry))
    try:
        async with running_gateway(settings_for(registry=server.address, api_key="s3cret-key")) as http:
            missing = await http.get("/api/v1/models")
            assert missing.status_code == 401
            assert missing.json()["error"]["details"][0]["reason"] == "API_KEY_MISSING"
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = await http.get("/api/v1/models", headers={"x-api-key": "nope"})
            assert wrong.status_code == 401
            assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
            assert (await http.get("/api/v1/models", headers={"x-api-key": "s3cret-key"})).status_code == 200
            bearer = await http.get("/api/v1/models", headers={"Authorization": "Bearer s3cret-key"})
            assert bearer.status_code == 200
            # The key never reached the service.
            assert all("s3cret-key" not in json.dumps(md) for md in registry.metadata)
            # The API description itself is public; it names the key schemes.
            schemes = (await http.get("/openapi.json")).json()["components"]["securitySchemes"]
            assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)
    finally:
        await server.stop(0)


async def test_request_id_travels_as_metadata_and_comes_back() -> None:
    registry = RecordingRegistry()
    server = await serve("registry", registry_binding(registry))
    try:
        async with running_gateway(settings_for(registry=server.address)) as http:
            rid = f"test-{uuid.uuid4().hex[:8]}"
            resp = await http.get("/api/v1/models", headers={"x-request-id": rid})
            assert resp.status_code == 200
            assert resp.headers["x-request-id"] == rid
            assert registry.metadata[-1]["x-request-id"] == rid
            fresh = await http.get("/api/v1/models")
            made = fresh.headers["x-request-id"]
            assert made and made != rid
            assert registry.metadata[-1]["x-request-id"] == made
            # A header that is not a sane token is replaced, not echoed.
            odd = await http.get("/api/v1/models", headers={"x-request-id": "a b<script>"})
            assert odd.headers["x-request-id"] != "a b<script>"
            # Errors carry it too.
            down = await http.get("/api/v1/downloads", headers={"x-request-id": rid})
            assert down.status_code == 503 and down.headers["x-request-id"] == rid
    finally:
        await server.stop(0)


async def test_generate_streams_sse_then_result() -> None:
    inference = EndlessInference(interval=0.0, steps=3)
    server = await serve("inference", inference_binding(inference))
    try:
        async with running_gateway(settings_for(inference=server.address)) as http:
            async with http.stream("POST", "/api/v1/generate", json={"prompt": "a cat", "steps": 3}) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                assert resp.headers["cache-control"] == "no-cache"
                events = await read_sse(resp)
    finally:
        await server.stop(0)
    names = [e for e, _ in events]
    assert names == ["queued", "progress", "progress", "progress", "result", "end"]
    assert json.loads(events[3][1])["step"] == 3
    result = json.loads(events[4][1])
    assert result["png"]  # base64 of the image bytes
    assert result["seed"] == "1"  # int64 as a JSON string, per the proto3 JSON mapping


async def test_failure_midway_is_a_final_error_event() -> None:
    inference = EndlessInference(interval=0.0, steps=10, fail_after=2)
    server = await serve("inference", inference_binding(inference))
    try:
        async with running_gateway(settings_for(inference=server.address)) as http:
            async with http.stream("POST", "/api/v1/generate", json={"prompt": "x"}) as resp:
                events = await read_sse(resp)
    finally:
        await server.stop(0)
    assert events[-1][0] == "error"
    body = json.loads(events[-1][1])["error"]
    assert body["code"] == 429 and body["status"] == "RESOURCE_EXHAUSTED"
    assert body["details"][0]["reason"] == "OUT_OF_MEMORY"


async def test_disconnect_cancels_the_generate_upstream() -> None:
    inference = EndlessInference(interval=0.02)
    server = await serve("inference", inference_binding(inference))
    try:
        async with running_gateway(settings_for(inference=server.address)) as http:
            async with http.stream("POST", "/api/v1/generate", json={"prompt": "x"}) as resp:
                events = await read_sse(resp, limit=3)
                assert [e for e, _ in events] == ["queued", "progress", "progress"]
            # The client went away: the service sees its Generate cancelled.
            await asyncio.wait_for(inference.cancelled.wait(), 30)
            assert not inference.finished.is_set()
    finally:
        await server.stop(0)


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def test_upload_is_streamed_with_flat_memory() -> None:
    """A 1 GiB multipart upload through the gateway; the process's RSS barely moves."""
    registry = RecordingRegistry()
    server = await serve("registry", registry_binding(registry))
    total = 1024 * 1024 * 1024
    piece = os.urandom(256 * 1024)
    boundary = "----mmtest" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nlora\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"trigger_words\"\r\n\r\nfoo, bar\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.safetensors\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body():
        yield head
        for _ in range(total // len(piece)):
            yield piece
        yield tail

    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_bytes())
            await asyncio.sleep(0.05)

    try:
        async with running_gateway(settings_for(registry=server.address)) as http:
            baseline = _rss_bytes()
            sampler = asyncio.create_task(sample())
            resp = await http.post("/api/v1/models/upload", content=body(),
                                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
            stop.set()
            await sampler
    finally:
        await server.stop(0)
    assert resp.status_code == 201, resp.text
    assert resp.json()["file_size_bytes"] == str(total)
    assert registry.upload_bytes == total
    assert registry.upload_header is not None
    assert list(registry.upload_header.trigger_words) == ["foo", "bar"]
    assert registry.upload_header.filename == "big.safetensors"
    assert registry.upload_chunks >= total // (1024 * 1024)  # ≤ 1 MiB per message
    growth = peak - baseline
    print(f"upload of {total >> 20} MiB: RSS baseline {baseline >> 20} MiB, peak growth {growth >> 20} MiB")
    assert growth < 96 * 1024 * 1024


async def test_upload_over_the_limit_is_413_and_cancels_upstream() -> None:
    registry = RecordingRegistry()
    server = await serve("registry", registry_binding(registry))
    boundary = "b" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nlora\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.safetensors\"\r\n\r\n").encode()

    async def body():
        yield head
        for _ in range(8):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        async with running_gateway(settings_for(registry=server.address, max_upload_bytes=3 * 1024 * 1024)) as http:
            resp = await http.post("/api/v1/models/upload", content=body(),
                                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
            assert resp.status_code == 413
            assert resp.json()["error"]["details"][0]["reason"] == "UPLOAD_TOO_LARGE"
            # The call was cancelled mid-stream. (gRPC may show a cancel to a reading handler as the end
            # of the stream, so a registry must not commit without the full size: see its total_size_bytes.)
            await asyncio.wait_for(registry.upload_ended.wait(), 30)
            assert registry.upload_bytes < 8 * 1024 * 1024
            not_multipart = await http.post("/api/v1/models/upload", content=b"xx")
            assert not_multipart.status_code == 400
    finally:
        await server.stop(0)


async def test_no_cors_unless_configured() -> None:
    async with running_gateway(settings_for()) as http:
        resp = await http.options("/api/v1/models", headers={"Origin": "http://evil.example",
                                                             "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in resp.headers
    async with running_gateway(settings_for(cors_origins=["http://ok.example"])) as http:
        resp = await http.get("/api/v1/health", headers={"Origin": "http://ok.example"})
        assert resp.headers["access-control-allow-origin"] == "http://ok.example"
    # The web UI too, reached by a name other than localhost (Gradio's own CORS would reflect any origin).
    async with running_gateway(settings_for(ui=True)) as http:
        for origin in ("http://evil.example", "http://localhost:9999"):
            resp = await http.get("/config", headers={"Origin": origin, "Host": "mybox.lan"})
            assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers
            resp = await http.options("/config", headers={"Origin": origin, "Host": "mybox.lan",
                                                          "Access-Control-Request-Method": "GET"})
            assert "access-control-allow-origin" not in resp.headers


async def test_ui_needs_the_api_key_as_password_when_set() -> None:
    async with running_gateway(settings_for(ui=True, api_key="k3y-secret")) as http:
        assert (await http.get("/config")).status_code == 401  # the UI's data and events
        assert (await http.get("/gradio_api/info")).status_code == 401
        bad = await http.post("/login", data={"username": "me", "password": "wrong"})
        assert bad.status_code == 400
        ok = await http.post("/login", data={"username": "me", "password": "k3y-secret"})
        assert ok.status_code == 200
        assert (await http.get("/config")).status_code == 200
        # The API still wants the key itself, not the UI's cookie.
        assert (await http.get("/api/v1/models")).status_code == 401
