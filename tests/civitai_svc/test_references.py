"""Reference parsing: a table of real-world forms, then properties over generated ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civitai_svc.errors import InvalidReference
from civitai_svc.references import MAX_ID, FileFilter, Kind, parse_reference

SHA = "D339F720DE1FD92A672DF9EF19A8CDBDA6171CBF33FCD35AD95C46F8AEBAF628"

# (input, kind, model_id, version_id, file_id, hash, host)
TABLE = [
    ("https://civitai.com/models/1234567", Kind.MODEL, 1234567, 0, 0, "", "civitai.com"),
    ("https://civitai.com/models/1234567/soft-watercolor-style-illustrious", Kind.MODEL, 1234567, 0, 0, "", "civitai.com"),
    ("https://civitai.com/models/1234567/soft-watercolor?modelVersionId=2345678", Kind.VERSION, 1234567, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/models/1234567?modelVersionId=2345678", Kind.VERSION, 1234567, 2345678, 0, "", "civitai.com"),
    ("https://www.civitai.com/models/827184/wai-illustrious-sdxl?modelVersionId=2514310&utm_source=discord#details",
     Kind.VERSION, 827184, 2514310, 0, "", "civitai.com"),
    ("  https://civitai.com/models/1234567/  ", Kind.MODEL, 1234567, 0, 0, "", "civitai.com"),
    ("civitai.com/models/1234567", Kind.MODEL, 1234567, 0, 0, "", "civitai.com"),
    ("http://civitai.red/models/1234567?modelVersionId=2345678", Kind.VERSION, 1234567, 2345678, 0, "", "civitai.red"),
    ("https://www.civitai.red/models/5", Kind.MODEL, 5, 0, 0, "", "civitai.red"),
    ("https://civitai.green/models/5/x", Kind.MODEL, 5, 0, 0, "", "civitai.green"),
    ("HTTPS://CIVITAI.COM/models/5", Kind.MODEL, 5, 0, 0, "", "civitai.com"),
    ("https://civitai.com/model-versions/2345678", Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/model-versions/2345678/", Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/models/1234567/model-versions/2345678/edit", Kind.VERSION, 1234567, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/models/license/2345678", Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/api/download/models/2345678", Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/api/download/models/2345678?type=Model&format=SafeTensor&size=full&fp=fp32",
     Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),  # with the FILTERS below
    ("https://civitai.com/api/download/models/2345678?type=Training%20Data", Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/api/download/models/2514310?fileId=2402203", Kind.VERSION, 0, 2514310, 2402203, "", "civitai.com"),
    ("https://civitai.red/api/download/models/2514310?type=Model&fileId=2402203&format=SafeTensor",
     Kind.VERSION, 0, 2514310, 2402203, "", "civitai.red"),
    ("https://civitai.com/api/v1/models/1234567", Kind.MODEL, 1234567, 0, 0, "", "civitai.com"),
    ("https://civitai.com/api/v1/model-versions/2345678", Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),
    ("https://civitai.com/api/v1/model-versions/mini/2345678", Kind.VERSION, 0, 2345678, 0, "", "civitai.com"),
    (f"https://civitai.com/api/v1/model-versions/by-hash/{SHA.lower()}", Kind.HASH, 0, 0, 0, SHA, "civitai.com"),
    ("https://civitai.com/api/v1/model-versions/by-hash/D339F720DE", Kind.HASH, 0, 0, 0, "D339F720DE", "civitai.com"),
    ("1234567", Kind.MODEL, 1234567, 0, 0, "", ""),
    (" 42 ", Kind.MODEL, 42, 0, 0, "", ""),
    ("v:2345678", Kind.VERSION, 0, 2345678, 0, "", ""),
    ("V:2345678", Kind.VERSION, 0, 2345678, 0, "", ""),
    (SHA.lower(), Kind.HASH, 0, 0, 0, SHA, ""),
    (f"sha256:{SHA}", Kind.HASH, 0, 0, 0, SHA, ""),
    ("hash:d339f720de", Kind.HASH, 0, 0, 0, "D339F720DE", ""),
    ("urn:air:sdxl:lora:civitai:1234567@2345678", Kind.VERSION, 1234567, 2345678, 0, "", ""),
    ("urn:air:sdxl:checkpoint:civitai:827184@2514310+2402203", Kind.VERSION, 827184, 2514310, 2402203, "", ""),
    ("urn:air:illustrious:checkpoint:civitai:795765@900661", Kind.VERSION, 795765, 900661, 0, "", ""),
    ("urn:air:sd1:model:civitai:2421@43533.safetensors", Kind.VERSION, 2421, 43533, 0, "", ""),
    ("air:sdxl:lora:civitai:1234567@2345678", Kind.VERSION, 1234567, 2345678, 0, "", ""),
    ("sdxl:lora:civitai:1234567@2345678", Kind.VERSION, 1234567, 2345678, 0, "", ""),
    ("civitai:1234567@2345678", Kind.VERSION, 1234567, 2345678, 0, "", ""),
    ("URN:AIR:SDXL:LORA:CIVITAI:1234567", Kind.MODEL, 1234567, 0, 0, "", ""),
]
# The file a download URL asks for by type/format/size/fp (CivitAI's links to a version's other files);
# every other row carries none.
FILTERS = {
    "https://civitai.com/api/download/models/2345678?type=Model&format=SafeTensor&size=full&fp=fp32":
        FileFilter(type="Model", format="SafeTensor", size="full", fp="fp32"),
    "https://civitai.com/api/download/models/2345678?type=Training%20Data": FileFilter(type="Training Data"),
    "https://civitai.red/api/download/models/2514310?type=Model&fileId=2402203&format=SafeTensor":
        FileFilter(type="Model", format="SafeTensor"),
}


@pytest.mark.parametrize(("text", "kind", "model_id", "version_id", "file_id", "hash_", "host"), TABLE)
def test_real_world_forms(text, kind, model_id, version_id, file_id, hash_, host):
    ref = parse_reference(text)
    assert (ref.kind, ref.model_id, ref.version_id, ref.file_id, ref.hash, ref.host) == (
        kind, model_id, version_id, file_id, hash_, host
    )
    assert ref.file_filter == FILTERS.get(text, FileFilter())
    assert ref.original == text.strip()


BAD = [
    "",
    "   ",
    "https://example.com/models/1",
    "https://civitai.com.evil.org/models/1",
    "https://civitai.com/images/12345",
    "https://civitai.com/user/somebody",
    "https://civitai.com/models/abc",
    "https://civitai.com/",
    "ftp://civitai.com/models/1",
    "0",
    "2147483648",
    "v:0",
    "urn:air:sdxl:lora:huggingface:1234@5",
    "urn:air:sdxl:lora:civitai:abc",
    "hello world",
    "12 34",
    "https://civitai.com/models/1?modelVersionId=x",
    "https://civitai.com/models/1\x00",
]


@pytest.mark.parametrize("text", BAD)
def test_anything_else_is_invalid_argument_listing_the_forms(text):
    with pytest.raises(InvalidReference) as exc:
        parse_reference(text)
    assert exc.value.reason == "INVALID_REFERENCE"
    assert "urn:air" in exc.value.message and "/models/{modelId}" in exc.value.message


def test_a_pasted_token_is_lifted_out_and_never_echoed():
    ref = parse_reference("https://civitai.com/api/download/models/2345678?type=Model&token=abcdef0123456789")
    assert ref.token == "abcdef0123456789"
    assert "abcdef0123456789" not in ref.original
    with pytest.raises(InvalidReference) as exc:
        parse_reference("https://civitai.com/images/1?token=abcdef0123456789")
    assert "abcdef0123456789" not in exc.value.message


ids = st.integers(min_value=1, max_value=MAX_ID)
hosts = st.sampled_from(["civitai.com", "civitai.red", "civitai.green"])
schemes = st.sampled_from(["https://", "http://", ""])
www = st.sampled_from(["", "www."])
slug = st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}", fullmatch=True)
noise = st.lists(
    st.tuples(st.sampled_from(["utm_source", "utm_medium", "ref", "s", "fbclid"]), st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True)),
    max_size=3,
)
tail = st.sampled_from(["", "/", "#description", "/#x"])
spaces = st.sampled_from(["", " ", "\t", "  "])


def _query(pairs, extra=()):
    items = [*extra, *[f"{k}={v}" for k, v in pairs]]
    return ("?" + "&".join(items)) if items else ""


@settings(max_examples=200, deadline=None)
@given(ids, ids, hosts, schemes, www, slug, noise, tail, spaces)
def test_page_urls_round_trip(model_id, version_id, host, scheme, prefix, name, pairs, end, pad):
    with_version = f"{pad}{scheme}{prefix}{host}/models/{model_id}/{name}{_query(pairs, [f'modelVersionId={version_id}'])}{pad}"
    ref = parse_reference(with_version)
    assert (ref.kind, ref.model_id, ref.version_id, ref.host) == (Kind.VERSION, model_id, version_id, host)
    bare = f"{scheme}{prefix}{host}/models/{model_id}{end if not pairs else ''}{_query(pairs) if not end else ''}"
    ref = parse_reference(bare)
    assert (ref.kind, ref.model_id, ref.version_id) == (Kind.MODEL, model_id, 0)


@settings(max_examples=200, deadline=None)
@given(ids, st.one_of(st.just(0), ids), hosts, schemes, www, noise)
def test_download_urls_round_trip(version_id, file_id, host, scheme, prefix, pairs):
    extra = [f"fileId={file_id}"] if file_id else []
    ref = parse_reference(f"{scheme}{prefix}{host}/api/download/models/{version_id}{_query(pairs, ['type=Model', *extra])}")
    assert (ref.kind, ref.version_id, ref.file_id) == (Kind.VERSION, version_id, file_id)
    assert ref.file_filter == FileFilter(type="Model")


@settings(max_examples=200, deadline=None)
@given(ids, st.one_of(st.none(), ids), st.one_of(st.none(), ids),
       st.sampled_from(["urn:air:", "air:", "", "urn:"]), st.sampled_from(["sdxl:lora:", "sdxl:", "", "sd1:checkpoint:"]),
       st.sampled_from(["", ".safetensors"]), st.booleans())
def test_air_round_trip(model_id, version_id, file_id, prefix, middle, fmt, upper):
    text = f"{prefix}{middle}civitai:{model_id}"
    if version_id:
        text += f"@{version_id}"
    if file_id:
        text += f"+{file_id}"
    text += fmt
    ref = parse_reference(text.upper() if upper else text)
    assert ref.model_id == model_id
    assert ref.version_id == (version_id or 0)
    assert ref.file_id == (file_id or 0)
    assert ref.kind is (Kind.VERSION if version_id else Kind.MODEL)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_is_invalid_argument(text):
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        assert exc.reason == "INVALID_REFERENCE"
    else:
        assert ref.kind in (Kind.MODEL, Kind.VERSION, Kind.HASH)
        assert 0 <= ref.model_id <= MAX_ID and 0 <= ref.version_id <= MAX_ID


@settings(max_examples=100, deadline=None)
@given(ids)
def test_bare_numbers_and_short_versions(value):
    assert parse_reference(str(value)).model_id == value
    assert parse_reference(f"v:{value}").version_id == value
