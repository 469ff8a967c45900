"""A version's preview: its first image fetched from CivitAI's image hosts, bounded, re-encoded as a thumbnail.

The image URL comes from CivitAI's JSON, so it is data, not a place we trust: only CivitAI's image
CDN (https) or the configured CivitAI origin (a mirror, the fake in tests) is ever fetched, redirects
included, and never with the token. The body is bounded in bytes while it streams, and in pixels
and format by service_kit.thumbnails; only the re-encoded WebP leaves this module. Any failure is
"no preview" (logged), never an error for the lookup or the download that asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from civitai_svc import errors as E
from civitai_svc.api_client import CivitaiApi, Disallowed, TooLarge
from modelmanager.v1 import civitai_pb2
from service_kit import thumbnails
from service_kit.logs import get_logger
from service_kit.thumbnails import Thumbnail, ThumbnailRefused

log = get_logger("civitai_svc.previews")

# CivitAI's image CDN (https://image.civitai.com/<key>/<uuid>/<params>/<id>.jpeg).
IMAGE_HOSTS = frozenset({"image.civitai.com", "imagecache.civitai.com"})
MAX_IMAGE_BYTES = thumbnails.MAX_INPUT_BYTES
# A whole fetch, however slowly the host drips bytes (the client's timeouts are per read).
FETCH_SECONDS = 60.0
# Fetches and decodes at once, for the whole service: each decode may hold ~150 MB.
CONCURRENCY = 4


@dataclass(frozen=True)
class Preview:
    thumbnail: Thumbnail
    image: civitai_pb2.PreviewImage  # the image it was made from (URL, size, NSFW level)


def first_image(info: civitai_pb2.CivitaiModelInfo) -> civitai_pb2.PreviewImage | None:
    """The version's first still image (videos are skipped: a thumbnail is made from a picture)."""
    for image in info.images:
        if image.url and image.type in ("", "image"):
            return image
    return None


def sized_url(url: httpx.URL) -> httpx.URL:
    """The CDN's resized variant instead of `original=true` (originals run to ~20 MB; a thumbnail needs
    ~512 px). The CDN path is /<key>/<uuid>/<params>/<name>; any other shape is left as it is."""
    parts = url.path.split("/")
    if len(parts) == 5 and "=" in parts[3]:
        parts[3] = f"width={thumbnails.THUMBNAIL_SIDE}"
        return url.copy_with(path="/".join(parts))
    return url


class PreviewFetcher:
    """Thumbnails of versions' first images; one per service, so CONCURRENCY bounds all of them."""

    def __init__(self, api: CivitaiApi, *, concurrency: int = CONCURRENCY, max_bytes: int = MAX_IMAGE_BYTES,
                 max_pixels: int = thumbnails.MAX_PIXELS) -> None:
        self.api = api
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._limit = asyncio.Semaphore(concurrency)

    def allowed(self, url: httpx.URL) -> bool:
        if url.scheme == "https" and url.host in IMAGE_HOSTS and url.port in (None, 443):
            return True
        return self.api.same_origin(url)

    async def preview_of(self, info: civitai_pb2.CivitaiModelInfo) -> Preview | None:
        """The thumbnail of the version's first image, or None (no image, or one we refuse; logged)."""
        image = first_image(info)
        if image is None:
            return None
        what = f"the preview of version {info.version_id}"
        try:
            url = httpx.URL(image.url)
        except httpx.InvalidURL:
            log.info("preview.skipped", version_id=info.version_id, why="invalid URL")
            return None
        if not self.allowed(url):  # checked before the URL is touched at all
            log.warning("preview.skipped", version_id=info.version_id, why="not an allowed image host",
                        host=url.host)
            return None
        async with self._limit:
            try:
                async with asyncio.timeout(FETCH_SECONDS):
                    data = await self.api.fetch_bounded(str(sized_url(url)), max_bytes=self.max_bytes,
                                                        allowed=self.allowed, what=what)
                thumbnail = await asyncio.to_thread(thumbnails.make_thumbnail, data, max_bytes=self.max_bytes,
                                                    max_pixels=self.max_pixels)
            except ThumbnailRefused as exc:
                log.info("preview.refused", version_id=info.version_id, reason=exc.reason.value, why=exc.detail)
                return None
            except (TooLarge, Disallowed) as exc:
                log.info("preview.skipped", version_id=info.version_id, why=str(exc))
                return None
            except TimeoutError:
                log.info("preview.skipped", version_id=info.version_id, why=f"not fetched in {FETCH_SECONDS:.0f} s")
                return None
            except E.errors.ServiceError as exc:  # the image host's 404/5xx, or no connection
                log.info("preview.skipped", version_id=info.version_id, reason=exc.reason, why=exc.message)
                return None
        return Preview(thumbnail, image)
