"""The fake CivitAI's bulk endpoints, previews and hash registry, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest
from PIL import Image, UnidentifiedImageError

from devtools.fake_civitai import FakeCivitai, make_safetensors


@pytest.fixture
def fake():
    with FakeCivitai() as f:
        yield f


@pytest.fixture
def http(fake):
    with httpx.Client(base_url=fake.base_url) as client:
        yield client


def bulk(http: httpx.Client, hashes) -> httpx.Response:
    return http.post("/api/v1/model-versions/by-hash", json=hashes)


def test_bulk_by_hash_answers_the_versions_it_knows_and_drops_the_rest(fake, http):
    a = fake.add_lora(name="A", data=make_safetensors("lora", 2000, seed=1))
    b = fake.add_checkpoint(name="B", data=make_safetensors("checkpoint", 3000, seed=2))
    unknown = hashlib.sha256(b"nobody has this").hexdigest()
    r = bulk(http, [a.sha256.upper(), unknown, b.sha256, a.sha256])  # any case; a repeat is answered once
    assert r.status_code == 200
    versions = r.json()
    assert [v["id"] for v in versions] == [a.version_id, b.version_id]
    first = versions[0]  # shaped like GET /api/v1/model-versions/{id}
    assert first["modelId"] == a.model_id and first["model"]["type"] == "LORA"
    assert first["air"] == f"urn:air:sdxl:lora:civitai:{a.model_id}@{a.version_id}"
    assert [f["primary"] for f in first["files"]] == [True, False]
    assert first["files"][0]["hashes"]["SHA256"] == a.sha256.upper()
    assert bulk(http, [unknown]).json() == []
    assert fake.calls("by-hash-bulk") == 2
    assert fake.requests[-1].method == "POST" and unknown.encode() in fake.requests[-1].body


@pytest.mark.parametrize("body", [
    [hashlib.sha256(str(i).encode()).hexdigest() for i in range(101)],  # over 100
    ["D339F720DE"],  # an AutoV2: the bulk endpoint takes full SHA256s only
    [42],
    {"hashes": []},
])
def test_bulk_by_hash_refuses_what_civitai_refuses(http, body):
    r = bulk(http, body)
    assert r.status_code == 400
    assert r.json()["error"].startswith("Request must include an array of SHA256 Hashes.")


def test_bulk_by_hash_takes_exactly_100(fake, http):
    lora = fake.add_lora()
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(99)] + [lora.sha256]
    r = bulk(http, hashes)
    assert r.status_code == 200 and [v["id"] for v in r.json()] == [lora.version_id]


def test_bulk_by_hash_not_json_is_400(http):
    r = http.post("/api/v1/model-versions/by-hash", content=b"{not json",
                  headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_bulk_by_hash_rate_limited_n_times_then_answers(fake, http):
    lora = fake.add_lora()
    fake.rate_limit("by-hash-bulk", times=2, retry_after="3")
    first, second, third = (bulk(http, [lora.sha256]) for _ in range(3))
    assert first.status_code == second.status_code == 429
    assert first.headers["retry-after"] == "3"
    assert third.status_code == 200 and third.json()[0]["id"] == lora.version_id
    assert fake.calls("by-hash-bulk") == 3
    assert fake.calls("by-hash") == 0  # the single-hash route is counted apart
    fake.reset_counters()
    assert fake.calls("by-hash-bulk") == 0


def test_models_by_ids_answers_those_models_as_list_items(fake, http):
    loras = [fake.add_lora(name=f"L{i}") for i in range(3)]
    hidden = fake.add_lora(name="Hidden", nsfw=True)
    ids = f"{loras[0].model_id},{loras[2].model_id},{hidden.model_id},999999"
    r = http.get("/api/v1/models", params={"ids": ids})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [m["id"] for m in items] == [loras[0].model_id, loras[2].model_id]  # nsfw=false by default, as CivitAI
    assert items[0]["modelVersions"][0]["trainedWords"] == ["wtrclr style"]
    with_nsfw = http.get("/api/v1/models", params={"ids": ids, "nsfw": "true"}).json()["items"]
    assert hidden.model_id in [m["id"] for m in with_nsfw]
    assert fake.calls("models-ids") == 2 and fake.calls("search") == 0


@pytest.mark.parametrize("ids", [",".join(str(i) for i in range(1, 102)), "1,x", "0"])
def test_models_by_ids_refuses_bad_lists(fake, http, ids):
    r = http.get("/api/v1/models", params={"ids": ids})
    assert r.status_code == 400 and isinstance(r.json()["error"], dict)  # a Zod error object, as list 400s are


def test_models_by_ids_can_be_failed(fake, http):
    lora = fake.add_lora()
    fake.unavailable("models-ids", retry_after="2")
    r = http.get("/api/v1/models", params={"ids": str(lora.model_id)})
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert http.get("/api/v1/models", params={"ids": str(lora.model_id)}).status_code == 200


def test_previews_are_real_images_on_the_fakes_host(fake, http):
    lora = fake.add_lora(previews=(1, 4))
    model = http.get(f"/api/v1/models/{lora.model_id}").json()
    images = model["modelVersions"][0]["images"]
    assert [i["nsfwLevel"] for i in images] == [1, 4]
    assert model["modelVersions"][0]["nsfwLevel"] == 5  # the levels of its images, as a bitmask
    assert [i["url"] for i in images] == lora.image_urls
    decoded = []
    for image in images:
        assert image["url"].startswith(fake.base_url + "/xG1nkqKTMzGDvpLrqFT7WA/")
        r = http.get(image["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(r.content))
        picture.load()
        assert picture.size == (image["width"], image["height"])
        decoded.append(picture.tobytes())
    assert decoded[0] != decoded[1]
    resized = http.get(images[0]["url"].replace("/original=true/", "/width=450/"))  # CDN resize params
    assert resized.status_code == 200
    detail = http.get(f"/api/v1/model-versions/{lora.version_id}").json()["images"][0]
    assert detail["metadata"]["size"] == len(http.get(images[0]["url"]).content)
    assert http.get(images[0]["url"].replace(images[0]["url"].split("/")[-3], "0000")).status_code == 404
    assert fake.calls("image") == 5


def test_a_version_may_have_no_previews(fake, http):
    lora = fake.add_lora(previews=())
    assert "images" not in http.get(f"/api/v1/models/{lora.model_id}").json()["modelVersions"][0]  # removeEmpty
    assert http.get(f"/api/v1/model-versions/{lora.version_id}").json()["images"] == []


def test_bad_images(fake, http):
    huge, bomb, invalid, cut = fake.add_lora(previews=(1, 1, 1, 1)).image_urls
    fake.bad_image(huge, "huge", size_bytes=3 << 20)
    fake.bad_image(bomb, "bomb")
    fake.bad_image(invalid, "invalid")
    fake.bad_image(cut, "truncated")
    with http.stream("GET", huge) as r:
        assert int(r.headers["content-length"]) == 3 << 20
        assert next(r.iter_bytes()).startswith(b"\xff\xd8")  # looks like a JPEG; the client stops reading
    assert len(http.get(huge).content) == 3 << 20
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(http.get(bomb).content))
    r = http.get(invalid)
    assert r.headers["content-type"] == "image/jpeg"
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(r.content))
    with pytest.raises(OSError):
        Image.open(io.BytesIO(http.get(cut).content)).load()
    fake.bad_image(invalid, None)
    Image.open(io.BytesIO(http.get(invalid).content)).load()
    with pytest.raises(ValueError):
        fake.bad_image(huge, "gigantic")


def test_register_hash_makes_the_fake_know_a_local_file(fake, http, tmp_path):
    local = tmp_path / "mine.safetensors"
    local.write_bytes(make_safetensors("lora", 5000, seed=9))
    sha = hashlib.sha256(local.read_bytes()).hexdigest()
    known = fake.register_hash(sha, size=local.stat().st_size, name="My Style", trained_words=["mystyle"])
    single = http.get(f"/api/v1/model-versions/by-hash/{sha[:10].upper()}").json()  # AutoV2, on the single route
    assert single["id"] == known.version_id and single["trainedWords"] == ["mystyle"]
    assert single["files"][0]["sizeKB"] == round(local.stat().st_size / 1024, 2)
    assert [v["id"] for v in bulk(http, [sha]).json()] == [known.version_id]
    # Known by hash only: there are no bytes to download.
    assert http.get(f"/api/download/models/{known.version_id}").status_code == 404
    newer = fake.register_hash(hashlib.sha256(b"v2").hexdigest(), model_id=known.model_id, version_name="v2.0")
    model = http.get(f"/api/v1/models/{known.model_id}").json()
    assert [v["id"] for v in model["modelVersions"]] == [newer.version_id, known.version_id]
    with pytest.raises(ValueError):
        fake.register_hash("D339F720DE")


def test_a_duplicate_hash_answers_the_first_published_version(fake, http):
    sha = hashlib.sha256(b"shared").hexdigest()
    later = fake.register_hash(sha, name="Reupload", published_at="2025-06-01T00:00:00.000Z")
    first = fake.register_hash(sha, name="Original", published_at="2024-01-01T00:00:00.000Z")
    assert http.get(f"/api/v1/model-versions/by-hash/{sha}").json()["id"] == first.version_id
    assert [v["id"] for v in bulk(http, [sha]).json()] == [first.version_id]
    assert later.version_id != first.version_id
