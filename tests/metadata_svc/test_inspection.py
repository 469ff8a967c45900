"""inspection: LoRA (kohya, PEFT, LyCORIS), SDXL checkpoint, and every file we do not load, with its reason,
from real files on disk; pickles are never opened, and header reads are bounded."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct

import pytest
from library_helpers import exploding_pickle, exploding_torch_zip, recorded_opens, write_bytes

from devtools.model_files import (
    TensorSpec,
    bad_header_length_bytes,
    frame_header,
    kohya_metadata,
    make_safetensors,
    modelspec_metadata,
    non_json_header_bytes,
    not_an_object_header_bytes,
    too_short_bytes,
    truncated,
    write_safetensors,
)
from metadata_svc.errors import InvalidSafetensors
from metadata_svc.inspection import (
    LORA_ALGORITHM_KEY,
    MAX_METADATA_KEYS,
    SkipReason,
    classify,
    examine_file,
    examine_stream,
    inspect_file,
    read_header,
)
from metadata_svc.models import CHECKPOINT, LORA


def _verdict(tmp_path, kind, name="m.safetensors", *, payload_bytes=1024, **kw):
    # With `keys=`, no padding tensor (whose name is of the kind's family) is added.
    payload_bytes = 0 if "keys" in kw else payload_bytes
    return examine_file(write_safetensors(tmp_path / name, kind, payload_bytes=payload_bytes, **kw))


# ---------------------------------------------------------------------------- what we load


@pytest.mark.parametrize(("kind", "lora_format", "algorithm"), [
    ("kohya", "kohya", "lora"),
    ("peft", "peft", "lora"),
    ("loha", "kohya", "loha"),
    ("locon", "kohya", "locon"),
])
def test_sdxl_loras_of_every_family_are_loras(tmp_path, kind, lora_format, algorithm):
    v = _verdict(tmp_path, kind)
    assert v.loadable and v.kind == LORA and v.skip is None
    assert (v.inspection.lora_format, v.lora_algorithm) == (lora_format, algorithm)
    assert v.inspection.architecture in ("sdxl", "unknown")
    # A plain LoRA's stored inspection is what it always was; a LyCORIS one says its algorithm.
    assert v.inspection.header_metadata.get(LORA_ALGORITHM_KEY) == (None if algorithm == "lora" else algorithm)


def test_lycoris_algorithms_are_told_by_their_tensor_names_alone(tmp_path):
    base = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    lokr = {f"{base}.lokr_w1": TensorSpec((4, 4)), f"{base}.lokr_w2": TensorSpec((4, 4)),
            f"{base}.alpha": TensorSpec((), value=4.0)}
    assert _verdict(tmp_path, "lora", "lokr.safetensors", keys=lokr, metadata={}).lora_algorithm == "lokr"
    # LoCon without metadata: a 3x3 convolution's down weight.
    conv = {"lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight": TensorSpec((4, 8, 3, 3)),
            "lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight": TensorSpec((8, 4, 1, 1))}
    assert _verdict(tmp_path, "lora", "locon.safetensors", keys=conv, metadata={}).lora_algorithm == "locon"
    # LyCORIS's own wrapper names modules lycoris_*.
    own = {"lycoris_input_blocks_4_1_transformer_blocks_0_attn1_to_q.hada_w1_a": TensorSpec((16, 4)),
           "lycoris_input_blocks_4_1_transformer_blocks_0_attn1_to_q.hada_w1_b": TensorSpec((4, 16))}
    v = _verdict(tmp_path, "lora", "own.safetensors", keys=own, metadata=kohya_metadata())
    assert (v.kind, v.inspection.lora_format, v.lora_algorithm) == (LORA, "lycoris", "loha")


def test_an_sdxl_checkpoint_is_a_checkpoint(tmp_path):
    v = _verdict(tmp_path, "checkpoint")
    assert v.loadable and v.kind == CHECKPOINT and v.inspection.architecture == "sdxl"
    assert v.lora_algorithm == ""


def test_header_hashes_are_read_for_free_and_normalised(tmp_path):
    sha = "AB" * 32
    v = _verdict(tmp_path, "lora", "a.safetensors", metadata=kohya_metadata(sshs_model_hash=sha))
    assert v.header_tensor_sha256 == sha.lower()
    v = _verdict(tmp_path, "checkpoint", "b.safetensors", metadata=modelspec_metadata(hash_sha256="0x" + "cd" * 32))
    assert v.header_tensor_sha256 == "cd" * 32
    v = _verdict(tmp_path, "lora", "c.safetensors", metadata=kohya_metadata(sshs_model_hash="not a hash"))
    assert v.header_tensor_sha256 == ""


def test_data_offset_is_where_the_tensor_data_starts(tmp_path):
    data = make_safetensors("lora", payload_bytes=512)
    path = write_bytes(tmp_path / "x.safetensors", data)
    (length,) = struct.unpack("<Q", data[:8])
    assert examine_file(path).data_offset == 8 + length


# ---------------------------------------------------------------------------- what we do not load, and why


@pytest.mark.parametrize(("kind", "reason"), [
    ("kohya-sd15", SkipReason.SD1),
    ("sd15-checkpoint", SkipReason.SD1),
    ("unknown", SkipReason.UNKNOWN_TENSORS),
])
def test_other_models_are_skipped_with_their_reason(tmp_path, kind, reason):
    # payload 0: model_files pads every LoRA kind with an SDXL-named (sgm) tensor, which is SDXL evidence.
    v = _verdict(tmp_path, kind, payload_bytes=0)
    assert not v.loadable and v.skip == reason and v.kind == ""
    assert v.inspection is not None and v.detail.startswith("m.safetensors: ")


def test_sd1_and_sd2_loras_without_metadata_are_told_by_their_keys_and_widths(tmp_path):
    sd15_peft = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": TensorSpec((4, 8)),
                 "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": TensorSpec((8, 4))}
    assert _verdict(tmp_path, "peft", "a.safetensors", keys=sd15_peft, metadata={}).skip == SkipReason.SD1
    # A real SD 2.x cross-attention projects from OpenCLIP-H's 1024-wide text states.
    sd2 = {"lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": TensorSpec((4, 1024)),
           "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": TensorSpec((320, 4))}
    assert _verdict(tmp_path, "lora", "b.safetensors", keys=sd2, metadata={}).skip == SkipReason.SD2
    v = _verdict(tmp_path, "lora", "c.safetensors", metadata=kohya_metadata(base="sd_v2", ss_v2="True"))
    # kohya's SDXL key names win over metadata, so this one stays SDXL; SD2's own keys are what an SD2 file has.
    assert v.kind == LORA
    single_te = {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": TensorSpec((4, 16)),
                 "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": TensorSpec((16, 4))}
    v = _verdict(tmp_path, "lora", "d.safetensors", keys=single_te, metadata=kohya_metadata(base="sd_v2", ss_v2="True"))
    assert v.skip == SkipReason.SD2 and "SD 2.x" in v.detail


def test_checkpoints_that_are_not_sdxl_base_are_skipped(tmp_path):
    unet = {"model.diffusion_model.input_blocks.0.0.weight": TensorSpec((8, 4, 3, 3))}
    sd2 = {**unet, "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": TensorSpec((8, 8))}
    refiner = {**unet, "conditioner.embedders.0.model.token_embedding.weight": TensorSpec((16, 8))}
    flux = {"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": TensorSpec((8, 8))}
    assert _verdict(tmp_path, "checkpoint", "sd2.safetensors", keys=sd2).skip == SkipReason.SD2
    for name, keys in (("refiner", refiner), ("unet", unet), ("flux", flux)):
        v = _verdict(tmp_path, "checkpoint", f"{name}.safetensors", keys=keys)
        assert v.skip == SkipReason.UNSUPPORTED_ARCHITECTURE, name
    assert "refiner" in _verdict(tmp_path, "checkpoint", "r2.safetensors", keys=refiner).detail


def test_unknown_tensors_get_a_hint_of_what_they_are(tmp_path):
    # VAEs and SDXL embeddings were unknown tensors with a hint; since issue 14 they are model types.
    vae = {"encoder.conv_in.weight": TensorSpec((8, 3, 3, 3)), "decoder.conv_out.weight": TensorSpec((3, 8, 3, 3))}
    embedding = {"clip_l": TensorSpec((2, 8)), "clip_g": TensorSpec((2, 16))}
    assert _verdict(tmp_path, "unknown", "v.safetensors", keys=vae).kind == "vae"
    assert _verdict(tmp_path, "unknown", "e.safetensors", keys=embedding).kind == "embedding"
    dit = {"double_blocks.0.img_attn.qkv.weight": TensorSpec((8, 8))}
    unknown = _verdict(tmp_path, "unknown", "d.safetensors", keys=dit)
    assert unknown.skip == SkipReason.UNKNOWN_TENSORS and "diffusion transformer" in unknown.detail


@pytest.mark.parametrize(("data", "reason"), [
    (truncated(make_safetensors("lora")), SkipReason.TRUNCATED),  # cut inside the header
    (make_safetensors("lora", payload_bytes=4096)[:-100], SkipReason.TRUNCATED),  # cut inside the data
    (too_short_bytes(), SkipReason.TRUNCATED),
    (b"", SkipReason.TRUNCATED),
    (non_json_header_bytes(), SkipReason.MALFORMED_HEADER),
    (not_an_object_header_bytes(), SkipReason.NOT_SAFETENSORS),  # `[` where the format's `{` must be
    (frame_header(b'{"t": {"dtype": "F16"}}'), SkipReason.MALFORMED_HEADER),
    (frame_header(b"{" * 100_000 + b"}" * 100_000), SkipReason.MALFORMED_HEADER),  # nested past the recursion limit
    (frame_header(b'{"a": 1}\xff\xfe'), SkipReason.MALFORMED_HEADER),
    (frame_header(b"{"), SkipReason.MALFORMED_HEADER),
    (bad_header_length_bytes(), SkipReason.HEADER_TOO_LARGE),
    (b"hello, this is a text file, not a model\n", SkipReason.NOT_SAFETENSORS),
    (b"GGUF\x03\x00\x00\x00" + bytes(64), SkipReason.NOT_SAFETENSORS),
])
def test_broken_files_are_reasons_not_exceptions(tmp_path, data, reason):
    v = examine_file(write_bytes(tmp_path / "broken.safetensors", data))
    assert v.skip == reason, v.detail
    assert v.detail.startswith("broken.safetensors: ")


def test_a_header_over_the_scan_bound_is_refused_after_reading_17_bytes(tmp_path):
    big = make_safetensors("lora", metadata={"ss_tag_frequency": "x" * 200_000})

    class Counting(io.BytesIO):
        taken = 0

        def read(self, n=-1):
            chunk = super().read(n)
            Counting.taken += len(chunk)
            return chunk

    v = examine_stream(Counting(big), len(big), "big.safetensors", max_header_bytes=64 * 1024)
    assert v.skip == SkipReason.HEADER_TOO_LARGE
    assert Counting.taken <= 17  # the magic peek and the length: not the header itself
    # The registry's own bound (the safetensors library's 100 MB) still takes it.
    path = write_bytes(tmp_path / "big.safetensors", big)
    assert inspect_file(path).detected_type == LORA
    assert examine_file(path).loadable


def test_pickles_under_a_safetensors_name_are_told_by_their_magic_bytes(tmp_path):
    marker = tmp_path / "exploded"
    for name, data in (("zip.safetensors", exploding_torch_zip(marker)), ("raw.safetensors", exploding_pickle(marker))):
        v = examine_file(write_bytes(tmp_path / name, data))
        assert v.skip == SkipReason.PICKLE and v.inspection.format == "pickle", name
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.ckpt", "pytorch_model.bin", "LOUD.CKPT"])
def test_pickle_formats_are_decided_by_name_and_never_opened(tmp_path, name):
    marker = tmp_path / "exploded"
    path = write_bytes(tmp_path / name, exploding_pickle(marker))
    with recorded_opens() as opened:
        v = examine_file(path)
    assert v.skip == SkipReason.PICKLE and v.inspection.format == "pickle"
    assert str(path) not in opened and not marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "LOUD.PTH"])
def test_pt_and_pth_are_read_weights_only_and_never_unpickled(tmp_path, name):
    """Since issue 14 (embeddings and upscalers ship as .pt/.pth) these are opened, but only by torch's
    weights-only unpickler: the exploding pickle is refused (PICKLE) and never runs."""
    marker = tmp_path / "exploded"
    path = write_bytes(tmp_path / name, exploding_pickle(marker))
    v = examine_file(path)
    assert v.skip == SkipReason.PICKLE and v.inspection.format == "pickle"
    assert "weights-only" in v.detail and not marker.exists()


def test_the_exploding_pickle_really_explodes(tmp_path):
    """The fixture above would have shown an unpickling: loading it runs code."""
    marker = tmp_path / "exploded"
    pickle.loads(exploding_pickle(marker))  # the test's own, deliberate unpickling
    assert marker.exists()


def test_vanished_odd_and_foreign_files(tmp_path):
    assert examine_file(tmp_path / "gone.safetensors").skip == SkipReason.VANISHED
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    assert examine_file(fifo).skip == SkipReason.NOT_A_REGULAR_FILE  # and the open did not block
    (tmp_path / "dir.safetensors").mkdir()
    assert examine_file(tmp_path / "dir.safetensors").skip == SkipReason.NOT_A_REGULAR_FILE
    assert examine_file(write_bytes(tmp_path / "notes.txt", b"hi")).skip == SkipReason.NOT_A_MODEL


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_a_reason(tmp_path):
    path = write_safetensors(tmp_path / "locked.safetensors", "lora", payload_bytes=64)
    path.chmod(0)
    assert examine_file(path).skip == SkipReason.UNREADABLE


# ---------------------------------------------------------------------------- the registry's functions keep working


def test_read_header_still_raises_invalid_safetensors_for_the_registry(tmp_path):
    for data, words in ((bad_header_length_bytes(), "absurdly large"), (too_short_bytes(), "too short"),
                        (non_json_header_bytes(), "not valid JSON"), (truncated(make_safetensors()), "runs past")):
        path = write_bytes(tmp_path / "x.safetensors", data)
        with pytest.raises(InvalidSafetensors) as caught:
            read_header(path, "shown.safetensors")
        assert words in str(caught.value) and str(caught.value).startswith("shown.safetensors: ")


def test_derived_facts_survive_the_metadata_cap(tmp_path):
    many = {f"modelspec.k{i:02}": "v" for i in range(40)}
    path = write_safetensors(tmp_path / "x.safetensors", "loha", payload_bytes=64,
                             metadata={**kohya_metadata(module="lycoris.kohya"), **many})
    found = classify(read_header(path))
    assert len(found.header_metadata) <= MAX_METADATA_KEYS
    assert found.header_metadata[LORA_ALGORITHM_KEY] == "loha"


def test_hostile_shapes_never_crash_the_classifier(tmp_path):
    header = {"lora_unet_x_attn2_to_k.lora_down.weight": {"dtype": "F16", "shape": [[1], "a", None],
                                                          "data_offsets": [0, 0]},
              "lora_unet_y.lora_down.weight": {"dtype": "F16", "shape": ["a", {}, 3, 3], "data_offsets": [0, 0]}}
    raw = json.dumps(header).encode()
    v = examine_file(write_bytes(tmp_path / "h.safetensors", frame_header(raw)))
    assert v.kind == LORA and v.lora_algorithm == "lora"
