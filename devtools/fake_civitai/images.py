"""Preview images: real small JPEGs drawn when a version is added, and the broken ones a fault serves.

CivitAI's image CDN serves `https://image.civitai.com/<key>/<uuid>/<params>/<id>.jpeg`, where `<params>`
is `original=true` or a resize like `width=450`; the fake serves the same path shape on its own host.
"""

from __future__ import annotations

import io
import random
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

# The account key in CivitAI's image URLs (the same on every image).
CDN_KEY = "xG1nkqKTMzGDvpLrqFT7WA"
PREVIEW_SIZE = (64, 96)  # 2:3, as the 832x1216 portraits most previews are
IMAGE_FAULTS = ("huge", "bomb", "invalid", "truncated")
_NAMESPACE = uuid.UUID("5b0c1f4e-7f62-4d3a-9a51-7a2b64f0c0de")


@dataclass
class StoredImage:
    image_id: int
    key: str  # the uuid segment of the URL
    data: bytes
    content_type: str
    width: int
    height: int
    nsfw_level: int
    fault: str | None = None  # one of IMAGE_FAULTS
    huge_bytes: int = 64 << 20

    def path(self) -> str:
        return f"/{CDN_KEY}/{self.key}/original=true/{self.image_id}.jpeg"


def make_preview(image_id: int, nsfw_level: int) -> StoredImage:
    """A JPEG with a colour and stripes of its own (by id), so two previews never decode alike."""
    from PIL import Image, ImageDraw

    rng = random.Random(image_id)
    width, height = PREVIEW_SIZE
    img = Image.new("RGB", (width, height), tuple(rng.randrange(40, 216) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for y in range(0, height, 12):
        draw.rectangle((0, y, width, y + 5), fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    key = str(uuid.uuid5(_NAMESPACE, str(image_id)))
    return StoredImage(image_id, key, out.getvalue(), "image/jpeg", width, height, nsfw_level)


def blurhash_of(image_id: int) -> str:
    """A blurhash-shaped string (the fake does not compute real ones; clients only pass them on)."""
    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
    rng = random.Random(image_id)
    return "U" + "".join(rng.choice(chars) for _ in range(27))


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A small PNG whose header claims a huge picture (a decompression bomb: 1.6 G pixels)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + b"\x00" * width  # filter byte + one grey row
    idat = zlib.compress(row * 64, 9)  # the first rows only: a decoder that trusts the header is already lost
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def huge_jpeg_blocks(size: int, block: int = 1 << 20) -> Iterator[bytes]:
    """`size` bytes that start like a JPEG (SOI, APP0), then zeros: a body over any sane bound."""
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    yield head[:size]
    left = size - min(size, len(head))
    while left > 0:
        n = min(block, left)
        yield bytes(n)
        left -= n


INVALID_IMAGE = b"<!DOCTYPE html><html><body>Image not found</body></html>\n"
