"""ListModels: filters, free-text query, opaque page tokens, stable order."""

from __future__ import annotations

import grpc
import pytest
from registry_helpers import CHECKPOINT, LORA, create_request, reason, write_checkpoint, write_lora

from modelmanager.v1 import registry_pb2


@pytest.fixture
async def populated(reg):
    specs = [
        ("ink.safetensors", LORA, dict(display_name="Ink Wash", base_model="Illustrious", tags=["style", "ink"],
                                       trigger_words=["inkwash"])),
        ("detail.safetensors", LORA, dict(display_name="Detailer IL", short_name="Detail", base_model="illustrious",
                                          trigger_words=["Jeddtl02"])),
        ("pony-style.safetensors", LORA, dict(display_name="Pony Style", base_model="Pony", tags=["style"])),
        ("zeta.safetensors", LORA, dict(display_name="alpha", base_model="SDXL 1.0")),
        ("dream.safetensors", CHECKPOINT, dict(display_name="DreamForge XL", base_model="SDXL 1.0")),
        ("anime.safetensors", CHECKPOINT, dict(display_name="Anime Base", base_model="Illustrious")),
    ]
    for i, (name, kind, fields) in enumerate(specs):
        folder = reg.loras if kind == LORA else reg.checkpoints
        (write_lora if kind == LORA else write_checkpoint)(folder / name, seed=i)
        await reg.stub.CreateModel(create_request(name, kind, **fields))
    return reg


async def _names(stub, **req) -> list[str]:
    resp = await stub.ListModels(registry_pb2.ListModelsRequest(**req))
    return [m.filename for m in resp.models]


async def test_stable_order_type_then_display_name_then_filename(populated):
    assert await _names(populated.stub) == [
        "zeta.safetensors",  # "alpha"
        "detail.safetensors",
        "ink.safetensors",
        "pony-style.safetensors",
        "anime.safetensors",
        "dream.safetensors",
    ]


async def test_filters(populated):
    stub = populated.stub
    assert await _names(stub, type=CHECKPOINT) == ["anime.safetensors", "dream.safetensors"]
    assert await _names(stub, base_model="ILLUSTRIOUS", type=LORA) == ["detail.safetensors", "ink.safetensors"]
    assert await _names(stub, base_model="sdxl 1.0") == ["zeta.safetensors", "dream.safetensors"]
    # Free text over display name, short name, filename, tags and trigger words; every term must match.
    assert await _names(stub, query="style") == ["ink.safetensors", "pony-style.safetensors"]
    assert await _names(stub, query="jeddtl02") == ["detail.safetensors"]
    assert await _names(stub, query="DETAIL") == ["detail.safetensors"]
    assert await _names(stub, query="inkwash") == ["ink.safetensors"]
    assert await _names(stub, query="style pony") == ["pony-style.safetensors"]
    assert await _names(stub, query="forge", type=CHECKPOINT) == ["dream.safetensors"]
    assert await _names(stub, query="nothing-matches") == []
    resp = await stub.ListModels(registry_pb2.ListModelsRequest(query="style"))
    assert resp.total_size == 2 and resp.next_page_token == ""


async def test_pages_cover_everything_once(populated):
    stub = populated.stub
    seen, token, pages = [], "", 0
    while True:
        resp = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=4, page_token=token))
        assert resp.total_size == 6
        seen += [m.filename for m in resp.models]
        pages += 1
        token = resp.next_page_token
        if not token:
            break
    assert pages == 2 and seen == await _names(stub)
    # Filtered pages.
    first = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=1, type=LORA, query="style"))
    second = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=1, type=LORA, query="style",
                                                                  page_token=first.next_page_token))
    assert [m.filename for m in [*first.models, *second.models]] == ["ink.safetensors", "pony-style.safetensors"]
    assert second.next_page_token == "" and first.total_size == 2


async def test_tokens_survive_changes_between_pages(populated):
    stub = populated.stub
    first = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=2))
    assert [m.filename for m in first.models] == ["zeta.safetensors", "detail.safetensors"]
    # Deleting a model already seen does not shift the next page.
    await stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="zeta.safetensors"))
    second = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=2, page_token=first.next_page_token))
    assert [m.filename for m in second.models] == ["ink.safetensors", "pony-style.safetensors"]


async def test_bad_page_arguments(populated):
    stub = populated.stub
    token = (await stub.ListModels(registry_pb2.ListModelsRequest(page_size=1))).next_page_token
    assert token and "zeta" not in token  # opaque
    cases = [
        (registry_pb2.ListModelsRequest(page_size=-1), "INVALID_PAGE_SIZE"),
        (registry_pb2.ListModelsRequest(type=42), "INVALID_TYPE"),
        (registry_pb2.ListModelsRequest(page_token="garbage"), "INVALID_PAGE_TOKEN"),
        (registry_pb2.ListModelsRequest(page_token=token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),
         "INVALID_PAGE_TOKEN"),
        # A token is only good for the filter it was issued for.
        (registry_pb2.ListModelsRequest(page_token=token, query="style"), "INVALID_PAGE_TOKEN"),
    ]
    for request, expected in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListModels(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(caught.value) == expected
    # page_size 0 means the default, and a different page_size with the same token is fine.
    assert len((await stub.ListModels(registry_pb2.ListModelsRequest(page_token=token, page_size=100))).models) == 5
