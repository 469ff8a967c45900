"""Model previews: kept by the model's sha256 with the registry's data, as validated thumbnails.

Image bytes come from outside (CivitAI, a preview next to a model in a user's library); the one
decoder every service uses (service_kit.thumbnails) bounds them, decodes only the common web formats
with a pixel bound checked first (image bombs) and re-encodes a WebP: only that re-encoded image is
ever stored or served.

Stored as `<data>/previews/<sha256>.webp`, written atomically.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image

from service_kit.files import write_atomic
from service_kit.thumbnails import (
    ACCEPTED_FORMATS,
    MAX_INPUT_BYTES,
    MAX_PIXELS,
    THUMBNAIL_FORMAT,
    THUMBNAIL_MEDIA_TYPE,
    THUMBNAIL_SIDE,
    Thumbnail,
    make_thumbnail,
)
from service_kit.thumbnails import ThumbnailReason as PreviewReason
from service_kit.thumbnails import ThumbnailRefused as PreviewRefused

__all__ = [
    "ACCEPTED_FORMATS", "MAX_INPUT_BYTES", "MAX_PIXELS", "PREVIEWS_DIR", "THUMBNAIL_FORMAT", "THUMBNAIL_MEDIA_TYPE",
    "THUMBNAIL_SIDE", "PreviewReason", "PreviewRefused", "PreviewStore", "Thumbnail", "make_thumbnail",
]

PREVIEWS_DIR = "previews"

_SHA256 = re.compile(r"[0-9a-f]{64}")


class PreviewStore:
    """Thumbnails by the model's sha256 under `<data>/previews/`."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / PREVIEWS_DIR

    def path_of(self, sha256: str) -> Path:
        sha256 = sha256.lower()
        if not _SHA256.fullmatch(sha256):
            # The name comes from a client or a file: only a sha256 may become a file name here.
            raise ValueError(f"not a sha256: {sha256[:80]!r}")
        return self.folder / f"{sha256}.webp"

    def put(self, sha256: str, thumbnail: Thumbnail) -> Path:
        path = self.path_of(sha256)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, thumbnail.data)
        return path

    def get(self, sha256: str) -> Thumbnail | None:
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        with Image.open(io.BytesIO(data), formats=(THUMBNAIL_FORMAT,)) as image:
            width, height = image.size  # our own file: only its header is read, for the size
        return Thumbnail(data, width, height)

    def delete(self, sha256: str) -> bool:
        path = self.path_of(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
