"""Image bytes a hostile client sends: the error names what is wrong, never a Python object or a path."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from inference_svc.errors import InvalidRequest
from inference_svc.images import decode_image


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, _png(32, 32)[:60],
                                  b"GIF89a" + b"\0" * 20])
def test_undecodable_images_say_why_without_object_reprs(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_image(data)
    message = str(caught.value)
    assert message.startswith("image cannot be decoded")
    for leak in ("BytesIO", " at 0x", "object at", "/"):
        assert leak not in message, message
