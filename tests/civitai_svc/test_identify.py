"""IdentifyFiles and download previews through the wire: fake CivitAI -> civitai_svc -> a real registry."""

from __future__ import annotations

import hashlib
import io
import json

import grpc
import pytest
from civitai_helpers import status_of
from PIL import Image

from devtools.fake_civitai import make_safetensors
from modelmanager.v1 import civitai_pb2, model_pb2, registry_pb2
from service_kit import thumbnails

S = civitai_pb2


def sha(n: int | str) -> str:
    return hashlib.sha256(f"local file {n}".encode()).hexdigest()


async def identify(stack, hashes, **kwargs) -> list[S.IdentifiedFile]:
    reply = await stack.civitai.IdentifyFiles(S.IdentifyFilesRequest(sha256s=hashes, **kwargs), timeout=60)
    return list(reply.files)


def image_requests(stack) -> list:
    return [r for r in stack.fake.requests if r.path.startswith("/xG1nkqKTMzGDvpLrqFT7WA/")]


def assert_thumbnail(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=("WEBP",))
    image.load()
    assert image.format == "WEBP" and max(image.size) <= thumbnails.THUMBNAIL_SIDE
    return image


async def test_250_hashes_take_3_calls_one_answer_per_distinct_hash_in_request_order(stack):
    known = {sha(i): stack.fake.register_hash(sha(i), name=f"Style {i}", trained_words=[f"trig{i}"],
                                              tags=("style", f"t{i}"), previews=())
             for i in range(0, 250, 2)}
    hashes = [sha(i) for i in range(250)]
    asked = [h.upper() if i % 3 == 0 else h for i, h in enumerate(hashes)] + [hashes[7], hashes[0].upper()]
    stack.fake.reset_counters()

    files = await identify(stack, asked)

    assert [f.sha256 for f in files] == hashes  # lowercase, each once, in request order
    assert [f.found for f in files] == [h in known for h in hashes]
    assert stack.fake.calls("by-hash-bulk") == 3  # 100 + 100 + 50
    sent = [json.loads(r.body) for r in stack.fake.requests if r.method == "POST"]
    assert [len(batch) for batch in sent] == [100, 100, 50]
    assert [h.lower() for batch in sent for h in batch] == hashes  # every distinct hash asked once
    first = files[0].info
    fake = known[hashes[0]]
    assert (first.model_id, first.version_id, first.file.id) == (fake.model_id, fake.version_id, fake.file_id)
    assert first.name == "Style 0" and list(first.trigger_words) == ["trig0"] and first.base_model == "Illustrious"
    assert first.file.sha256 == hashes[0] and first.model_type == model_pb2.MODEL_TYPE_LORA and first.supported
    assert list(first.tags) == ["style", "t0"]  # from the model, fetched in bulk too
    assert first.civitai_url.endswith(f"/models/{fake.model_id}?modelVersionId={fake.version_id}")
    assert stack.fake.calls("models-ids") == 2  # 125 models, 100 a call
    assert files[1].info == S.CivitaiModelInfo() and not files[1].preview


async def test_unknown_hashes_are_found_false(stack):
    files = await identify(stack, [sha("a"), sha("b")], with_previews=True)
    assert [(f.sha256, f.found, f.preview) for f in files] == [(sha("a"), False, b""), (sha("b"), False, b"")]
    assert stack.fake.calls("by-hash-bulk") == 1 and stack.fake.calls("image") == 0


async def test_no_hashes_make_no_call(stack):
    assert await identify(stack, []) == []
    assert stack.fake.calls("by-hash-bulk") == 0


async def test_429_with_retry_after_is_retried_until_civitai_answers(stack):
    known = stack.fake.register_hash(sha(1), name="Patient")
    stack.fake.rate_limit("by-hash-bulk", times=2, retry_after="0.01")
    files = await identify(stack, [sha(1), sha(2)])
    assert [f.found for f in files] == [True, False] and files[0].info.version_id == known.version_id
    assert stack.fake.calls("by-hash-bulk") == 3


async def test_429_that_never_ends_is_civitai_unavailable_with_its_retry_after(stack):
    stack.fake.rate_limit("by-hash-bulk", times=100, retry_after="30")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await identify(stack, [sha(1)])
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.UNAVAILABLE and info.reason == "CIVITAI_UNAVAILABLE"
    assert info.metadata["retry_after_seconds"] == "30.0" and info.metadata["http_status"] == "429"
    assert stack.fake.calls("by-hash-bulk") == 1 + stack.settings.retry_attempts


@pytest.mark.parametrize("bad", ["abc", sha(1)[:10], sha(1)[:-1] + "g", sha(1) + "0", ""])
async def test_a_bad_hash_is_invalid_sha256_and_nothing_is_asked(stack, bad):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await identify(stack, [sha(1), bad])
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_SHA256"
    assert info.metadata["index"] == "1"
    assert stack.fake.calls("by-hash-bulk") == 0


async def test_over_1000_hashes_is_too_many_items(stack):
    assert len(await identify(stack, [sha(i) for i in range(1000)])) == 1000
    stack.fake.reset_counters()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await identify(stack, [sha(i) for i in range(1001)])
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "TOO_MANY_ITEMS"
    assert stack.fake.calls("by-hash-bulk") == 0


async def test_previews_are_bounded_webp_thumbnails_with_their_nsfw_level(stack):
    lora = stack.fake.add_lora(name="Two Previews", data=make_safetensors("lora", 3000, seed=3), previews=(4, 1))
    known = stack.fake.register_hash(sha(5), name="Known", previews=(2,))
    bare = stack.fake.register_hash(sha(6), name="No Images", previews=())

    plain = await identify(stack, [lora.sha256, sha(5)])
    assert [f.preview for f in plain] == [b"", b""] and stack.fake.calls("image") == 0  # only when asked

    files = await identify(stack, [lora.sha256, sha(5), sha(6), sha(7)], with_previews=True)
    assert [f.found for f in files] == [True, True, True, False]
    first, second, no_images, unknown = files
    for entry, url, level in ((first, lora.image_urls[0], 4), (second, known.image_urls[0], 2)):
        assert entry.preview_content_type == "image/webp"
        image = assert_thumbnail(entry.preview)
        assert image.size == (64, 96)  # never enlarged
        assert entry.preview_image.url == url and entry.preview_image.nsfw_level == level
        assert not entry.preview.startswith(b"\xff\xd8")  # re-encoded, not the JPEG passed on
    assert not no_images.preview and not no_images.preview_content_type and bare.image_urls == []
    assert not unknown.preview
    fetched = image_requests(stack)
    assert len(fetched) == 2  # the first image of each version, once
    assert all("authorization" not in r.headers for r in fetched)  # never the token, even on CivitAI's host


@pytest.mark.parametrize("kind", ["huge", "bomb", "invalid", "truncated"])
async def test_a_bad_image_gives_no_preview_but_the_file_is_identified(stack, kind):
    lora = stack.fake.add_lora(name=f"Bad {kind}", data=make_safetensors("lora", 2000, seed=4))
    good = stack.fake.register_hash(sha(8), name="Fine")
    stack.fake.bad_image(lora.image_urls[0], kind)
    files = await identify(stack, [lora.sha256, sha(8)], with_previews=True)
    assert [f.found for f in files] == [True, True]
    assert files[0].info.version_id == lora.version_id
    assert files[0].preview == b"" and files[0].preview_content_type == "" and not files[0].HasField("preview_image")
    assert_thumbnail(files[1].preview)
    assert files[1].preview_image.url == good.image_urls[0]


async def test_an_image_url_on_another_host_is_never_fetched(stack):
    lora = stack.fake.add_lora(name="Elsewhere", data=make_safetensors("lora", 2000, seed=5))
    image = lora.json["modelVersions"][0]["images"][0]
    # The same fake under another host name: a fetch would reach it and be counted.
    image["url"] = image["url"].replace("://127.0.0.1:", "://localhost:")
    files = await identify(stack, [lora.sha256], with_previews=True)
    assert files[0].found and files[0].info.images[0].url.startswith("http://localhost:")
    assert files[0].preview == b""
    assert stack.fake.calls("image") == 0


def registry_has_previews() -> bool:
    """Whether the registry implements Get/SetPreview yet (the generated base's stub answers INTERNAL)."""
    from metadata_svc.servicer import RegistryServicer

    return "SetPreview" in vars(RegistryServicer) and "GetPreview" in vars(RegistryServicer)


async def test_a_download_keeps_the_first_image_as_the_models_preview(stack):
    lora = stack.fake.add_lora(name="With Preview", data=make_safetensors("lora", 4000, seed=6), previews=(2, 1))
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error  # with or without SetPreview in the registry
    assert len(image_requests(stack)) == 1
    if not registry_has_previews():
        pytest.skip("the registry does not implement SetPreview yet")
    stored = await stack.registry.GetPreview(registry_pb2.GetPreviewRequest(filename=job.filename), timeout=10)
    assert_thumbnail(stored.image)
    assert stored.preview.nsfw_level == 2 and stored.preview.source == "civitai"
    assert job.model.preview.sha256 == stored.preview.sha256 == hashlib.sha256(stored.image).hexdigest()


async def test_a_download_whose_image_is_refused_succeeds_without_a_preview(stack):
    lora = stack.fake.add_lora(name="Bad Preview", data=make_safetensors("lora", 4000, seed=7))
    stack.fake.bad_image(lora.image_urls[0], "bomb")
    job = await stack.download(lora.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert not job.model.HasField("preview")
    if registry_has_previews():
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stack.registry.GetPreview(registry_pb2.GetPreviewRequest(filename=job.filename), timeout=10)
        assert status_of(exc.value)[1].reason == "PREVIEW_NOT_FOUND"


async def test_previews_past_the_reply_budget_are_left_out():
    from civitai_svc.api_client import CivitaiApi
    from civitai_svc.identify import Identifier
    from civitai_svc.previews import PreviewFetcher
    from devtools.fake_civitai import FakeCivitai

    async with FakeCivitai() as fake:
        for i in range(3):
            fake.register_hash(sha(i), name=f"Budget {i}")
        api = CivitaiApi(fake.base_url)
        try:
            full = await Identifier(api, PreviewFetcher(api)).identify([sha(i) for i in range(3)], with_previews=True)
            sizes = [len(f.preview) for f in full]
            assert all(sizes)
            budget = sizes[0] + sizes[1]
            files = await Identifier(api, PreviewFetcher(api), preview_budget_bytes=budget).identify(
                [sha(i) for i in range(3)], with_previews=True)
        finally:
            await api.aclose()
    assert [len(f.preview) for f in files] == [sizes[0], sizes[1], 0]  # in request order, until it is spent
    assert [f.found for f in files] == [True, True, True]
