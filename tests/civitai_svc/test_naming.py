"""File naming: sanitising, Content-Disposition and signed-URL names, HTML sniffing, no free name."""

from __future__ import annotations

import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from civitai_svc.downloader import filename_from_headers, filename_from_url, looks_like_page
from civitai_svc.installer import sanitize_filename
from modelmanager.v1 import civitai_pb2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("dreamForgeXl_v20.safetensors", "dreamForgeXl_v20.safetensors"),
        ("../../etc/passwd", "passwd.safetensors"),
        ("..\\..\\win.safetensors", "win.safetensors"),
        (".hidden.safetensors", "hidden.safetensors"),
        ("a\x00b\x1fc\x7f.safetensors", "abc.safetensors"),
        ('what?<>:"|*.safetensors', "what_______.safetensors"),
        ("   spaced   out  .SafeTensors", "spaced out .safetensors"),
        ("Ünïcödé 模型.safetensors", "Ünïcödé 模型.safetensors"),
        ("model.zip", "model.zip.safetensors"),
        ("model.ckpt", "model.ckpt"),
        ("", "fallback.safetensors"),
        ("..", "fallback.safetensors"),
        ("/", "fallback.safetensors"),
    ],
)
def test_sanitize_filename(raw, expected):
    assert sanitize_filename(raw, "fallback.safetensors") == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_sanitized_names_are_always_safe(raw):
    name = sanitize_filename(raw, "fallback.safetensors")
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert name not in (".", "..") and ".." != name.split("/")[0]
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
    assert len(name.encode()) <= 255
    assert name.lower().endswith((".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf"))


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="dreamForgeXl_v20.safetensors"', "dreamForgeXl_v20.safetensors"),
        ("attachment; filename=plain.safetensors", "plain.safetensors"),
        ("attachment; filename*=UTF-8''mod%C3%A8le%20x.safetensors", "modèle x.safetensors"),
        ("inline", ""),
    ],
)
def test_content_disposition(header, name):
    assert filename_from_headers(httpx.Headers({"Content-Disposition": header})) == name


def test_names_carried_by_signed_urls():
    r2 = ("https://x.r2.cloudflarestorage.com/model/1/a.safetensors?X-Amz-Expires=86400"
          "&response-content-disposition=attachment%3B%20filename%3D%22ponyXl_v6.safetensors%22&X-Amz-Signature=f")
    b2 = ("https://b2.civitai.com/file/civitai-modelfiles/model/1/a.safetensors?Authorization=3_x"
          "&b2ContentDisposition=attachment%3B+filename%3D%22my+model.safetensors%22")
    assert filename_from_url(r2) == "ponyXl_v6.safetensors"
    assert filename_from_url(b2) == "my model.safetensors"
    assert filename_from_url("https://example.com/file") == ""


@pytest.mark.parametrize(
    ("first", "ctype", "page"),
    [
        (b"<!DOCTYPE html><html>", "application/octet-stream", True),
        (b"\n  <html lang=en>", "", True),
        (b'{"error":"Unauthorized"}', "application/octet-stream", True),
        (b"anything", "text/html; charset=utf-8", True),
        (b"anything", "application/json", True),
        (b"\x10\x02\x00\x00\x00\x00\x00\x00{\"__metadata__\"", "application/octet-stream", False),
        (b"{\x00\x00\x00\x00\x00\x00\x00{\"a\"", "binary/octet-stream", False),
    ],
)
def test_pages_are_told_from_model_files(first, ctype, page):
    assert (looks_like_page(first, ctype) is not None) is page


async def test_a_name_taken_in_every_form_fails_the_job_as_no_free_filename(stack):
    lora = stack.fake.add_lora(filename="taken.safetensors")
    loras = stack.user_models / "loras"
    loras.mkdir(exist_ok=True)
    # Every name the installer tries: the file's own, then -{versionId}, then -{versionId}-2 ... -9999.
    stem = f"taken-{lora.version_id}"
    taken = {"taken.safetensors", f"{stem}.safetensors", *(f"{stem}-{i}.safetensors" for i in range(2, 10_000))}
    for name in taken:
        (loras / name).write_bytes(b"someone else's")
    job = await stack.download(lora.url)
    assert job.state == civitai_pb2.DOWNLOAD_STATE_FAILED
    [detail] = [d for d in job.error.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    info = error_details_pb2.ErrorInfo()
    detail.Unpack(info)
    assert (job.error.code, info.reason, info.domain) == (code_pb2.ALREADY_EXISTS, "NO_FREE_FILENAME",
                                                           "civitai.modelmanager")
    assert "taken.safetensors" in job.error.message and str(stack.user_models) not in job.error.message
    assert set(stack.files()) == {f"loras/{name}" for name in taken}  # nothing replaced, no .part left
    assert all((loras / name).read_bytes() == b"someone else's" for name in ("taken.safetensors", f"{stem}.safetensors"))
    assert stack.fake.bytes_served(lora.file_id) == 0 and await stack.models() == []
