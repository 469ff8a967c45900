"""service_kit.thumbnails: any image in, a bounded WebP thumbnail out; junk, bombs and oversize refused."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from devtools.fake_civitai.images import bomb_png
from service_kit.thumbnails import THUMBNAIL_SIDE, ThumbnailReason, ThumbnailRefused, make_thumbnail


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=("WEBP",))
    image.load()
    return image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_a_large_image_becomes_a_webp_at_most_512_px_keeping_its_shape(fmt):
    source = Image.new("RGB", (2000, 1000), (200, 30, 40))
    thumb = make_thumbnail(encoded(source, fmt))
    image = decoded(thumb.data)
    assert image.size == (thumb.width, thumb.height) == (THUMBNAIL_SIDE, 256)
    assert thumb.media_type == "image/webp"


def test_small_images_are_not_enlarged_and_alpha_is_kept():
    thumb = make_thumbnail(encoded(Image.new("RGBA", (40, 30), (0, 0, 0, 0)), "PNG"))
    image = decoded(thumb.data)
    assert image.size == (40, 30) and image.mode == "RGBA"


def test_metadata_does_not_survive():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a secret prompt")
    thumb = make_thumbnail(encoded(Image.new("RGB", (64, 64)), "PNG", pnginfo=info))
    assert b"secret" not in thumb.data and not decoded(thumb.data).info.get("parameters")


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: a portrait stored as landscape
    thumb = make_thumbnail(encoded(Image.new("RGB", (100, 50)), "JPEG", exif=exif))
    assert (thumb.width, thumb.height) == (50, 100)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", ThumbnailReason.EMPTY),
    (b"<html>not an image</html>", ThumbnailReason.NOT_AN_IMAGE),
    (bomb_png(), ThumbnailReason.TOO_MANY_PIXELS),
    (encoded(Image.new("RGB", (64, 64)), "JPEG")[:200], ThumbnailReason.NOT_AN_IMAGE),  # truncated
    (encoded(Image.new("RGB", (8, 8)), "BMP"), ThumbnailReason.NOT_AN_IMAGE),  # a format not accepted
])
def test_refused(data, reason):
    with pytest.raises(ThumbnailRefused) as exc:
        make_thumbnail(data)
    assert exc.value.reason is reason


def test_bounds_are_the_callers():
    png = encoded(Image.new("RGB", (300, 300)), "PNG")
    with pytest.raises(ThumbnailRefused) as exc:
        make_thumbnail(png, max_bytes=len(png) - 1)
    assert exc.value.reason is ThumbnailReason.TOO_LARGE
    with pytest.raises(ThumbnailRefused) as exc:
        make_thumbnail(png, max_pixels=300 * 300 - 1)
    assert exc.value.reason is ThumbnailReason.TOO_MANY_PIXELS
    assert make_thumbnail(png, max_side=64).width == 64
