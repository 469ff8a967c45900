"""CivitAI's preview images through the gateway: `GET /api/v1/civitai-images?url=…` (and, for a signed-in
UI session, `GET /ui-civitai-images?url=…`).

The page then talks to the gateway only: it works behind the API key, in the demo (whose fake CivitAI
serves real images on 127.0.0.1) and without sending the browser to CivitAI's hosts.

Not an open proxy: the URL must be on CivitAI's image hosts (image.civitai.com, imagecache.civitai.com,
https on 443) or on the origin of the configured CivitAI base URL (scheme, host and port exactly), with
no userinfo; anything else is refused before any connection. A redirect is followed only to a URL that
passes the same check. Nothing of the client's request travels upstream (no cookie, key, token or
header of its own; no proxy from the environment). The body is bounded in bytes and the fetch in time,
then decoded and re-encoded by service_kit.thumbnails (the one decoder): a client gets a WebP made here,
never the upstream bytes. Thumbnails are kept in a memory LRU bounded in bytes; a CivitAI image URL
names one image for good (its uuid is in the path), so the browser may cache it a day (ETag, 304).

The route cannot know an image's NSFW level (the URL does not carry it): the UI leaves out the images
its search results rate above the gateway's limit, and the API's client decides for itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.cookiejar
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urljoin, urlsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response

from gateway.config import GatewaySettings
from gateway.errors import ApiError
from gateway.security import require_api_key
from service_kit.thumbnails import MAX_INPUT_BYTES, THUMBNAIL_MEDIA_TYPE, ThumbnailRefused, make_thumbnail

API_ROUTE = "/api/v1/civitai-images"
UI_ROUTE = "/ui-civitai-images"
CIVITAI_IMAGE_HOSTS = ("image.civitai.com", "imagecache.civitai.com")
MAX_URL_CHARS = 2048
MAX_IMAGE_BYTES = MAX_INPUT_BYTES  # what make_thumbnail accepts at most
FETCH_SECONDS = 20.0  # the whole fetch, redirects included
CONNECT_SECONDS = 5.0
MAX_REDIRECTS = 3
MAX_CONCURRENT_FETCHES = 6  # at most this many bodies (each <= MAX_IMAGE_BYTES) in memory at once
CACHE_BYTES = 64 * 1024 * 1024  # ~2,000 card thumbnails
CACHE_CONTROL = "private, max-age=86400"
USER_AGENT = "modelmanager-gateway"
# CivitAI's CDN path: /<account key>/<uuid>/<params>/<name>; <params> is `original=true` or a resize.
_CDN_PATH = re.compile(r"^(/[A-Za-z0-9_-]+/[0-9a-fA-F-]{36}/)([^/]+)(/[^/]+)$")
CARD_WIDTH = "width=512"
_DEFAULT_PORT = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int


def origin_of(base_url: str) -> Origin | None:
    """The origin of the configured CivitAI base URL (None when it is not an http(s) URL)."""
    try:
        parts = urlsplit(base_url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT or not parts.hostname or parts.username or parts.password:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORT[scheme])


def refused(message: str) -> ApiError:
    return ApiError.local(400, message, "IMAGE_URL_NOT_ALLOWED")


def checked_url(raw: str, allowed: frozenset[Origin]) -> str:
    """The URL rebuilt from its checked parts, or ApiError 400: only the allowed origins, no userinfo,
    printable ASCII only (no parser can read it another way)."""
    if not raw or len(raw) > MAX_URL_CHARS:
        raise refused(f"an image URL of 1 to {MAX_URL_CHARS} characters")
    if any(ord(c) <= 32 or ord(c) >= 127 for c in raw) or "\\" in raw:
        raise refused("an image URL is printable ASCII without spaces or backslashes")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise refused("not a valid URL") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORT or not host:
        raise refused("an image URL is http(s) with a host")
    if "@" in parts.netloc:
        raise refused("an image URL carries no user name or password")
    origin = Origin(scheme, host, port or _DEFAULT_PORT[scheme])
    if origin not in allowed:
        raise refused("images come only from CivitAI's image hosts or the configured CivitAI")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORT[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")


def card_sized(url: str) -> str:
    """A CDN URL asking for the original asks for a 512 px wide one instead (less to fetch and decode)."""
    parts = urlsplit(url)
    m = _CDN_PATH.match(parts.path)
    if m is None or not m.group(2).startswith("original="):
        return url
    return url.replace(parts.path, f"{m.group(1)}{CARD_WIDTH}{m.group(3)}", 1)


@dataclass(frozen=True)
class CachedImage:
    data: bytes
    etag: str


class ImageCache:
    """Least recently used thumbnails, at most `max_bytes` of them."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, CachedImage] = OrderedDict()

    def get(self, key: str) -> CachedImage | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, item: CachedImage) -> None:
        if len(item.data) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= len(old.data)
        self._items[key] = item
        self.bytes += len(item.data)
        while self.bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= len(dropped.data)

    def __len__(self) -> int:
        return len(self._items)


def _no_cookies() -> httpx.Cookies:
    # Whatever an image host sets is never kept nor sent back.
    return httpx.Cookies(http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])))


class ImageProxy:
    def __init__(self, civitai_base_url: str, *, max_bytes: int = MAX_IMAGE_BYTES, timeout: float = FETCH_SECONDS,
                 cache_bytes: int = CACHE_BYTES) -> None:
        origins = {Origin("https", host, 443) for host in CIVITAI_IMAGE_HOSTS}
        if (base := origin_of(civitai_base_url)) is not None:
            origins.add(base)
        self.allowed = frozenset(origins)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.cache = ImageCache(cache_bytes)
        self.upstream_fetches = 0
        self._inflight: dict[str, asyncio.Task[CachedImage]] = {}
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)

    async def image(self, raw_url: str) -> CachedImage:
        url = card_sized(checked_url(raw_url, self.allowed))
        if (hit := self.cache.get(url)) is not None:
            return hit
        task = self._inflight.get(url)
        if task is None:  # one fetch per URL however many cards ask at once
            task = asyncio.create_task(self._load(url))
            self._inflight[url] = task
            task.add_done_callback(lambda _t: self._inflight.pop(url, None))
        return await asyncio.shield(task)

    async def _load(self, url: str) -> CachedImage:
        async with self._slots:
            data = await self._fetch(url)
        try:
            thumb = await asyncio.to_thread(make_thumbnail, data, max_bytes=self.max_bytes)
        except ThumbnailRefused as exc:
            raise ApiError.local(502, f"CivitAI's image was refused: {exc.detail}", "IMAGE_REFUSED",
                                 {"why": exc.reason.value}) from None
        item = CachedImage(thumb.data, f'"{hashlib.sha256(thumb.data).hexdigest()[:32]}"')
        self.cache.put(url, item)
        return item

    async def _fetch(self, url: str) -> bytes:
        self.upstream_fetches += 1
        timeout = httpx.Timeout(self.timeout, connect=CONNECT_SECONDS)
        try:
            async with asyncio.timeout(self.timeout), httpx.AsyncClient(
                    timeout=timeout, follow_redirects=False, trust_env=False, cookies=_no_cookies(),
                    headers={"User-Agent": USER_AGENT, "Accept": "image/*",
                             "Accept-Encoding": "identity"}) as client:
                for _ in range(MAX_REDIRECTS + 1):
                    async with client.stream("GET", url) as resp:
                        if resp.is_redirect:
                            url = self._redirect(url, resp.headers.get("location", ""))
                            continue
                        return await self._body(resp)
                raise ApiError.local(502, f"CivitAI's image host redirected more than {MAX_REDIRECTS} times",
                                     "IMAGE_REDIRECT_REFUSED")
        except TimeoutError:
            raise ApiError.local(504, f"CivitAI's image host did not answer within {self.timeout:g} s",
                                 "IMAGE_UPSTREAM_TIMEOUT") from None
        except httpx.HTTPError as exc:
            raise ApiError.local(503, f"CivitAI's image host is unreachable ({type(exc).__name__})",
                                 "IMAGE_UPSTREAM_UNAVAILABLE") from None

    def _redirect(self, url: str, location: str) -> str:
        try:
            return checked_url(urljoin(url, location), self.allowed)
        except ApiError:
            raise ApiError.local(502, "CivitAI's image host redirected to a host images never come from",
                                 "IMAGE_REDIRECT_REFUSED") from None

    async def _body(self, resp: httpx.Response) -> bytes:
        if resp.status_code == 404:
            raise ApiError.local(404, "CivitAI has no such image", "IMAGE_NOT_FOUND")
        if resp.status_code != 200:
            raise ApiError.local(502, f"CivitAI's image host answered {resp.status_code}", "IMAGE_UPSTREAM_FAILED",
                                 {"status": str(resp.status_code)})
        too_large = ApiError.local(502, f"CivitAI's image is over {self.max_bytes} bytes", "IMAGE_REFUSED",
                                   {"why": "preview_too_large"})
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise too_large
        body = bytearray()
        async for chunk in resp.aiter_raw():  # raw: a small gzip bomb cannot grow past the bound either
            body += chunk
            if len(body) > self.max_bytes:
                raise too_large
        return bytes(body)


def proxy_of(app: FastAPI) -> ImageProxy:
    """The app's proxy (made on first use, from its settings)."""
    proxy = getattr(app.state, "image_proxy", None)
    if proxy is None:
        proxy = app.state.image_proxy = ImageProxy(app.state.settings.civitai_base_url)
    return proxy


def _matches(if_none_match: str | None, etag: str) -> bool:
    return if_none_match is not None and any(
        t.strip().removeprefix("W/") in (etag, "*") for t in if_none_match.split(","))


async def image_response(request: Request, url: str, if_none_match: str | None) -> Response:
    item = await proxy_of(request.app).image(url)
    headers = {"ETag": item.etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if _matches(if_none_match, item.etag):
        return Response(status_code=304, headers=headers)
    return Response(item.data, media_type=THUMBNAIL_MEDIA_TYPE, headers=headers)


ImageUrl = Annotated[str, Query(max_length=MAX_URL_CHARS, description="a CivitAI image URL (images[].url)")]
IfNoneMatch = Annotated[str | None, Header(max_length=4096)]

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)])


@router.get("/civitai-images", tags=["civitai"], response_class=Response,
            responses={200: {"content": {THUMBNAIL_MEDIA_TYPE: {}}}},
            summary="A CivitAI preview image as a WebP thumbnail (only CivitAI's image hosts; cached)")
async def civitai_image(request: Request, url: ImageUrl, if_none_match: IfNoneMatch = None) -> Response:
    return await image_response(request, url, if_none_match)


def ui_image_url(url: str) -> str:
    """The UI's URL of a CivitAI image, relative (the UI may sit under a proxy's prefix)."""
    return f"{UI_ROUTE.lstrip('/')}?url={quote(url, safe='')}"


def install_ui_image_route(app: FastAPI, settings: GatewaySettings) -> None:
    """The route for a signed-in UI session (as preview_route's: the browser has the login cookie, not
    the API key); call before mounting the UI at "/"."""
    from gateway.ui.preview_route import LOGIN_REQUIRED, ui_session_check

    allowed = ui_session_check(app, settings)

    async def ui_civitai_image(request: Request, url: ImageUrl, if_none_match: IfNoneMatch = None) -> Response:
        if not allowed(request):
            raise ApiError.local(401, LOGIN_REQUIRED, "UI_LOGIN_REQUIRED")
        return await image_response(request, url, if_none_match)

    app.add_api_route(UI_ROUTE, ui_civitai_image, methods=["GET"], include_in_schema=False, response_class=Response)


__all__ = ["API_ROUTE", "UI_ROUTE", "ImageCache", "ImageProxy", "checked_url", "install_ui_image_route",
           "router", "ui_image_url"]
