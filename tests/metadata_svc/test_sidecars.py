"""sidecars: each tool's sidecar (written from its documented fields) read and normalised, merged with the
documented precedence, bounded and hostile-proof, and the A1111 `<stem>.json` written back without
losing a hand-written field."""

from __future__ import annotations

import json
import math
import os

import pytest
from library_helpers import (
    a1111_json,
    civitai_version,
    cm_info,
    image_bytes,
    lora_manager_json,
    recorded_opens,
    write_bytes,
    write_json,
)

from devtools.model_files import write_safetensors
from metadata_svc.sidecars import (
    MAX_SIDECAR_BYTES,
    ModelInfo,
    SidecarKind,
    SidecarReason,
    WriteBackRefused,
    merged,
    read_sidecars,
    sidecar_of,
    write_a1111_sidecar,
)


@pytest.fixture
def model(tmp_path):
    return write_safetensors(tmp_path / "lib" / "Lora" / "ink.safetensors", "lora", payload_bytes=64)


def _side(model, suffix):
    return model.parent / f"ink{suffix}"


def test_names_say_which_tool_wrote_a_sidecar():
    assert sidecar_of("x.metadata.json") == (SidecarKind.LORA_MANAGER, "x")
    assert sidecar_of("x.cm-info.json") == (SidecarKind.STABILITY_MATRIX, "x")
    assert sidecar_of("x.civitai.info") == (SidecarKind.CIVITAI_HELPER, "x")
    assert sidecar_of("my.model.json") == (SidecarKind.A1111, "my.model")
    assert sidecar_of("x.preview.webp") == (SidecarKind.PREVIEW, "x")
    assert sidecar_of("x.JPG") == (SidecarKind.PREVIEW, "x")
    assert sidecar_of(".json") is None and sidecar_of("x.txt") is None and sidecar_of("x.preview.mp4") is None


def test_a1111_user_metadata(model):
    write_json(_side(model, ".json"), a1111_json())
    found = read_sidecars(model)
    info = found.info
    assert info.trigger_words == ("inkwash", "monochrome")
    assert (info.recommended_weight, info.sd_version) == (0.8, "SDXL")
    assert (info.description, info.notes) == ("Ink wash style", "works best at 1024px")
    assert found.found == ((SidecarKind.A1111, "ink.json"),) and found.problems == ()
    assert set(info.sources.values()) == {"a1111"}


@pytest.mark.parametrize("weight", [0, "NaN", 1e9, True, "abc", None])
def test_a1111_weights_that_mean_not_set_or_are_junk(model, weight):
    text = json.dumps(a1111_json(**{"preferred weight": weight}))
    if weight == "NaN":
        text = text.replace('"NaN"', "NaN")  # Python's json writes and reads the bare literal
    write_bytes(_side(model, ".json"), text.encode())
    assert read_sidecars(model).info.recommended_weight is None


def test_civitai_helper_info_and_its_empty_not_found_marker(model):
    write_json(_side(model, ".civitai.info"), civitai_version(sha256="ab" * 32))
    info = read_sidecars(model).info
    assert (info.display_name, info.version_name, info.base_model) == ("Soft Watercolor Style", "v1.0", "Illustrious")
    assert info.trigger_words == ("wtrclr style", "watercolor")  # CivitAI's phrases, not split
    assert (info.civitai_model_id, info.civitai_version_id, info.model_type) == (1234567, 2345678, "LORA")
    assert info.civitai_url == "https://civitai.com/models/1234567?modelVersionId=2345678"
    assert info.sha256 == "ab" * 32  # the primary model file's, not the training data's
    assert (info.nsfw_level, info.preview_url) == (1, "https://image.civitai.com/x/original=true/1.jpeg")
    assert not info.not_on_civitai
    write_bytes(_side(model, ".civitai.info"), b"")
    assert read_sidecars(model).info == ModelInfo(not_on_civitai=True)


def test_stability_matrix_connected_model_info(model):
    write_json(_side(model, ".cm-info.json"), cm_info(sha256="ef" * 32))
    info = read_sidecars(model).info
    assert (info.display_name, info.version_name, info.base_model) == ("Crisp Lines", "v2", "SDXL 1.0")
    assert (info.trigger_words, info.tags) == (("crisplines",), ("style", "lineart"))
    assert (info.civitai_model_id, info.civitai_version_id, info.sha256) == (111, 222, "ef" * 32)
    assert info.description == "<p>version two</p>"
    assert info.preview_url == "https://image.civitai.com/x/2.jpeg"
    # The user's own title wins; camelCase (other versions' serializer) is read too.
    write_json(_side(model, ".cm-info.json"), {"modelName": "Crisp", "userTitle": "My Crisp", "versionId": 9,
                                               "modelId": 8, "trainedWords": ["cl"]})
    info = read_sidecars(model).info
    assert (info.display_name, info.civitai_version_id, info.trigger_words) == ("My Crisp", 9, ("cl",))
    # A model from another source has no CivitAI ids to offer.
    write_json(_side(model, ".cm-info.json"), cm_info(Source="OpenModelDb"))
    assert read_sidecars(model).info.civitai_model_id == 0


def test_comfyui_lora_manager_metadata(model):
    write_json(_side(model, ".metadata.json"), lora_manager_json(sha256="12" * 32))
    info = read_sidecars(model).info
    assert info.display_name == "Neon Glow"  # its own name over the CivitAI copy's
    assert info.trigger_words == ("neonglow",)  # from civitai.trainedWords
    assert (info.recommended_weight, info.base_model, info.notes) == (0.6, "Pony", "my notes")  # usage_tips string
    assert (info.tags, info.description, info.nsfw_level) == (("glow", "neon"), "glowing edges", 2)
    assert (info.civitai_model_id, info.civitai_version_id, info.version_name) == (555, 444, "v3")
    assert info.preview_url == ""  # its preview_url is a local path: never followed
    assert info.sha256 == "12" * 32


def test_sidecar_precedence_a1111_then_lora_manager_then_stability_matrix_then_civitai_helper(model):
    write_json(_side(model, ".json"), {"activation text": "from a1111"})
    write_json(_side(model, ".metadata.json"), lora_manager_json())
    write_json(_side(model, ".cm-info.json"), cm_info())
    write_json(_side(model, ".civitai.info"), civitai_version())
    found = read_sidecars(model)
    assert [k for k, _ in found.found] == [SidecarKind.A1111, SidecarKind.LORA_MANAGER, SidecarKind.STABILITY_MATRIX,
                                           SidecarKind.CIVITAI_HELPER]
    info = found.info
    assert (info.trigger_words, info.sources["trigger_words"]) == (("from a1111",), "a1111")
    assert (info.display_name, info.sources["display_name"]) == ("Neon Glow", "lora_manager")
    assert (info.base_model, info.sources["base_model"]) == ("Pony", "lora_manager")
    assert info.sources["preview_url"] == "stability_matrix"  # LoRA Manager's was a path, dropped


def test_user_edits_beat_sidecars_which_beat_civitai():
    user = ModelInfo(display_name="Mine")
    sidecars = ModelInfo(display_name="Sidecar's", trigger_words=("a",), sources={"trigger_words": "a1111"})
    civitai = ModelInfo(display_name="CivitAI's", trigger_words=("b",), base_model="Illustrious",
                        civitai_version_id=7)
    info = merged(user=user, sidecars=sidecars, civitai=civitai)
    assert (info.display_name, info.trigger_words, info.base_model, info.civitai_version_id) == (
        "Mine", ("a",), "Illustrious", 7)
    assert info.sources == {"display_name": "user", "trigger_words": "a1111", "base_model": "civitai",
                            "civitai_version_id": "civitai"}


def test_oversized_malformed_and_hostile_sidecars_are_reasons(model):
    write_bytes(_side(model, ".json"), b'{"notes": "' + b"x" * MAX_SIDECAR_BYTES + b'"}')
    write_bytes(_side(model, ".metadata.json"), b"{not json")
    write_bytes(_side(model, ".cm-info.json"), b"[" * 200_000 + b"]" * 200_000)
    write_json(_side(model, ".civitai.info"), ["a", "list"])
    found = read_sidecars(model)
    assert {p.name: p.reason for p in found.problems} == {
        "ink.json": SidecarReason.TOO_LARGE, "ink.metadata.json": SidecarReason.MALFORMED,
        "ink.cm-info.json": SidecarReason.MALFORMED, "ink.civitai.info": SidecarReason.MALFORMED}
    assert found.info == ModelInfo() and found.found == ()


def test_wrong_types_are_ignored_and_texts_bounded(model):
    write_json(_side(model, ".json"), {"description": ["not", "text"], "activation text": 5, "notes": "n" * 100_000})
    write_json(_side(model, ".civitai.info"), civitai_version(trainedWords=[f"w{i}" for i in range(500)] + [None, 3],
                                                            description="d" * 100_000, modelId="12", id=-4))
    write_bytes(_side(model, ".cm-info.json"), b"\xef\xbb\xbf" + json.dumps({"ModelName": "Crisp Lines"}).encode())  # a BOM
    info = read_sidecars(model).info
    assert len(info.trigger_words) == 200 and len(info.description) == 65_536 and len(info.notes) == 65_536
    assert (info.civitai_model_id, info.civitai_version_id) == (12, 0)  # "12" read, a negative id dropped
    assert info.sources["description"] == "civitai_helper"  # A1111's list was no description
    assert info.sources["trigger_words"] == "civitai_helper" and info.display_name == "Crisp Lines"  # BOM read


def test_a_sidecar_linked_out_of_the_root_is_not_read(model, tmp_path):
    secret = write_json(tmp_path / "elsewhere" / "secret.json", a1111_json(notes="secret"))
    _side(model, ".json").symlink_to(secret)
    root = tmp_path / "lib"
    with recorded_opens() as opened:
        found = read_sidecars(model, root=root)
    assert str(secret) not in opened
    assert [p.reason for p in found.problems] == [SidecarReason.OUTSIDE_ROOT] and found.info.notes == ""
    assert read_sidecars(model).info.notes == "secret"  # without a root to keep to, links are followed


def test_previews_in_the_tools_lookup_order(model):
    assert read_sidecars(model).preview == ""
    write_bytes(_side(model, ".webp"), image_bytes("WEBP"))
    assert read_sidecars(model).preview == "ink.webp"
    write_bytes(_side(model, ".preview.jpeg"), image_bytes("JPEG"))
    assert read_sidecars(model).preview == "ink.preview.jpeg"
    write_bytes(_side(model, ".preview.png"), image_bytes("PNG"))
    assert read_sidecars(model).preview == "ink.preview.png"
    # With the folder's names from a scan, absent candidates cost nothing and only listed ones count.
    assert read_sidecars(model, names={"ink.safetensors", "ink.webp"}).preview == "ink.webp"


# ---------------------------------------------------------------------------- write-back


def test_write_back_creates_an_a1111_json_that_reads_back(model):
    info = ModelInfo(trigger_words=("inkwash", "bold lines"), recommended_weight=0.7, description="d")
    written = write_a1111_sidecar(model, info, architecture="sdxl")
    assert written == {"description": "d", "sd version": "SDXL", "activation text": "inkwash, bold lines",
                       "preferred weight": 0.7}
    assert json.loads(_side(model, ".json").read_text("utf-8")) == written
    back = read_sidecars(model).info
    assert (back.trigger_words, back.recommended_weight, back.sd_version) == (("inkwash", "bold lines"), 0.7, "SDXL")
    assert not [p for p in model.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_back_keeps_every_field_of_a_hand_written_json(model):
    hand = {"activation text": "old words", "notes": "mine, keep", "my own key": [1, 2], "preferred weight": 0.5,
            "négatif": "ünïcode"}
    write_json(_side(model, ".json"), hand)
    written = write_a1111_sidecar(model, ModelInfo(trigger_words=("new",), description="desc"))
    assert written == {**hand, "activation text": "new", "description": "desc"}
    on_disk = json.loads(_side(model, ".json").read_text("utf-8"))
    assert on_disk == written and "ünïcode" in _side(model, ".json").read_text("utf-8")  # UTF-8, as A1111 writes


def test_write_back_leaves_an_unchanged_json_alone(model):
    write_a1111_sidecar(model, ModelInfo(trigger_words=("a",)))
    before = os.stat(_side(model, ".json"))
    write_a1111_sidecar(model, ModelInfo(trigger_words=("a",)))
    after = os.stat(_side(model, ".json"))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


@pytest.mark.parametrize("content", [b"{broken", b"[1, 2]", b"x" * (MAX_SIDECAR_BYTES + 1)])
def test_write_back_never_replaces_a_json_it_cannot_read(model, content):
    write_bytes(_side(model, ".json"), content)
    with pytest.raises(WriteBackRefused) as refused:
        write_a1111_sidecar(model, ModelInfo(trigger_words=("a",)))
    assert refused.value.reason in (SidecarReason.MALFORMED, SidecarReason.TOO_LARGE)
    assert _side(model, ".json").read_bytes() == content


def test_write_back_never_writes_through_a_link_out_of_the_root(model, tmp_path):
    secret = write_json(tmp_path / "elsewhere" / "x.json", {"k": 1})
    _side(model, ".json").symlink_to(secret)
    with pytest.raises(WriteBackRefused) as refused:
        write_a1111_sidecar(model, ModelInfo(trigger_words=("a",)), root=tmp_path / "lib")
    assert refused.value.reason == SidecarReason.OUTSIDE_ROOT
    assert json.loads(secret.read_text()) == {"k": 1}


def test_an_infinite_weight_is_not_ours_but_a_hand_written_one_is_kept(model):
    write_bytes(_side(model, ".json"), b'{"preferred weight": Infinity}')
    info = read_sidecars(model).info
    assert info.recommended_weight is None
    written = write_a1111_sidecar(model, info)
    assert math.isinf(written["preferred weight"])  # the hand-written value is kept as it was, not ours
