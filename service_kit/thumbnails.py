"""Image bytes from outside in, a validated WebP thumbnail out: one decoder for every service.

Previews come from CivitAI, from files next to a model in a user's library, or from a user's upload;
all are hostile. The bytes are bounded in size, decoded by Pillow with only the common web formats
enabled (no EPS/Ghostscript, no exotic decoders), the pixel count read from the header is bounded
before any pixel is decoded (image bombs), and only the first frame is re-encoded as a WebP of at
most THUMBNAIL_SIDE px. Nothing of the input (its bytes, EXIF, a PNG's prompt chunk) survives.

The registry (SetPreview, sidecar previews), the CivitAI service (IdentifyFiles, downloads) and the
gateway's image proxy all call `make_thumbnail`, so they agree on what an acceptable image is.
CPU-bound: async callers run it in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, ImageOps, UnidentifiedImageError

# SetPreview's documented input limit; CivitAI's originals are mostly well under it.
MAX_INPUT_BYTES = 16 * 1024 * 1024
# 6144 x 6144 (a 1536 px image upscaled 4x); a decoded RGBA frame this size is 144 MiB.
MAX_PIXELS = 6144 * 6144
THUMBNAIL_SIDE = 512
THUMBNAIL_FORMAT = "WEBP"
THUMBNAIL_MEDIA_TYPE = "image/webp"
THUMBNAIL_QUALITY = 82
# The formats previews come in; Pillow tries no other decoder.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


class ThumbnailReason(StrEnum):
    TOO_LARGE = "preview_too_large"  # more bytes than the byte bound
    TOO_MANY_PIXELS = "preview_too_many_pixels"  # an image bomb, or just too big
    NOT_AN_IMAGE = "preview_not_an_image"  # not one of ACCEPTED_FORMATS, truncated, or corrupt
    EMPTY = "preview_empty"


class ThumbnailRefused(ValueError):
    """The bytes are not an image we keep; `reason` says which bound or check refused them."""

    def __init__(self, reason: ThumbnailReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    width: int
    height: int
    media_type: str = THUMBNAIL_MEDIA_TYPE


def make_thumbnail(
    data: bytes,
    *,
    max_side: int = THUMBNAIL_SIDE,
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Thumbnail:
    """A WebP thumbnail of the first frame of `data`, at most `max_side` px on its longer side (never
    enlarged), EXIF orientation applied. Raises ThumbnailRefused."""
    if not data:
        raise ThumbnailRefused(ThumbnailReason.EMPTY, "no image bytes")
    if len(data) > max_bytes:
        raise ThumbnailRefused(ThumbnailReason.TOO_LARGE, f"{len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) between its own limit and twice it; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        with image:
            width, height = image.size  # from the header: nothing decoded yet
            if width <= 0 or height <= 0:
                raise ThumbnailRefused(ThumbnailReason.NOT_AN_IMAGE, f"an image of {width}x{height} pixels")
            if width * height > max_pixels:
                raise ThumbnailRefused(
                    ThumbnailReason.TOO_MANY_PIXELS, f"{width}x{height} pixels, over the {max_pixels}-pixel limit"
                )
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
    except ThumbnailRefused:
        raise
    except Image.DecompressionBombError as exc:
        raise ThumbnailRefused(ThumbnailReason.TOO_MANY_PIXELS, str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        # What Pillow raises for junk, truncated and corrupt data (SyntaxError: some plugins' parse errors).
        raise ThumbnailRefused(
            ThumbnailReason.NOT_AN_IMAGE, f"not a valid image ({exc.__class__.__name__}: {str(exc)[:200]})"
        ) from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
