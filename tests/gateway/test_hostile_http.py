"""A hostile client against the gateway (behind MODELMGR_API_KEY), over real HTTP to the real services:
auth before any body is read, body limits, malformed JSON shapes, over-long ids, failed-login throttling,
liveness vs health, and error messages that do not leak service addresses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from gw_helpers import running_gateway, settings_for, start_server

import civitai_svc.app as civitai_app
import civitai_svc.config as civitai_config
import devtools.fake_civitai as fake_civitai
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config
from gateway.app import create_app

KEY = "hostile-test-key"
AUTH = {"x-api-key": KEY}


@pytest_asyncio.fixture
async def services(tmp_path: Path) -> AsyncIterator[dict]:
    """The real registry and CivitAI service (the latter on a local fake CivitAI)."""
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    models.mkdir()
    fake = fake_civitai.FakeCivitai()
    registry = await start_server(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    civitai = await start_server(civitai_app.create_server(civitai_config.CivitaiSettings(
        listen="127.0.0.1:0", registry=registry.address, user_models_dir=user_models, base_url=fake.base_url)))
    try:
        yield {"registry": registry.address, "civitai": civitai.address, "tmp": tmp_path}
    finally:
        await civitai.stop(0)
        await registry.stop(0)
        fake.close()


def assert_envelope(resp: httpx.Response, code: int, status: str, reason: str | None = None) -> dict:
    assert resp.status_code == code, resp.text
    err = resp.json()["error"]
    assert set(err) == {"code", "status", "message", "details"}
    assert err["code"] == code and err["status"] == status
    if reason is not None:
        assert err["details"][0]["reason"] == reason, err
    return err


# ---------------------------------------------------------------- 1. auth before the body, body limits


async def test_no_body_is_read_before_the_key_is_checked() -> None:
    """The app itself, called as ASGI: a request without a key is answered 401 without one receive()."""
    app = create_app(settings_for(api_key=KEY))
    received: list[dict] = []
    sent: list[dict] = []

    async def receive() -> dict:
        received.append({})
        return {"type": "http.disconnect"}  # (if it were read at all: the client went away)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/v1/prompt/compose", "raw_path": b"/api/v1/prompt/compose", "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(200 * 1024 * 1024).encode())]}
    await app(scope, receive, send)
    assert received == []
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 401
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["error"]["details"][0]["reason"] == "API_KEY_MISSING"


async def test_a_truncated_body_without_a_key_is_401_at_once() -> None:
    """Over a raw socket: headers announcing 200 MB, a few bytes of body, and the 401 comes back."""
    async with running_gateway(settings_for(api_key=KEY)) as http:
        reader, writer = await asyncio.open_connection(http.base_url.host, http.base_url.port)
        writer.write(b"POST /api/v1/prompt/compose HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 209715200\r\n\r\n{\"prompt\": \"")
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
    assert status_line.split()[1] == b"401", status_line


async def test_bodies_over_the_limit_are_413_by_length_and_by_bytes(services: dict) -> None:
    big = json.dumps({"prompt": "x" * (2 * 1024 * 1024)}).encode()

    async def chunked():  # no Content-Length: only the bytes received tell
        for i in range(0, len(big), 64 * 1024):
            yield big[i:i + 64 * 1024]

    settings = settings_for(registry=services["registry"], api_key=KEY)
    async with running_gateway(settings) as http:
        by_length = await http.post("/api/v1/prompt/compose", content=big,
                                    headers={**AUTH, "content-type": "application/json"})
        err = assert_envelope(by_length, 413, "RESOURCE_EXHAUSTED", "BODY_TOO_LARGE")
        assert err["details"][0]["metadata"]["limit_bytes"] == str(1024 * 1024)
        by_bytes = await http.post("/api/v1/prompt/compose", content=chunked(),
                                   headers={**AUTH, "content-type": "application/json"})
        assert_envelope(by_bytes, 413, "RESOURCE_EXHAUSTED", "BODY_TOO_LARGE")
        # A body under the limit still works, on the real registry.
        ok = await http.post("/api/v1/prompt/compose", json={"prompt": "a cat"}, headers=AUTH)
        assert ok.status_code == 200, ok.text
        # Uploads have their own (much larger) limit: a 4 MiB LoRA goes through.
        lora = fake_civitai.write_safetensors(services["tmp"] / "big_lora.safetensors", "lora", 4 << 20, seed=3)
        with lora.open("rb") as fh:
            up = await http.post("/api/v1/models/upload", data={"type": "lora"}, headers=AUTH,
                                 files={"file": (lora.name, fh)})
        assert up.status_code == 201, up.text


async def test_a_smaller_body_limit_is_a_setting() -> None:
    async with running_gateway(settings_for(api_key=KEY, max_body_bytes=100)) as http:
        resp = await http.post("/api/v1/prompt/compose", json={"prompt": "y" * 200}, headers=AUTH)
        assert_envelope(resp, 413, "RESOURCE_EXHAUSTED", "BODY_TOO_LARGE")


# ---------------------------------------------------------------- 2. malformed JSON shapes


async def test_malformed_json_shapes_are_400_on_the_real_routes(services: dict) -> None:
    settings = settings_for(registry=services["registry"], civitai=services["civitai"], api_key=KEY)
    async with running_gateway(settings) as http:
        for body in (b'{"model":"x"}', b"[1]", b"5", b"null", b'{"model": [1]}', b'"text"'):
            resp = await http.patch("/api/v1/models/a.safetensors", content=body,
                                    headers={**AUTH, "content-type": "application/json"})
            assert_envelope(resp, 400, "INVALID_ARGUMENT")
        for body in (b'{"model":null}', b"[1]", b"null", b'{"model": 5}'):
            resp = await http.post("/api/v1/models", content=body,
                                   headers={**AUTH, "content-type": "application/json"})
            assert_envelope(resp, 400, "INVALID_ARGUMENT")
        for path in ("/api/v1/prompt/compose", "/api/v1/downloads", "/api/v1/civitai/identify"):
            resp = await http.post(path, content=b"[1]", headers={**AUTH, "content-type": "application/json"})
            assert_envelope(resp, 400, "INVALID_ARGUMENT")
        resp = await http.post("/api/v1/downloads", json={"reference": "x", "file_id": "1" * 25}, headers=AUTH)
        assert_envelope(resp, 400, "INVALID_ARGUMENT")
        huge = "9" * 20
        for path, params in (("/api/v1/models", {"page_size": huge}), ("/api/v1/downloads", {"page_size": huge}),
                             ("/api/v1/civitai/search", {"page_size": huge}),
                             ("/api/v1/civitai/info", {"model_id": huge}),
                             ("/api/v1/civitai/info", {"version_id": huge})):
            resp = await http.get(path, params=params, headers=AUTH)
            err = assert_envelope(resp, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
            assert next(iter(params)) in err["message"]
        # The connection and the services are fine afterwards.
        listed = await http.get("/api/v1/models", params={"page_size": 5}, headers=AUTH)
        assert listed.status_code == 200 and listed.json()["models"] == []


# ---------------------------------------------------------------- 3. over-long ids


async def test_overlong_ids_are_400_not_429(services: dict) -> None:
    settings = settings_for(registry=services["registry"], civitai=services["civitai"], api_key=KEY)
    long_id = "j" * 10_000
    async with running_gateway(settings) as http:
        for method, path in (("GET", f"/api/v1/downloads/{long_id}"),
                             ("POST", f"/api/v1/downloads/{long_id}/cancel"),
                             ("GET", f"/api/v1/downloads/{long_id}/events"),
                             ("GET", f"/api/v1/models/{long_id}.safetensors"),
                             ("DELETE", f"/api/v1/models/{long_id}.safetensors")):
            resp = await http.request(method, path, headers=AUTH)
            assert_envelope(resp, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
        # An id of a sane length that does not exist is still the service's 404.
        missing = await http.get("/api/v1/downloads/" + "j" * 100, headers=AUTH)
        assert_envelope(missing, 404, "NOT_FOUND", "JOB_NOT_FOUND")


async def test_a_wrong_expected_sha256_on_an_upload_is_a_client_error(services: dict) -> None:
    lora = fake_civitai.write_safetensors(services["tmp"] / "hashed.safetensors", "lora", 64 << 10, seed=4)
    async with running_gateway(settings_for(registry=services["registry"], api_key=KEY)) as http:
        with lora.open("rb") as fh:
            resp = await http.post("/api/v1/models/upload", headers=AUTH, files={"file": (lora.name, fh)},
                                   data={"type": "lora", "expected_sha256": "ab" * 32})
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["error"]["details"][0]["reason"] == "SHA256_MISMATCH"


# ---------------------------------------------------------------- 4. failed logins and keys throttled


def other_ip_client(http: httpx.AsyncClient, ip: str = "127.0.0.2") -> httpx.AsyncClient:
    """A client of the same gateway from another loopback address (another IP to the gateway)."""
    return httpx.AsyncClient(base_url=http.base_url, transport=httpx.AsyncHTTPTransport(local_address=ip))


async def test_failed_api_keys_are_throttled_per_ip(services: dict) -> None:
    settings = settings_for(registry=services["registry"], api_key=KEY, auth_fail_limit=3, auth_fail_window=600)
    async with running_gateway(settings) as http:
        for _ in range(3):
            assert (await http.get("/api/v1/models", headers={"x-api-key": "guess"})).status_code == 401
        throttled = await http.get("/api/v1/models", headers={"x-api-key": "guess"})
        assert_envelope(throttled, 429, "RESOURCE_EXHAUSTED", "TOO_MANY_FAILED_LOGINS")
        assert 0 < int(throttled.headers["retry-after"]) <= 600
        # That IP is blocked for the window, even with the key (it could be the guesser's last try).
        assert (await http.get("/api/v1/models", headers=AUTH)).status_code == 429
        # Another IP with the key is not throttled by the first one's failures.
        async with other_ip_client(http) as other:
            assert (await other.get("/api/v1/models", headers=AUTH)).status_code == 200
        # Liveness stays open to the blocked IP (a probe never sends a key).
        assert (await http.get("/api/v1/livez")).status_code == 200


async def test_failed_ui_logins_are_throttled_per_ip() -> None:
    async with running_gateway(settings_for(ui=True, api_key=KEY, auth_fail_limit=3)) as http:
        for _ in range(3):
            bad = await http.post("/login", data={"username": "me", "password": "guess"})
            assert bad.status_code == 400
        throttled = await http.post("/login", data={"username": "me", "password": KEY})
        assert_envelope(throttled, 429, "RESOURCE_EXHAUSTED", "TOO_MANY_FAILED_LOGINS")
        assert int(throttled.headers["retry-after"]) > 0
        async with other_ip_client(http) as other:
            ok = await other.post("/login", data={"username": "me", "password": KEY})
            assert ok.status_code == 200
            # Successful logins are not counted: many of them never throttle.
            for _ in range(5):
                assert (await other.post("/login", data={"username": "me", "password": KEY})).status_code == 200


def test_the_failure_table_slides_and_stays_bounded() -> None:
    from gateway.security import FailedAuthLimiter

    now = [1000.0]
    limiter = FailedAuthLimiter(limit=2, window=60.0, max_clients=3, clock=lambda: now[0])
    limiter.failed("a")
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") == 60
    now[0] += 59.5
    assert limiter.retry_after("a") == 1
    now[0] += 1
    assert limiter.retry_after("a") == 0  # the first failure left the window
    # A tentative failure (a login in flight) that then succeeds is forgiven.
    limiter.failed("b")
    token = limiter.failed("b")
    limiter.forgive("b", token)
    assert limiter.retry_after("b") == 0
    for ip in ("c", "d", "e", "f", "g"):
        limiter.failed(ip)
    assert len(limiter) <= 3


# ---------------------------------------------------------------- 5. liveness and health


async def test_livez_is_open_and_health_is_503_when_degraded(services: dict) -> None:
    settings = settings_for(registry=services["registry"], civitai=services["civitai"], api_key=KEY)
    async with running_gateway(settings) as http:
        live = await http.get("/api/v1/livez")
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        assert (await http.get("/api/v1/health")).status_code == 401
        health = await http.get("/api/v1/health", headers=AUTH)  # inference is down
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "degraded"
        assert body["services"] == {"registry": "SERVING", "civitai": "SERVING", "inference": "UNAVAILABLE"}


# ---------------------------------------------------------------- 6. no service addresses in errors


async def test_unavailable_services_are_named_without_their_addresses() -> None:
    settings = settings_for(api_key=KEY)
    async with running_gateway(settings) as http:
        for path, service in (("/api/v1/models", "registry"), ("/api/v1/downloads", "civitai"),
                              ("/api/v1/inference/status", "inference")):
            resp = await http.get(path, headers=AUTH)
            err = assert_envelope(resp, 503, "UNAVAILABLE", "SERVICE_UNAVAILABLE")
            assert err["message"] == f"the {service} service is unavailable"
            address = getattr(settings, service)
            for leak in (address, address.rsplit(":", 1)[1], "failed to connect", "ipv4:"):
                assert leak not in resp.text, resp.text
        # Streams too (the error comes before the first event).
        resp = await http.post("/api/v1/generate", json={"prompt": "x"}, headers=AUTH)
        err = assert_envelope(resp, 503, "UNAVAILABLE", "SERVICE_UNAVAILABLE")
        assert settings.inference not in resp.text
