"""The CivitAI image proxy over real HTTP: the gateway on 127.0.0.1, the fake CivitAI serving real JPEGs in
the CDN's path shape on its own origin (the configured CivitAI base URL).

Only CivitAI's image hosts and that origin are fetched: other ports of 127.0.0.1, other hosts, userinfo
tricks, IPv6 literals and redirects elsewhere are refused before any connection (a listener on another
port sees none). Huge, bomb, invalid and truncated images are refused; what is served is a WebP made
here; the second fetch of a URL is the cache's (the fake counts its image requests); nothing of the
client's request (API key, cookie, token) travels upstream.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest_asyncio
from gw_helpers import CountingListener, running_gateway, settings_for
from PIL import Image

import devtools.fake_civitai as fake_civitai
from gateway.image_proxy import CachedImage, ImageCache

ROUTE = "/api/v1/civitai-images"
KEY = "proxy-test-key"


@pytest_asyncio.fixture
async def env() -> AsyncIterator[dict]:
    fake = fake_civitai.FakeCivitai()
    lora = fake.add_lora(name="Ink Style", previews=(1, 1, 1, 1, 1, 1))
    listener = CountingListener()
    try:
        async with running_gateway(settings_for(civitai_base_url=fake.base_url, api_key=KEY)) as http:
            http.headers["x-api-key"] = KEY
            yield {"http": http, "fake": fake, "lora": lora, "listener": listener}
    finally:
        listener.close()
        fake.close()


def reason(resp) -> str:
    return resp.json()["error"]["details"][0]["reason"]


async def test_an_image_is_fetched_once_reencoded_and_cached(env: dict) -> None:
    http, fake, url = env["http"], env["fake"], env["lora"].image_urls[0]
    first = await http.get(ROUTE, params={"url": url}, headers={"cookie": "session=s3cret",
                                                                "x-civitai-token": "tok3n"})
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/webp"
    assert "private" in first.headers["cache-control"] and first.headers["etag"]
    with Image.open(io.BytesIO(first.content)) as image:
        assert image.format == "WEBP" and image.size == (64, 96)  # never enlarged
    assert fake.calls("image") == 1
    upstream = [r for r in fake.requests if r.path.endswith(url.rsplit("/", 1)[1])]
    assert len(upstream) == 1
    assert not {"x-api-key", "authorization", "cookie", "x-civitai-token"} & set(upstream[0].headers)
    # The second fetch, and a revalidation, are the cache's.
    again = await http.get(ROUTE, params={"url": url})
    assert again.status_code == 200 and again.content == first.content
    revalidated = await http.get(ROUTE, params={"url": url}, headers={"if-none-match": first.headers["etag"]})
    assert revalidated.status_code == 304 and revalidated.content == b""
    assert fake.calls("image") == 1


async def test_the_route_needs_the_api_key(env: dict) -> None:
    url = env["lora"].image_urls[0]
    resp = await env["http"].get(ROUTE, params={"url": url}, headers={"x-api-key": "wrong"})
    assert resp.status_code == 401
    assert env["fake"].calls("image") == 0


async def test_other_hosts_are_refused_before_any_connection(env: dict) -> None:
    http, fake, listener = env["http"], env["fake"], env["listener"]
    image_path = env["lora"].image_urls[0].split("/", 3)[3]
    fake_port = fake.base_url.rsplit(":", 1)[1]
    other = f"127.0.0.1:{listener.port}"
    storage = fake.storage_url.split("://", 1)[1]
    for url in (
        f"http://{other}/{image_path}",  # another port of 127.0.0.1
        f"http://{storage}/{image_path}",  # the fake's storage server
        f"http://localhost:{fake_port}/{image_path}",  # the same server under another name
        f"https://127.0.0.1:{fake_port}/{image_path}",  # another scheme
        f"http://operator@127.0.0.1:{fake_port}/{image_path}",  # userinfo on an allowed host
        f"http://127.0.0.1:{fake_port}@{other}/{image_path}",  # userinfo that looks like the host
        f"http://{other}#@127.0.0.1:{fake_port}/{image_path}",
        f"http://{other}\\@127.0.0.1:{fake_port}/{image_path}",
        f"http://[::1]:{fake_port}/{image_path}",  # IPv6 literals
        f"http://[::ffff:127.0.0.1]:{listener.port}/{image_path}",
        f"http://[::ffff:7f00:1]:{fake_port}/{image_path}",
        f"http://2130706433:{fake_port}/{image_path}",  # 127.0.0.1 as a number
        f"http://127.1:{fake_port}/{image_path}",
        "https://image.civitai.com.evil.example/x.jpeg",
        "https://evil.example/image.civitai.com/x.jpeg",
        "https://image.civitai.com:8443/x.jpeg",  # CivitAI's host, another port
        "http://image.civitai.com/x.jpeg",  # plain http
        "https://image.civitai.com./x.jpeg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:" + fake_port + "/x",
        f" http://127.0.0.1:{fake_port}/{image_path}",
        f"http://127.0.0.1:{fake_port}/a b.jpeg",
        "",
    ):
        resp = await http.get(ROUTE, params={"url": url})
        assert resp.status_code == 400 and reason(resp) == "IMAGE_URL_NOT_ALLOWED", (url, resp.text)
    overlong = await http.get(ROUTE, params={"url": f"{fake.base_url}/{'x' * 5000}.jpeg"})
    assert overlong.status_code == 400
    assert fake.calls("image") == 0 and listener.seen == []


async def test_a_redirect_off_the_allowed_hosts_is_refused(env: dict) -> None:
    http, fake, listener = env["http"], env["fake"], env["listener"]
    urls = env["lora"].image_urls
    for location in (f"http://127.0.0.1:{listener.port}/x.jpeg", "https://evil.example/x.jpeg",
                     f"http://user@{fake.base_url.split('://', 1)[1]}/x.jpeg", "//evil.example/x.jpeg"):
        fake.fail("image", 302, headers={"Location": location})
        resp = await http.get(ROUTE, params={"url": urls[0]})
        assert resp.status_code == 502, (location, resp.text)
        assert reason(resp) == "IMAGE_REDIRECT_REFUSED"
    assert listener.seen == []
    # A redirect to another image on the allowed origin is followed.
    fake.fail("image", 302, headers={"Location": urls[1]})
    resp = await http.get(ROUTE, params={"url": urls[0]})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/webp"
    # A redirect loop ends.
    fake.fail("image", 302, times=10, headers={"Location": urls[2]})
    resp = await http.get(ROUTE, params={"url": urls[2]})
    assert resp.status_code == 502 and reason(resp) == "IMAGE_REDIRECT_REFUSED"
    fake.clear_failures()


async def test_bad_images_are_refused(env: dict) -> None:
    http, fake, urls = env["http"], env["fake"], env["lora"].image_urls
    for url, kind, why in ((urls[0], "huge", "preview_too_large"), (urls[1], "bomb", "preview_too_many_pixels"),
                           (urls[2], "invalid", "preview_not_an_image"),
                           (urls[3], "truncated", "preview_not_an_image")):
        fake.bad_image(url, kind)
        resp = await http.get(ROUTE, params={"url": url})
        assert resp.status_code == 502, (kind, resp.text)
        error = resp.json()["error"]["details"][0]
        assert error["reason"] == "IMAGE_REFUSED" and error["metadata"]["why"] == why, kind
    # A refusal is not cached: healed, the image is served.
    fake.bad_image(urls[2], None)
    assert (await http.get(ROUTE, params={"url": urls[2]})).status_code == 200


async def test_upstream_errors(env: dict) -> None:
    http, fake, urls = env["http"], env["fake"], env["lora"].image_urls
    fake.fail("image", 404)
    resp = await http.get(ROUTE, params={"url": urls[4]})
    assert resp.status_code == 404 and reason(resp) == "IMAGE_NOT_FOUND"
    fake.fail("image", 500)
    resp = await http.get(ROUTE, params={"url": urls[4]})
    assert resp.status_code == 502 and reason(resp) == "IMAGE_UPSTREAM_FAILED"
    assert resp.json()["error"]["status"] == "UNAVAILABLE"  # gRPC's reading of 502, not UNKNOWN
    gone = await http.get(ROUTE, params={"url": f"{fake.base_url}/{quote('no/such/image.jpeg')}"})
    assert gone.status_code in (404, 502)


async def test_the_ui_route_needs_a_login() -> None:
    fake = fake_civitai.FakeCivitai()
    lora = fake.add_lora(name="Ink Style")
    try:
        async with running_gateway(settings_for(civitai_base_url=fake.base_url, api_key=KEY, ui=True)) as http:
            resp = await http.get("/ui-civitai-images", params={"url": lora.image_urls[0]})
            assert resp.status_code == 401 and reason(resp) == "UI_LOGIN_REQUIRED"
            assert fake.calls("image") == 0
        async with running_gateway(settings_for(civitai_base_url=fake.base_url, ui=True)) as http:
            resp = await http.get("/ui-civitai-images", params={"url": lora.image_urls[0]})
            assert resp.status_code == 200 and resp.headers["content-type"] == "image/webp"
            refused = await http.get("/ui-civitai-images", params={"url": "https://evil.example/x.jpeg"})
            assert refused.status_code == 400
    finally:
        fake.close()


def test_the_cache_is_bounded_in_bytes() -> None:
    cache = ImageCache(max_bytes=100)
    for i in range(10):
        cache.put(str(i), CachedImage(bytes(30), str(i)))
    assert cache.bytes <= 100 and len(cache) == 3
    assert cache.get("9") is not None and cache.get("0") is None
    cache.get("7")
    cache.put("new", CachedImage(bytes(30), "n"))
    assert cache.get("7") is not None and cache.get("8") is None  # least recently used goes first
    cache.put("big", CachedImage(bytes(101), "b"))
    assert cache.get("big") is None
