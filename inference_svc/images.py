"""Image bytes in and out: decode and check uploads, encode results as PNG with their parameters."""

from __future__ import annotations

import io
import json
import re
import warnings

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from inference_svc.errors import InvalidImage, InvalidSize, OutOfRangeValue
from service_kit import get_logger

log = get_logger("inference_svc.images")
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
# Inputs larger than this are refused before decoding (decompression bombs).
MAX_INPUT_PIXELS = 4096 * 4096
# Outputs: SDXL works up to ~2048; the upscaler goes further through tiles.
MAX_OUTPUT_SIDE = 8192


def decode_image(data: bytes) -> Image.Image:
    """PNG/JPEG/WebP bytes -> an RGB image; INVALID_ARGUMENT / INVALID_IMAGE otherwise."""
    if not data:
        raise InvalidImage("image is empty", metadata={"field": "image"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ("PNG", "JPEG", "WEBP"):
                raise ValueError(f"format {image.format} is not PNG, JPEG or WebP")
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise ValueError(f"{image.width}x{image.height} is larger than {MAX_INPUT_PIXELS} pixels")
            image.load()
    except UnidentifiedImageError as exc:
        # Pillow's message names the buffer object ("<_io.BytesIO object at 0x…>"): say what is wrong instead,
        # and keep Pillow's words for the log.
        log.info("image.undecodable", size=len(data), head=data[:16].hex(), error=str(exc))
        raise InvalidImage(
            "image cannot be decoded: not a PNG, JPEG or WebP image",
            metadata={"field": "image"},
        ) from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        log.info("image.undecodable", size=len(data), head=data[:16].hex(), error=str(exc))
        raise InvalidImage(
            f"image cannot be decoded: {_OBJECT_REPR.sub('the image', str(exc))}",
            metadata={"field": "image"},
        ) from exc
    return image.convert("RGB")


# The chunk A1111's PNG Info, CivitAI and sd-parsers read (infotext only: JSON there is misread), and
# the one holding this service's own record of the same parameters.
INFOTEXT_CHUNK = "parameters"
RECORD_CHUNK = "modelmanager"


def encode_png(image: Image.Image, infotext: str, record: dict[str, object]) -> bytes:
    """PNG bytes with the generation parameters as A1111 infotext, and as this service's JSON record."""
    info = PngImagePlugin.PngInfo()
    # Pillow writes tEXt, or iTXt (UTF-8) for text that is not Latin-1: the same chunks A1111 writes.
    info.add_text(INFOTEXT_CHUNK, infotext)
    info.add_text(RECORD_CHUNK, json.dumps(record, ensure_ascii=False, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def check_size(field: str, value: int, *, minimum: int = 64, maximum: int = 2048) -> None:
    if value % 8 != 0 or not minimum <= value <= maximum:
        raise InvalidSize(
            f"{field} must be a multiple of 8 between {minimum} and {maximum}, got {value}",
            metadata={"field": field, "value": value},
        )


def check_range(field: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high or value != value:  # value != value: NaN
        raise OutOfRangeValue(
            f"{field} must be between {low} and {high}, got {value}",
            metadata={"field": field, "value": value},
        )
