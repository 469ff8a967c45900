"""Saved outputs: every result in the outputs folder with its parameters, A1111 infotext in the PNG,
and the ListOutputs / GetOutput / DeleteOutput RPCs, over the wire with a real registry."""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from inference_helpers import SIZE, copy_into
from inference_registry import start_registry
from PIL import Image

from devtools.model_files import frame_header
from inference_svc.app import create_server
from inference_svc.config import InferenceSettings
from inference_svc.infotext import format_infotext, output_infotext
from inference_svc.model_hashes import FileHashes
from inference_svc.outputs import OutputLora, OutputParameters, OutputStore
from modelmanager.v1 import inference_pb2, inference_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import errors

# ---------------------------------------------------------------- an A1111-style infotext reader

# From the format's description: the prompt (any lines), a `Negative prompt:` line, then a last line of
# `key: value` pairs joined by ", ", where a value holding `,`, `:` or a newline is JSON-quoted.
PAIR = re.compile(r'\s*([A-Za-z][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_infotext(text: str) -> dict[str, str]:
    *lines, last = text.split("\n")
    if len(PAIR.findall(last)) < 3:  # no parameter line: all of it is prompt
        lines, last = [*lines, last], ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith("Negative prompt:") or negative:
            negative.append(line.removeprefix("Negative prompt:").strip() if not negative else line)
        else:
            prompt.append(line)
    found = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in PAIR.findall(last):
        found[key] = json.loads(value) if value.startswith('"') else value.strip()
    return found


def pairs(value: str) -> dict[str, str]:
    """`a: 1, b: 2` (the inside of `Lora hashes`) -> {a: 1, b: 2}."""
    return dict(item.split(": ", 1) for item in value.split(", ")) if value else {}


def text_chunks(png: bytes) -> dict[str, str]:
    image = Image.open(io.BytesIO(png))
    image.load()
    return dict(image.text)  # type: ignore[attr-defined]


def autov3_of(path: Path) -> str:
    """Computed here from the description: sha256 of the bytes after the 8-byte length and the header."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + length:]).hexdigest()[:12]


def test_the_reader_reads_the_reference_example() -> None:
    example = (
        "a castle at dusk, wtrclr style\nNegative prompt: blurry, lowres\n"
        'Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 12345, Size: 1024x1024, '
        'Model hash: 1a2b3c4d5e, Model: dreamForgeXl_v20, Lora hashes: "wtrclr: 0123456789ab, detail: ba9876543210"'
    )
    got = parse_infotext(example)
    assert got["Prompt"] == "a castle at dusk, wtrclr style"
    assert got["Negative prompt"] == "blurry, lowres"
    assert (got["Steps"], got["Sampler"], got["Schedule type"], got["CFG scale"]) == ("30", "DPM++ 2M", "Karras", "7")
    assert pairs(got["Lora hashes"]) == {"wtrclr": "0123456789ab", "detail": "ba9876543210"}


def test_values_with_commas_colons_and_newlines_are_quoted_and_read_back() -> None:
    params = OutputParameters(
        prompt="line one, with a comma\nline two: a colon", negative_prompt="bad, worse", final_prompt="",
        injected_trigger_words=(), steps=20, guidance_scale=6.5, seed=42, scheduler="dpmpp_2m_karras",
        checkpoint="my: model, v2.safetensors", checkpoint_hash="0123456789",
        loras=(OutputLora("style, one.safetensors", 0.8, "aaaaaaaaaaaa"), OutputLora("b:c.safetensors", 1.0, "bbbbbbbbbbbb"),
               OutputLora("unhashed.ckpt", 1.0, "")),
    )
    text = output_infotext("generate", params, 832, 1216, "dpmpp_2m_karras")
    got = parse_infotext(text)
    assert got["Prompt"] == "line one, with a comma\nline two: a colon"
    assert got["Negative prompt"] == "bad, worse"
    assert (got["Steps"], got["Sampler"], got["Schedule type"], got["CFG scale"], got["Seed"], got["Size"]) == (
        "20", "DPM++ 2M", "Karras", "6.5", "42", "832x1216")
    assert got["Model"] == "my: model, v2" and got["Model hash"] == "0123456789"
    assert pairs(got["Lora hashes"]) == {"style one": "aaaaaaaaaaaa", "bc": "bbbbbbbbbbbb"}
    assert "Denoising strength" not in got
    # No negative prompt: no line for it; empty values are left out.
    bare = format_infotext("p", "", [("Steps", "1"), ("Sampler", ""), ("Seed", "2"), ("Size", "8x8")])
    assert bare == "p\nSteps: 1, Seed: 2, Size: 8x8"


# ---------------------------------------------------------------- over the wire


@dataclass
class Stack:
    inference: inference_pb2_grpc.InferenceServiceStub
    registry: registry_pb2_grpc.ModelRegistryServiceStub
    user_models: Path
    outputs: Path

    async def add(self, src: Path, kind: int, triggers: tuple[str, ...] = ()) -> str:
        copy_into(src, self.user_models / ("checkpoints" if kind == model_pb2.MODEL_TYPE_CHECKPOINT else "loras"))
        await self.registry.CreateModel(registry_pb2.CreateModelRequest(
            model=model_pb2.Model(filename=src.name, type=kind, trigger_words=list(triggers))))
        return src.name


@pytest.fixture
async def stack(volumes, channel_factory, tmp_path):
    user_models, models = volumes
    registry = await start_registry(user_models, models)
    # No outputs_dir: the default, outputs/ beside the user-models volume.
    server = await create_server(InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        config_cache_dir=tmp_path / "configs",
    ))
    await server.start()
    yield Stack(
        inference_pb2_grpc.InferenceServiceStub(channel_factory(server.address)),
        registry_pb2_grpc.ModelRegistryServiceStub(channel_factory(registry.address)),
        user_models,
        user_models.parent / "outputs",
    )
    await server.stop(0)
    await registry.stop(0)


async def expect_error(coro, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await coro
    assert failure.value.code() == code, failure.value.details()
    info = errors.error_info_of(failure.value)
    assert info is not None and info.reason == reason, (info, failure.value.details())
    return failure.value


async def last_result(call) -> inference_pb2.ImageResult:
    events = [event async for event in call]
    assert events[-1].WhichOneof("event") == "result"
    return events[-1].result


async def test_a_generated_image_is_saved_with_a1111_infotext_and_listed_got_and_deleted(stack, tiny):
    checkpoint = await stack.add(tiny.checkpoint_a, model_pb2.MODEL_TYPE_CHECKPOINT)
    await stack.registry.SetActiveCheckpoint(registry_pb2.SetActiveCheckpointRequest(checkpoint=checkpoint))
    lora = await stack.add(tiny.lora_kohya, model_pb2.MODEL_TYPE_LORA, triggers=("inkwash",))
    request = inference_pb2.GenerateRequest(
        prompt="a cat, on a mat", negative_prompt="blurry, lowres", width=SIZE, height=SIZE, steps=2,
        guidance_scale=5.0, seed=7, scheduler="euler_a", loras=[model_pb2.LoraSelection(name=lora, weight=0.75)])
    result = await last_result(stack.inference.Generate(request))
    assert result.output_id

    # The `parameters` chunk is A1111 infotext; the JSON lives in a chunk of its own.
    chunks = text_chunks(result.png)
    info = parse_infotext(chunks["parameters"])
    assert info["Prompt"] == "inkwash, a cat, on a mat" and info["Negative prompt"] == "blurry, lowres"
    assert (info["Steps"], info["Sampler"], info["CFG scale"], info["Seed"], info["Size"]) == (
        "2", "Euler a", "5", "7", f"{SIZE}x{SIZE}")
    assert info["Model"] == tiny.checkpoint_a.stem
    assert info["Model hash"] == hashlib.sha256(tiny.checkpoint_a.read_bytes()).hexdigest()[:10]
    assert pairs(info["Lora hashes"]) == {tiny.lora_kohya.stem: autov3_of(tiny.lora_kohya)}
    record = json.loads(chunks["modelmanager"])
    assert record["kind"] == "generate" and "id" not in record  # same parameters, same bytes
    assert record["parameters"]["loras"] == [
        {"filename": lora, "weight": 0.75, "hash": autov3_of(tiny.lora_kohya)}]

    # On disk, beside the user-models volume: the PNG and its JSON record, nothing half-written.
    assert sorted(p.name for p in stack.outputs.iterdir()) == [f"{result.output_id}.json", f"{result.output_id}.png"]
    assert (stack.outputs / f"{result.output_id}.png").read_bytes() == result.png

    listed = await stack.inference.ListOutputs(inference_pb2.ListOutputsRequest())
    assert [o.id for o in listed.outputs] == [result.output_id] and not listed.next_page_token
    got = await stack.inference.GetOutput(inference_pb2.GetOutputRequest(id=result.output_id))
    assert got.png == result.png
    out = got.output
    assert (out.kind, out.width, out.height, out.size_bytes) == ("generate", SIZE, SIZE, len(result.png))
    assert out.infotext == chunks["parameters"]
    p = out.parameters
    assert (p.prompt, p.negative_prompt, p.steps, p.guidance_scale, p.seed, p.scheduler, p.checkpoint) == (
        "a cat, on a mat", "blurry, lowres", 2, 5.0, 7, "euler_a", checkpoint)
    assert p.final_prompt == result.final_prompt and list(p.injected_trigger_words) == ["inkwash"]
    assert p.checkpoint_hash == info["Model hash"]
    assert [(x.filename, x.weight, x.hash) for x in p.loras] == [(lora, 0.75, autov3_of(tiny.lora_kohya))]
    assert out.created_at.seconds > 0
    meta = await stack.inference.GetOutput(inference_pb2.GetOutputRequest(id=result.output_id, without_image=True))
    assert meta.png == b"" and meta.output == out

    # Reusing the parameters makes the same image.
    again = await last_result(stack.inference.Generate(inference_pb2.GenerateRequest(
        prompt=p.prompt, negative_prompt=p.negative_prompt, width=out.width, height=out.height, steps=p.steps,
        guidance_scale=p.guidance_scale, seed=p.seed, scheduler=p.scheduler,
        loras=[model_pb2.LoraSelection(name=x.filename, weight=x.weight) for x in p.loras])))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(again.png))), np.asarray(Image.open(io.BytesIO(result.png))))
    assert again.output_id != result.output_id
    listed = await stack.inference.ListOutputs(inference_pb2.ListOutputsRequest())
    assert [o.id for o in listed.outputs] == [again.output_id, result.output_id]  # newest first

    await stack.inference.DeleteOutput(inference_pb2.DeleteOutputRequest(id=result.output_id))
    assert not (stack.outputs / f"{result.output_id}.png").exists()
    await expect_error(stack.inference.GetOutput(inference_pb2.GetOutputRequest(id=result.output_id)),
                       grpc.StatusCode.NOT_FOUND, "OUTPUT_NOT_FOUND")
    await expect_error(stack.inference.DeleteOutput(inference_pb2.DeleteOutputRequest(id=result.output_id)),
                       grpc.StatusCode.NOT_FOUND, "OUTPUT_NOT_FOUND")
    listed = await stack.inference.ListOutputs(inference_pb2.ListOutputsRequest())
    assert [o.id for o in listed.outputs] == [again.output_id]


async def test_an_upscaled_image_is_saved_as_an_upscale(stack, tiny):
    checkpoint = await stack.add(tiny.checkpoint_a, model_pb2.MODEL_TYPE_CHECKPOINT)
    source = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(source, format="PNG")
    result = await last_result(stack.inference.Upscale(inference_pb2.UpscaleRequest(
        image=source.getvalue(), prompt="sharp", scale_factor=2.0, steps=2, strength=0.5, seed=3, tile_size=64,
        checkpoint=checkpoint)))
    info = parse_infotext(text_chunks(result.png)["parameters"])
    assert (info["Prompt"], info["Size"], info["Denoising strength"], info["Seed"]) == ("sharp", "64x64", "0.5", "3")
    assert "Negative prompt" not in text_chunks(result.png)["parameters"]
    got = await stack.inference.GetOutput(inference_pb2.GetOutputRequest(id=result.output_id, without_image=True))
    p = got.output.parameters
    assert got.output.kind == "upscale"
    assert (p.scale_factor, p.strength, p.tile_size, p.steps, p.checkpoint) == (2.0, 0.5, 64, 2, checkpoint)


HOSTILE_IDS = ["", "../outputs", "/etc/passwd", "..", "*", "20250101T120000123456Z-1a2b3c4d/../../x",
               "20250101T120000123456Z-1a2b3c4d.png", "20250101T120000123456Z-1A2B3C4D", "x\x00y",
               "20250101T120000123456Z-1a2b3c4d\n", "a" * 5000]


async def test_hostile_output_ids_are_refused_before_any_file_is_touched(stack, tmp_path):
    bait = stack.outputs.parent / "bait.json"
    bait.write_text("{}")
    for bad in HOSTILE_IDS:
        failure = await expect_error(stack.inference.GetOutput(inference_pb2.GetOutputRequest(id=bad)),
                                     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_OUTPUT_ID")
        assert str(tmp_path) not in failure.details()
        await expect_error(stack.inference.DeleteOutput(inference_pb2.DeleteOutputRequest(id=bad)),
                           grpc.StatusCode.INVALID_ARGUMENT, "INVALID_OUTPUT_ID")
    assert bait.exists()
    await expect_error(stack.inference.ListOutputs(inference_pb2.ListOutputsRequest(page_token="../x")),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    await expect_error(stack.inference.ListOutputs(inference_pb2.ListOutputsRequest(page_size=-1)),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_SIZE")
    # A well-formed id that was never made is simply not there.
    await expect_error(stack.inference.GetOutput(inference_pb2.GetOutputRequest(id="20250101T120000123456Z-1a2b3c4d")),
                       grpc.StatusCode.NOT_FOUND, "OUTPUT_NOT_FOUND")


async def test_an_empty_lora_name_has_a_reason_of_its_own(stack):
    request = inference_pb2.GenerateRequest(prompt="x", loras=[model_pb2.LoraSelection(name="  ")])
    failure = await expect_error(last_result(stack.inference.Generate(request)),
                                 grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_LORA_NAME")
    assert "loras[0].name" in failure.details()


# ---------------------------------------------------------------- the store and the hashes, on real files


def _params(seed: int) -> OutputParameters:
    return OutputParameters(prompt=f"p{seed}", negative_prompt="", final_prompt=f"p{seed}", injected_trigger_words=(),
                            steps=1, guidance_scale=1.0, seed=seed, scheduler="", checkpoint="c", checkpoint_hash="")


def _save(store: OutputStore, seed: int) -> str:
    record = store.new_record("generate", 8, 8, _params(seed), "p")
    return store.save(record, b"\x89PNG fake " + str(seed).encode()).id


def test_pages_are_newest_first_and_survive_deletes_between_pages(tmp_path):
    store = OutputStore(tmp_path / "outputs")
    ids = [_save(store, seed) for seed in range(7)]
    assert ids == sorted(ids)  # ids sort by age
    first, token = store.page(3, "")
    assert [o.id for o in first] == ids[::-1][:3] and token == ids[4]
    store.delete(ids[3])  # the first of the next page goes while a client pages
    second, token = store.page(3, token)
    assert [o.id for o in second] == [ids[2], ids[1], ids[0]] and token == ""  # the last page
    exactly, token = store.page(2, "")
    assert [o.id for o in exactly] == [ids[6], ids[5]] and token == ids[5]
    everything, token = store.page(0, "")
    assert len(everything) == 6 and token == ""
    # Nothing but the outputs in the folder: no temp files left behind.
    names = sorted(p.name for p in store.root.iterdir())
    assert all(re.fullmatch(r"[0-9T]+Z-[0-9a-f]{8}\.(png|json)", n) for n in names), names


def test_a_png_without_its_record_or_a_broken_record_is_not_listed(tmp_path):
    store = OutputStore(tmp_path / "outputs")
    kept = _save(store, 1)
    half = _save(store, 2)
    (store.root / f"{half}.json").unlink()  # as after a crash between the two writes
    broken = _save(store, 3)
    (store.root / f"{broken}.json").write_text("{not json")
    listed, _ = store.page(0, "")
    assert [o.id for o in listed] == [kept]


def test_hashes_are_computed_once_per_file_version(tmp_path):
    hashes = FileHashes()
    try:
        lora = tmp_path / "x.safetensors"
        header = b'{"__metadata__":{}}'
        lora.write_bytes(frame_header(header, b"tensor-data"))
        expected = hashlib.sha256(b"tensor-data").hexdigest()[:12]
        assert hashes.lora_autov3(lora) == expected
        whole = hashes.start_sha256(lora).result()
        assert whole == hashlib.sha256(lora.read_bytes()).hexdigest()
        assert hashes.start_sha256(lora).result() == whole
        lora.write_bytes(frame_header(header, b"other tensor-data"))
        assert hashes.lora_autov3(lora) == hashlib.sha256(b"other tensor-data").hexdigest()[:12]
        assert hashes.start_sha256(tmp_path).result() == ""  # a diffusers folder has no file hash
        assert hashes.lora_autov3(tmp_path / "missing.safetensors") == ""
    finally:
        hashes.close()


def test_the_outputs_folder_setting(tmp_path):
    assert InferenceSettings().outputs_path == Path("data/outputs")  # beside data/user-models, data/models
    settings = InferenceSettings.from_args(["--outputs-dir", str(tmp_path / "elsewhere"),
                                            "--user-models-dir", str(tmp_path / "um")])
    assert settings.outputs_path == tmp_path / "elsewhere"
    assert InferenceSettings.from_args(["--user-models-dir", str(tmp_path / "um")]).outputs_path == tmp_path / "outputs"
