"""previews: real images in every accepted format become bounded WebP thumbnails; bombs, junk, truncated and
unaccepted formats are refused with a reason; thumbnails stored by sha256, atomically."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from library_helpers import image_bytes
from PIL import Image, PngImagePlugin

from metadata_svc.previews import (
    MAX_PIXELS,
    PREVIEWS_DIR,
    THUMBNAIL_SIDE,
    PreviewReason,
    PreviewRefused,
    PreviewStore,
    Thumbnail,
    make_thumbnail,
)


def _decoded(thumb: Thumbnail) -> Image.Image:
    image = Image.open(io.BytesIO(thumb.data))
    image.load()
    assert image.format == "WEBP" and image.size == (thumb.width, thumb.height)
    return image


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny IDAT: what an image bomb looks like up front."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_every_accepted_format_becomes_a_webp_thumbnail(fmt):
    thumb = make_thumbnail(image_bytes(fmt, size=(1200, 800)))
    assert (thumb.width, thumb.height) == (THUMBNAIL_SIDE, 341) and thumb.media_type == "image/webp"
    _decoded(thumb)


def test_small_images_are_not_enlarged_and_tall_ones_keep_their_shape():
    small = make_thumbnail(image_bytes("PNG", size=(64, 48)))
    assert (small.width, small.height) == (64, 48)
    thumb = make_thumbnail(image_bytes("JPEG", size=(832, 1216)))
    assert (thumb.width, thumb.height) == (350, 512)


def test_transparency_is_kept_and_the_input_metadata_is_not():
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a secret prompt, Steps: 30")
    out = io.BytesIO()
    Image.new("RGBA", (100, 100), (10, 20, 30, 0)).save(out, "PNG", pnginfo=info)
    image = _decoded(make_thumbnail(out.getvalue()))
    assert image.mode == "RGBA" and image.getpixel((5, 5))[3] == 0
    assert "parameters" not in image.info and b"secret" not in make_thumbnail(out.getvalue()).data


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 200x100, shown 100x200
    data = image_bytes("JPEG", size=(200, 100), exif=exif.tobytes())
    thumb = make_thumbnail(data)
    assert (thumb.width, thumb.height) == (100, 200)


def test_an_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, _green, blue = _decoded(make_thumbnail(out.getvalue())).convert("RGB").getpixel((20, 20))
    assert red > 200 and blue < 60


@pytest.mark.parametrize(("width", "height"), [(7000, 7000), (30000, 30000), (1, MAX_PIXELS + 1)])
def test_image_bombs_are_refused_before_decoding(width, height):
    with pytest.raises(PreviewRefused) as refused:
        make_thumbnail(_png_header_only(width, height))
    assert refused.value.reason == PreviewReason.TOO_MANY_PIXELS


@pytest.mark.parametrize("data", [
    b"definitely not an image",
    b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
    image_bytes("PNG", size=(300, 300), color=(1, 2, 3))[:120],  # truncated
    image_bytes("BMP"),  # a real image, but not a format we take
    image_bytes("TIFF"),
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # EPS: would run Ghostscript
    b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
])
def test_anything_else_is_not_an_image(data):
    with pytest.raises(PreviewRefused) as refused:
        make_thumbnail(data)
    assert refused.value.reason == PreviewReason.NOT_AN_IMAGE


def test_empty_and_oversized_inputs():
    with pytest.raises(PreviewRefused) as refused:
        make_thumbnail(b"")
    assert refused.value.reason == PreviewReason.EMPTY
    data = image_bytes("PNG", size=(64, 64))
    with pytest.raises(PreviewRefused) as refused:
        make_thumbnail(data, max_bytes=len(data) - 1)
    assert refused.value.reason == PreviewReason.TOO_LARGE


def test_the_store_keeps_thumbnails_by_sha256_atomically(tmp_path):
    store = PreviewStore(tmp_path / "data")
    sha = "ab" * 32
    assert store.get(sha) is None
    thumb = make_thumbnail(image_bytes("PNG", size=(900, 600)))
    path = store.put(sha.upper(), thumb)
    assert path == tmp_path / "data" / PREVIEWS_DIR / f"{sha}.webp"
    assert store.get(sha) == thumb
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{sha}.webp"]  # no temp file left
    assert store.delete(sha) and store.get(sha) is None and not store.delete(sha)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab" * 31, "zz" * 32, "ab" * 32 + "/x", ""])
def test_only_a_sha256_names_a_stored_preview(tmp_path, bad):
    store = PreviewStore(tmp_path / "data")
    with pytest.raises(ValueError):
        store.put(bad, make_thumbnail(image_bytes("PNG")))
    with pytest.raises(ValueError):
        store.get(bad)
    assert not (tmp_path / "data" / PREVIEWS_DIR).exists() or not list((tmp_path / "data" / PREVIEWS_DIR).iterdir())
