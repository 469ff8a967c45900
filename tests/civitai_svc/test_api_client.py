"""The HTTP client against the fake CivitAI on 127.0.0.1: retries, Retry-After, UA, cache, token scope."""

from __future__ import annotations

import asyncio
import email.utils
import http.server
import json
import re
import threading
import time

import httpx
import pytest

from civitai_svc import errors as E
from civitai_svc.api_client import CivitaiApi, Disallowed, RetryPolicy, TooLarge, parse_retry_after
from devtools.fake_civitai import FakeCivitai


@pytest.fixture
async def fake():
    async with FakeCivitai(token="tok-abcdef-123456") as server:
        yield server


@pytest.fixture
async def api(fake):
    client = CivitaiApi(fake.base_url, token="tok-abcdef-123456",
                        retry=RetryPolicy(attempts=3, backoff_base=0.001, retry_after_max=0.05))
    yield client
    await client.aclose()


def test_retry_policy_doubles_and_honours_retry_after():
    policy = RetryPolicy(attempts=3, backoff_base=1.0, backoff_max=30, retry_after_max=120)
    assert [policy.delay(i, None) for i in range(3)] == [1.0, 2.0, 4.0]
    assert policy.delay(0, 7.0) == 7.0
    assert policy.delay(2, 1.0) == 4.0
    assert RetryPolicy(retry_after_max=10).delay(0, 3600) == 10


def test_retry_after_seconds_and_http_date():
    now = time.time()
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


async def test_429_and_503_are_retried_then_succeed(fake, api):
    lora = fake.add_lora()
    fake.rate_limit("model", times=1, retry_after="0")
    fake.unavailable("model", times=1, retry_after=email.utils.formatdate(time.time() + 1, usegmt=True))
    data = await api.get_model(lora.model_id)
    assert data["id"] == lora.model_id
    assert len([r for r in fake.requests if r.path == f"/api/v1/models/{lora.model_id}"]) == 3


async def test_repeated_429_becomes_unavailable_with_retry_after(fake, api):
    lora = fake.add_lora()
    fake.rate_limit("model", times=10, retry_after="30")
    with pytest.raises(E.CivitaiUnavailable) as exc:
        await api.get_model(lora.model_id)
    assert exc.value.metadata["http_status"] == "429" and exc.value.metadata["retry_after_seconds"] == "30.0"
    assert len(fake.requests) == 4  # the first try and three retries


async def test_connection_refused_is_unavailable():
    client = CivitaiApi("http://127.0.0.1:9", retry=RetryPolicy(attempts=1, backoff_base=0.001))
    try:
        with pytest.raises(E.CivitaiUnavailable):
            await client.get_model(1)
    finally:
        await client.aclose()


async def test_user_agent_is_explicit_and_not_a_browser(fake, api):
    lora = fake.add_lora()
    await api.get_model(lora.model_id)
    agent = fake.requests[-1].headers["user-agent"]
    assert agent and not re.search(r"mozilla|chrome|safari|firefox|opera|edge|python-urllib", agent, re.I)


async def test_metadata_is_cached_for_its_time_limit(fake):
    lora = fake.add_lora()
    client = CivitaiApi(fake.base_url, cache_ttl=0.3)
    try:
        await client.get_version(lora.version_id)
        await client.get_version(lora.version_id)
        assert len(fake.requests) == 1
        await asyncio.sleep(0.35)
        await client.get_version(lora.version_id)
        assert len(fake.requests) == 2
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("route", "status", "body", "error", "reason"),
    [
        ("model", 404, {"error": "No model with id 5"}, E.CivitaiNotFound, "CIVITAI_NOT_FOUND"),
        ("model", 401, {"error": "Unauthorized"}, E.CivitaiUnauthenticated, "CIVITAI_UNAUTHENTICATED"),
        ("model", 403, {"error": "Forbidden"}, E.CivitaiForbidden, "CIVITAI_FORBIDDEN"),
        ("model", 400, {"error": {"issues": []}}, E.CivitaiBadRequest, "CIVITAI_BAD_REQUEST"),
    ],
)
async def test_metadata_errors_map(fake, api, route, status, body, error, reason):
    lora = fake.add_lora()
    fake.fail(route, status, body=body)
    with pytest.raises(error) as exc:
        await api.get_model(lora.model_id)
    assert exc.value.reason == reason


async def test_token_goes_to_the_api_host_only(fake, api):
    lora = fake.add_lora()
    redirect = await api.resolve_download(lora.version_id, lora.file_id)
    assert not redirect.same_origin
    response = await api.open_file(redirect, 0, "tok-abcdef-123456")
    try:
        body = await response.aread()
    finally:
        await response.aclose()
    assert response.status_code == 200 and len(body) == lora.size
    assert fake.download_requests()[-1].headers["authorization"] == "Bearer tok-abcdef-123456"
    assert all("authorization" not in r.headers for r in fake.storage_requests())


async def test_html_challenge_instead_of_json_is_unavailable(fake, api):
    lora = fake.add_lora()
    fake.fail("version", 200, body="<!DOCTYPE html><html>Just a moment...</html>")
    with pytest.raises(E.CivitaiUnavailable):
        await api.get_version(lora.version_id)


async def test_browser_user_agents_get_html_flows_from_the_fake(fake):
    lora = fake.add_lora()
    fake.early_access(lora.version_id)
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0"}
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        login = await client.get(f"/api/download/models/{lora.version_id}", headers=browser)
        assert login.status_code == 307 and "reason=download-auth" in login.headers["location"]
        page = await client.get(f"/api/download/models/{lora.version_id}",
                                headers={**browser, "Authorization": "Bearer tok-abcdef-123456"})
        assert page.status_code == 307 and page.headers["location"] == f"/model-versions/{lora.version_id}"
        html = await client.get(page.headers["location"], headers=browser)
        assert html.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("location", "error"),
    [("/login?returnUrl=/model-versions/5&reason=download-auth", E.CivitaiUnauthenticated),
     ("/model-versions/5", E.EarlyAccess)],
)
async def test_redirects_to_site_pages_are_access_errors(fake, api, location, error):
    lora = fake.add_lora()
    fake.fail("download", 307, headers={"Location": location}, body=b"")
    with pytest.raises(error):
        await api.resolve_download(lora.version_id, lora.file_id)


async def test_bulk_by_hash_post_is_retried_on_429_and_sends_uppercase_hashes(fake, api):
    lora = fake.add_lora()
    fake.rate_limit("by-hash-bulk", times=2, retry_after="0")
    versions = await api.versions_by_hashes([lora.sha256, "0" * 64])
    assert [v["id"] for v in versions] == [lora.version_id]
    assert fake.calls("by-hash-bulk") == 3
    assert json.loads(fake.requests[-1].body) == [lora.sha256.upper(), "0" * 64]
    with pytest.raises(ValueError):
        await api.versions_by_hashes(["0" * 64] * 101)


def _same_origin(api):
    return lambda url: api.same_origin(url)


async def test_fetch_bounded_never_sends_the_token_and_follows_only_allowed_redirects(fake, api):
    url = fake.add_lora().image_urls[0]
    data = await api.fetch_bounded(url, max_bytes=1 << 20, allowed=_same_origin(api), what="an image")
    assert data.startswith(b"\xff\xd8") and "authorization" not in fake.requests[-1].headers

    fake.fail("image", 302, headers={"Location": url}, body=b"")  # a redirect on the same host: followed
    assert await api.fetch_bounded(url, max_bytes=1 << 20, allowed=_same_origin(api), what="an image") == data
    fake.reset_counters()
    elsewhere = url.replace("://127.0.0.1:", "://localhost:")  # the same server under another name
    fake.fail("image", 302, headers={"Location": elsewhere}, body=b"")
    with pytest.raises(Disallowed):
        await api.fetch_bounded(url, max_bytes=1 << 20, allowed=_same_origin(api), what="an image")
    with pytest.raises(Disallowed):
        await api.fetch_bounded(elsewhere, max_bytes=1 << 20, allowed=_same_origin(api), what="an image")
    assert fake.calls("image") == 1  # the redirect only


async def test_fetch_bounded_stops_at_the_bound_whatever_the_length_says(fake, api):
    url = fake.add_lora().image_urls[0]
    fake.bad_image(url, "huge", size_bytes=8 << 20)
    with pytest.raises(TooLarge):  # announced by Content-Length
        await api.fetch_bounded(url, max_bytes=1 << 20, allowed=_same_origin(api), what="an image")

    class Endless(http.server.BaseHTTPRequestHandler):  # chunked, no Content-Length, never ends
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"\xff" * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endless = CivitaiApi(f"http://127.0.0.1:{server.server_address[1]}", retry=RetryPolicy(attempts=0))
    try:
        with pytest.raises(TooLarge):
            await endless.fetch_bounded(str(endless.url("img.jpeg")), max_bytes=1 << 20,
                                        allowed=_same_origin(endless), what="an image")
    finally:
        await endless.aclose()
        server.shutdown()
        server.server_close()
