"""Model previews: any image in, a validated thumbnail out, kept by the model's sha256 with the registry's data.

Image bytes come from outside (CivitAI, a preview next to a model in a user's library): they are
bounded in size, decoded by Pillow with only the common web formats enabled (no EPS/Ghostscript, no
exotic decoders) and a pixel-count bound checked before any pixel is decoded (image bombs), then
re-encoded as a WebP of at most THUMBNAIL_SIDE px. Only that re-encoded image is ever stored or
served: none of the input's bytes (or its metadata: EXIF, a PNG's prompt) survive.

Stored as `<data>/previews/<sha256>.webp`, written atomically.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from service_kit.files import write_atomic

MAX_INPUT_BYTES = 32 * 1024 * 1024  # CivitAI originals run to ~20 MB (large PNGs)
# 6144 x 6144 (a 1536 px image upscaled 4x); a decoded RGBA frame this size is 144 MiB.
MAX_PIXELS = 6144 * 6144
THUMBNAIL_SIDE = 512
THUMBNAIL_FORMAT = "WEBP"
THUMBNAIL_MEDIA_TYPE = "image/webp"
THUMBNAIL_QUALITY = 82
# The formats previews come in; Pillow tries no other decoder.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
PREVIEWS_DIR = "previews"

_SHA256 = re.compile(r"[0-9a-f]{64}")


class PreviewReason(StrEnum):
    TOO_LARGE = "preview_too_large"  # more bytes than MAX_INPUT_BYTES
    TOO_MANY_PIXELS = "preview_too_many_pixels"  # an image bomb, or just too big
    NOT_AN_IMAGE = "preview_not_an_image"  # not one of ACCEPTED_FORMATS, truncated, or corrupt
    EMPTY = "preview_empty"


class PreviewRefused(ValueError):
    """The bytes are not an image we keep; `reason` is a PreviewReason."""

    def __init__(self, reason: PreviewReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    width: int
    height: int
    media_type: str = THUMBNAIL_MEDIA_TYPE


def make_thumbnail(data: bytes, *, max_side: int = THUMBNAIL_SIDE, max_bytes: int = MAX_INPUT_BYTES,
                   max_pixels: int = MAX_PIXELS) -> Thumbnail:
    """A WebP thumbnail of the first frame of `data`, at most `max_side` px on its longer side (never
    enlarged), EXIF orientation applied. Raises PreviewRefused."""
    if not data:
        raise PreviewRefused(PreviewReason.EMPTY, "no image bytes")
    if len(data) > max_bytes:
        raise PreviewRefused(PreviewReason.TOO_LARGE, f"{len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) between its own limit and twice it; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        with image:
            width, height = image.size  # from the header: nothing decoded yet
            if width <= 0 or height <= 0:
                raise PreviewRefused(PreviewReason.NOT_AN_IMAGE, f"an image of {width}x{height} pixels")
            if width * height > max_pixels:
                raise PreviewRefused(PreviewReason.TOO_MANY_PIXELS, f"{width}x{height} pixels, over the "
                                     f"{max_pixels}-pixel limit")
            image.seek(0)  # an animation's first frame
            if image.format == "JPEG":
                image.draft("RGB", (max_side, max_side))  # decode at a reduced scale: faster, less memory
            image.load()
            frame = ImageOps.exif_transpose(image)
            frame = frame.convert("RGBA" if _has_alpha(frame) else "RGB")
            frame.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            frame.save(out, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY, method=4)
            return Thumbnail(out.getvalue(), frame.width, frame.height)
    except PreviewRefused:
        raise
    except Image.DecompressionBombError as exc:
        raise PreviewRefused(PreviewReason.TOO_MANY_PIXELS, str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        # What Pillow raises for junk, truncated and corrupt data (SyntaxError: some plugins' parse errors).
        raise PreviewRefused(PreviewReason.NOT_AN_IMAGE, f"not a valid image ({exc.__class__.__name__}: "
                             f"{str(exc)[:200]})") from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


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
