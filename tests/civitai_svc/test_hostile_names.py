"""File names as CivitAI really sends them: non-ASCII, RFC 5987 `filename*`, percent-encoded query values.

A UTF-8 name in the signed storage URL's `response-content-disposition` failed the whole download with a
UnicodeEncodeError (the value went through an ASCII-only header object). Such names are common on CivitAI.
"""

from __future__ import annotations

import subprocess
from urllib.parse import quote

import grpc
import httpx
import pytest
from civitai_helpers import status_of

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


# Each way CivitAI's storage can carry the name, alone: the API lists an ASCII name, the storage serves the
# file as `水彩风格.safetensors` (the storage's name wins), so the name installed is the one parsed.
@pytest.mark.parametrize(
    ("url_form", "header_form"),
    [
        ("utf8", None),  # ...&response-content-disposition=attachment%3B%20filename%3D%22%E6%B0%B4...%22
        ("rfc5987", None),  # ASCII filename plus filename*=UTF-8''%E6..., encoded again in the query
        ("rfc5987-only", None),
        ("rfc5987-once", None),  # ...filename*%3DUTF-8''%E6%B0%B4... (escapes not encoded a second time)
        (None, "rfc5987"),
        (None, "rfc5987-only"),
        (None, "utf8"),  # raw UTF-8 bytes in the header
    ],
)
async def test_each_form_of_the_storage_name_installs_the_file_under_it(stack, url_form, header_form) -> None:
    name = "水彩风格.safetensors"
    lora = stack.fake.add_lora(name="Watercolor", data=make_safetensors("lora", 20_000, seed=5),
                               filename="watercolor_v1.safetensors")
    stack.fake.name_forms(lora.file_id, url=url_form, header=header_form, name=name)
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.filename == name and stack.files() == [f"loras/{name}"]
    model = (await stack.registry.GetModel(registry_pb2.GetModelRequest(filename=name), timeout=5)).model
    assert model.sha256 == lora.sha256


@pytest.mark.parametrize(
    ("served", "installed"),
    [
        # Path parts, a leading dot and a control character: only the plain name is left.
        ("../../.hidden/水彩\x07风格.safetensors", "水彩风格.safetensors"),
        ("..\\..\\café\u200b_style.safetensors", "café_style.safetensors"),
        # The registry refuses any name containing "..": such a name used to download, then fail to register.
        ("水彩..风格 v1...safetensors", "水彩.风格 v1.safetensors"),
        ('what?<>:"|*.safetensors', "what_______.safetensors"),
    ],
)
async def test_a_hostile_storage_name_installs_sanitised_inside_the_folder(stack, served, installed) -> None:
    lora = stack.fake.add_lora(name="Hostile", data=make_safetensors("lora", 20_000, seed=6),
                               filename="hostile_v1.safetensors")
    stack.fake.name_forms(lora.file_id, url="rfc5987-only", header="rfc5987", name=served)
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.filename == installed and stack.files() == [f"loras/{installed}"]
    # Nothing was written outside loras/ (the test's whole temp folder holds both volumes).
    written = [p for p in stack.user_models.parent.rglob("*") if p.is_file() and p.suffix == ".safetensors"]
    assert written == [stack.user_models / "loras" / installed]


async def test_a_models_folder_that_is_a_file_is_named_without_the_server_path(stack) -> None:
    lora = stack.fake.add_lora(name="Watercolor", data=make_safetensors("lora", 20_000, seed=7),
                               filename="水彩风格.safetensors")
    (stack.user_models / "loras").rmdir()  # made empty at start-up
    (stack.user_models / "loras").write_bytes(b"not a folder")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url), timeout=10)
    code, info = status_of(caught.value)
    assert code == grpc.StatusCode.INTERNAL and info.reason == "VOLUME_WRITE_FAILED", caught.value.details()
    assert caught.value.details() == "cannot write loras/ on the models volume: File exists"
    assert str(stack.user_models) not in str(info)


@pytest.fixture
def read_only_loras(stack):
    """loras/ on a read-only filesystem (a volume mounted :ro), when this test may mount one."""
    folder = stack.user_models / "loras"
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only filesystem here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


async def test_a_read_only_volume_fails_the_job_naming_the_file_not_the_part(stack, read_only_loras) -> None:
    name = "水彩风格.safetensors"
    lora = stack.fake.add_lora(name="Watercolor", data=make_safetensors("lora", 20_000, seed=8), filename=name)
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_FAILED
    assert job.error.message == f"cannot write loras/{name} on the models volume: Read-only file system"
    assert ".part" not in str(job.error) and str(stack.user_models) not in str(job.error)
