"""File names as CivitAI really sends them: non-ASCII, RFC 5987 `filename*`, percent-encoded query values.

A UTF-8 name in the signed storage URL's `response-content-disposition` failed the whole download with a
UnicodeEncodeError (the value went through an ASCII-only header object). Such names are common on CivitAI.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from civitai_svc.downloader import disposition_filename, filename_from_headers, filename_from_url
from devtools.fake_civitai import content_disposition, make_safetensors
from modelmanager.v1 import civitai_pb2 as S
from modelmanager.v1 import registry_pb2

NAMES = ["水彩风格.safetensors", "café_style.safetensors", "Ünïcödé 模型 v2.safetensors"]


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ('attachment; filename="水彩风格.safetensors"', "水彩风格.safetensors"),
        ("attachment; filename=café_style.safetensors", "café_style.safetensors"),
        ("attachment; filename*=UTF-8''%E6%B0%B4%E5%BD%A9%E9%A3%8E%E6%A0%BC.safetensors", "水彩风格.safetensors"),
        ("attachment; filename*=utf-8'en'caf%C3%A9%20style.safetensors", "café style.safetensors"),
        # RFC 6266: filename* wins over the ASCII fallback, whichever comes first.
        ("attachment; filename=\"caf_.safetensors\"; filename*=UTF-8''caf%C3%A9.safetensors", "café.safetensors"),
        ("attachment; filename*=UTF-8''caf%C3%A9.safetensors; filename=\"caf_.safetensors\"", "café.safetensors"),
        ("attachment; filename*=ISO-8859-1''caf%E9.safetensors", "café.safetensors"),
        # A broken filename* falls back to filename; percent-escapes in a plain filename are decoded.
        ("attachment; filename*=UTF-8''%FF%FE.safetensors; filename=ok.safetensors", "ok.safetensors"),
        ("attachment; filename*=no-such-charset''x.safetensors; filename=ok.safetensors", "ok.safetensors"),
        ('attachment; filename="%E6%B0%B4.safetensors"', "水.safetensors"),
        ('attachment; filename="a\\"b;c.safetensors"', 'a"b;c.safetensors'),
        ("inline", ""),
        ("", ""),
    ],
)
def test_content_disposition_forms(value: str, name: str) -> None:
    assert disposition_filename(value) == name
    # The same value as the signed storage URL's query parameter (percent-encoded as UTF-8).
    assert filename_from_url(f"https://storage.example/m/1?response-content-disposition={quote(value)}") == name


@pytest.mark.parametrize("name", NAMES)
def test_the_storage_header_and_the_signed_url_give_back_the_name(name: str) -> None:
    raw_header = content_disposition(name).encode("latin-1")  # what a server can put on the wire
    assert filename_from_headers(httpx.Headers([(b"content-disposition", raw_header)])) == name
    # Raw UTF-8 bytes in the header (servers do send them): httpx decodes them as UTF-8.
    utf8 = f'attachment; filename="{name}"'.encode()
    assert filename_from_headers(httpx.Headers([(b"content-disposition", utf8)])) == name
    plain = quote(f'attachment; filename="{name}"')
    assert filename_from_url(f"https://storage.example/m/1?response-content-disposition={plain}") == name
    assert filename_from_url(f"https://storage.example/m/1?b2ContentDisposition={quote(plain)}") == name


def test_a_hostile_name_is_still_sanitised() -> None:
    value = "attachment; filename*=UTF-8''..%2F..%2F%E6%B0%B4%00.safetensors"
    url = f"https://storage.example/m/1?response-content-disposition={quote(value)}"
    from civitai_svc.installer import sanitize_filename

    assert sanitize_filename(filename_from_url(url), "fallback.safetensors") == "水.safetensors"


@pytest.mark.parametrize("name", NAMES[:2])
async def test_a_non_ascii_file_downloads_and_registers_under_its_name(stack, name: str) -> None:
    lora = stack.fake.add_lora(name="Watercolor", data=make_safetensors("lora", 50_000, seed=3), filename=name)
    started = await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    job = await stack.wait(started.job.id)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.filename == name
    assert stack.files() == [f"loras/{name}"]
    model = (await stack.registry.GetModel(registry_pb2.GetModelRequest(filename=name), timeout=5)).model
    assert model.filename == name and model.sha256 == lora.sha256
