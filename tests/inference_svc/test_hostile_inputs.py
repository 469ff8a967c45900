"""Image bytes a hostile client sends: the error names what is wrong, never a Python object or a path."""

from __future__ import annotations

import io

import grpc
import pytest
from inference_registry import start_registry
from PIL import Image

from inference_svc.app import create_server
from inference_svc.config import InferenceSettings
from inference_svc.errors import InvalidRequest
from inference_svc.images import decode_image
from modelmanager.v1 import inference_pb2, inference_pb2_grpc
from service_kit import errors


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


@pytest.fixture
async def inference(volumes, channel_factory, tmp_path):
    """The real inference service with a real registry, on 127.0.0.1 (no checkpoint needed to refuse an image)."""
    user_models, models = volumes
    registry = await start_registry(user_models, models)
    server = await create_server(InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        config_cache_dir=tmp_path / "configs",
    ))
    await server.start()
    yield inference_pb2_grpc.InferenceServiceStub(channel_factory(server.address))
    await server.stop(0)
    await registry.stop(0)


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"GIF89a" + b"\0" * 20])
async def test_an_undecodable_upscale_image_is_reported_cleanly_over_grpc(inference, data: bytes) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in inference.Upscale(inference_pb2.UpscaleRequest(image=data), timeout=30):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert details.startswith("image cannot be decoded"), details
    for leak in ("BytesIO", "object at", " at 0x", "/tmp", "/"):
        assert leak not in details, details
    info = errors.error_info_of(caught.value)
    assert info is not None and info.reason == "INVALID_IMAGE"


async def test_a_non_image_says_which_formats_are_accepted_over_grpc(inference) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in inference.Upscale(inference_pb2.UpscaleRequest(image=b"not an image"), timeout=30):
            pass
    assert caught.value.details() == "image cannot be decoded: not a PNG, JPEG or WebP image"


def test_checkpoint_errors_name_the_file_not_the_server_path(tiny, tmp_path) -> None:
    from inference_svc.checkpoint_loader import CheckpointLoader
    from inference_svc.device import resolve_device
    from inference_svc.errors import CheckpointLoadFailed, CheckpointNotFound

    loader = CheckpointLoader(resolve_device("cpu"), config_cache_dir=tmp_path / "configs")
    folder = tmp_path / "models" / "illustrious-xl"
    folder.mkdir(parents=True)
    for target, error in ((folder / "missing.safetensors", CheckpointNotFound), (folder, CheckpointLoadFailed),
                          (tiny.corrupt, CheckpointLoadFailed)):
        with pytest.raises(error) as caught:
            loader.load(target)
        shown = f"{caught.value} {caught.value.metadata}"
        assert str(tmp_path) not in shown and str(tiny.corrupt.parent) not in shown, shown
