"""ComposePrompt (trigger-word injection) through the wire, and the composition rules as properties."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from registry_helpers import CHECKPOINT, LORA, create_request, reason, write_checkpoint, write_lora

from metadata_svc.prompt import compose, contains_phrase
from modelmanager.v1 import model_pb2, registry_pb2


def _sel(name: str, weight: float | None = None) -> model_pb2.LoraSelection:
    return model_pb2.LoraSelection(name=name) if weight is None else model_pb2.LoraSelection(name=name, weight=weight)


@pytest.fixture
async def with_loras(reg):
    write_lora(reg.loras / "lora_929497.safetensors")
    write_lora(reg.loras / "detail.safetensors", seed=2)
    write_checkpoint(reg.checkpoints / "base.safetensors")
    await reg.stub.CreateModel(create_request(
        "lora_929497.safetensors", LORA, display_name="Aesthetic Quality Modifiers - Masterpiece",
        short_name="Aesthetic Quality", trigger_words=["masterpiece", "best quality", "very aesthetic"],
        recommended_weight=0.8))
    await reg.stub.CreateModel(create_request("detail.safetensors", LORA, display_name="Detailer IL",
                                              trigger_words=["Jeddtl02", "masterpiece"]))
    await reg.stub.CreateModel(create_request("base.safetensors", CHECKPOINT))
    return reg


async def test_triggers_prepended_once_case_insensitively(with_loras):
    resp = await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="a castle, Best Quality", loras=[_sel("lora_929497.safetensors"), _sel("detailer il", 0.5)]))
    assert list(resp.injected_trigger_words) == ["masterpiece", "very aesthetic", "Jeddtl02"]
    assert resp.prompt == "masterpiece, very aesthetic, Jeddtl02, a castle, Best Quality"
    first, second = resp.loras
    assert (first.filename, first.weight, list(first.trigger_words)) == (
        "lora_929497.safetensors", 0.8, ["masterpiece", "best quality", "very aesthetic"])
    assert first.path == str(with_loras.loras.absolute() / "lora_929497.safetensors")
    assert (second.filename, second.weight, second.display_name) == ("detail.safetensors", 0.5, "Detailer IL")
    assert first.sha256 and len(first.sha256) == 64


async def test_nothing_injected_when_present_and_lookup_by_short_name(with_loras):
    resp = await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
        prompt="MASTERPIECE, very aesthetic, best quality, cat", loras=[_sel("aesthetic quality", 0.0)]))
    assert resp.prompt == "MASTERPIECE, very aesthetic, best quality, cat"
    assert list(resp.injected_trigger_words) == []
    assert resp.loras[0].weight == 0.0  # an explicit 0 is kept, not replaced by the recommended weight


async def test_empty_prompt_and_no_loras(with_loras):
    resp = await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(prompt="", loras=[_sel("detail")]))
    assert resp.prompt == "Jeddtl02, masterpiece"
    plain = await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(prompt="just this"))
    assert plain.prompt == "just this" and not plain.loras


@pytest.mark.parametrize(
    ("selection", "code", "expected"),
    [
        (_sel("nope.safetensors"), grpc.StatusCode.NOT_FOUND, "LORA_NOT_FOUND"),
        (_sel("base.safetensors"), grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_LORA"),
        (_sel("detail.safetensors", float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHT"),
        (_sel("detail.safetensors", 50.0), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHT"),
    ],
)
async def test_compose_errors(with_loras, selection, code, expected):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(prompt="x", loras=[selection]))
    assert caught.value.code() == code and reason(caught.value) == expected
    if expected == "LORA_NOT_FOUND":
        assert "nope.safetensors" in caught.value.details()


async def test_ambiguous_and_duplicate_selections(with_loras):
    write_lora(with_loras.loras / "detail-v2.safetensors", seed=5)
    await with_loras.stub.CreateModel(create_request("detail-v2.safetensors", LORA, display_name="Detailer IL"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(prompt="x", loras=[_sel("Detailer IL")]))
    assert reason(caught.value) == "AMBIGUOUS_LORA" and "detail-v2.safetensors" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(
            prompt="x", loras=[_sel("detail"), _sel("detail.safetensors")]))
    assert reason(caught.value) == "DUPLICATE_LORA"


async def test_lora_whose_file_is_gone(with_loras):
    (with_loras.loras / "detail.safetensors").unlink()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await with_loras.stub.ComposePrompt(registry_pb2.ComposePromptRequest(prompt="x", loras=[_sel("detail")]))
    assert reason(caught.value) == "FILE_MISSING"


def test_contains_phrase_is_whole_word():
    assert contains_phrase("a Masterpiece!", "masterpiece")
    assert not contains_phrase("a party", "art")
    assert contains_phrase("(best quality:1.2)", "best quality")
    assert not contains_phrase("bestquality", "best quality")


words = st.text(alphabet="abcXYZ ", min_size=1, max_size=8).map(str.strip).filter(bool)


@given(prompt=st.text(alphabet="abcXYZ ,", max_size=30), lists=st.lists(st.lists(words, max_size=4), max_size=3))
def test_compose_properties(prompt, lists):
    final, injected = compose(prompt, lists)
    lowered = [w.lower() for w in injected]
    assert len(lowered) == len(set(lowered))  # no duplicates
    for group in lists:
        for word in group:
            assert contains_phrase(final, word)  # every trigger ends up in the prompt
    for word in injected:
        assert not contains_phrase(prompt, word)  # only missing ones were added
    if injected:
        assert final.startswith(injected[0])  # prepended
    again, more = compose(final, lists)
    assert (again, more) == (final, [])  # idempotent
