"""Start-up's fast paths say what the slow ones said: entries loaded without the dataclass __init__, the
index file's own lines kept, List's column filters, the rescan's listing instead of a stat per entry."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from registry_helpers import LORA, create_request, write_lora

from metadata_svc import limits
from metadata_svc.app import remove_leftovers
from metadata_svc.index_store import load_index, render
from metadata_svc.listing import VOLUME_ROOT_ID, ListOrder
from metadata_svc.models import Inspection, ModelEntry, PreviewInfo
from modelmanager.v1 import registry_pb2

FULL = ModelEntry(
    filename="full.safetensors", type="lora", display_name="Full", short_name="F", source="civitai",
    trigger_words=("a", "b"), recommended_weight=0.7, base_model="SDXL 1.0", tags=("t",), description="d",
    file_size_bytes=12, added_at="2026-01-01T00:00:00+00:00", civitai_model_id=3, civitai_version_id=4,
    civitai_url="https://civitai.com/models/3", sha256="ab" * 32,
    inspection=Inspection(detected_type="lora", architecture="sdxl", tensor_count=2, header_metadata={"k": "v"}),
    root_id="r1", folder="x/y", file_name="f.safetensors", file_key="1:2:3:4",
    preview=PreviewInfo(sha256="cd" * 32, width=8, height=8), nsfw_level=2, autov3="abc",
    user_edited_fields=("display_name",), sidecar_fields=("tags",), civitai_version_name="v1",
    civitai_lookup="found", civitai_checked_at="2026-01-02T00:00:00+00:00", notes="n", default_vae="",
    negative_embedding=False, extra={"unknown_key": [1, 2]},
)


def test_an_entry_from_json_is_the_one_init_makes():
    for entry in (FULL, ModelEntry(filename="plain.safetensors", type="checkpoint", display_name="P")):
        loaded = ModelEntry.from_json(entry.filename, json.loads(json.dumps(entry.to_json())))
        assert loaded == entry and loaded.extra == entry.extra and loaded.inspection == entry.inspection
        assert {k for k in vars(loaded) if k != "_memo"} == {f.name for f in dataclasses.fields(ModelEntry)}
    # An inspection with a key missing or unknown still takes the slow way: defaults, unknown keys dropped.
    partial = Inspection.from_json({"format": "safetensors", "tensor_count": 3, "later": 1})
    assert partial == Inspection(tensor_count=3)


def _write(path: Path, entries: list[ModelEntry]) -> Path:
    path.write_bytes(render("ckpt.safetensors", [e.json_line() for e in entries]))
    return path


def test_a_rendered_index_gives_each_entry_its_own_line_of_the_file(tmp_path):
    entries = [FULL, ModelEntry(filename='q"uote\\.safetensors', type="lora", display_name="Q"),
               ModelEntry(filename="ünï\u2028.safetensors", type="lora", display_name="U")]
    index = _write(tmp_path / ".metadata.json", entries)
    state = load_index(index)
    assert state is not None and state.active_checkpoint == "ckpt.safetensors"
    file_lines = index.read_bytes().split(b"\n")[3:-2]
    for loaded, line, original in zip(state.models.values(), file_lines, entries, strict=True):
        assert loaded == original
        assert loaded.json_line() == line.rstrip(b",") == original.json_line()
    assert render(state.active_checkpoint, [e.json_line() for e in state.models.values()]) == index.read_bytes()


def test_another_layout_loads_the_same_and_renders_its_lines(tmp_path):
    entries = [FULL, ModelEntry(filename="b.safetensors", type="lora", display_name="B")]
    index = tmp_path / ".metadata.json"
    data = {"version": 1, "active_checkpoint": "", "models": {e.filename: e.to_json() for e in entries}}
    index.write_text(json.dumps(data, indent=2))
    state = load_index(index)
    assert state is not None and list(state.models.values()) == entries
    assert [e.json_line() for e in state.models.values()] == [e.json_line() for e in entries]


def test_a_clipped_entry_gets_its_clipped_line_not_the_files(tmp_path):
    long = ModelEntry(filename="long.safetensors", type="lora", display_name="x" * 1000)
    index = _write(tmp_path / ".metadata.json", [long, ModelEntry(filename="ok.safetensors", type="lora", display_name="ok")])
    state = load_index(index)
    assert state is not None
    clipped = state.models["long.safetensors"]
    assert clipped == limits.clip_entry(long) and len(clipped.display_name) < 1000
    assert json.loads(b"{" + clipped.json_line() + b"}")["long.safetensors"]["display_name"] == clipped.display_name


def _entry(i: int, rng: random.Random) -> ModelEntry:
    words = ["ink", "wash", "Style", "neon", "city", "dream", "ß"]
    return ModelEntry(
        filename=f"m{i:03d}.safetensors", type=rng.choice(["lora", "checkpoint", "vae"]),
        display_name=" ".join(rng.sample(words, 2)), base_model=rng.choice(["SDXL 1.0", "Pony", ""]),
        tags=tuple(rng.sample(words, 1)), root_id=rng.choice(["", "", "r1"]),
        folder=rng.choice(["", "a", "a/b", "ab"]),
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from([None, "lora", "checkpoint", "embedding"]),
       base=st.sampled_from(["", "sdxl 1.0", "pony"]), terms=st.sampled_from([[], ["ink"], ["ne", "city"], ["ß"]]),
       root_id=st.sampled_from(["", VOLUME_ROOT_ID, "r1", "r2"]), folder=st.sampled_from(["", "a", "a/b", "b"]))
def test_list_filters_match_a_test_per_entry(seed, kind, base, terms, root_id, folder):
    rng = random.Random(seed)
    entries = [_entry(i, rng) for i in range(60)]
    order = ListOrder(entries[:40])
    if seed % 2:  # the columns a filter makes on first use are then kept up to date by every change
        order.matching(None, "pony", [], "r1", "a")
    for entry in entries[40:]:
        order.insert(entry)
    order.remove(entries[3])
    expected = sorted([e for e in entries if e is not entries[3]], key=ModelEntry.sort_key)
    assert order.entries == expected
    root = "" if root_id == VOLUME_ROOT_ID else root_id
    want = [i for i, e in enumerate(expected)
            if (not kind or e.type == kind) and (not base or e.base_model.lower() == base)
            and all(t in e.search_text() for t in terms) and (not root_id or e.root_id == root)
            and (not folder or e.folder == folder or e.folder.startswith(folder + "/"))]
    assert list(order.matching(kind, base, terms, root_id, folder)) == want


async def test_the_rescan_reports_missing_files_through_links_and_folders(start_registry, tmp_path):
    reg = await start_registry()
    for name in ("kept.safetensors", "gone.safetensors", "linked.safetensors", "outside.safetensors"):
        write_lora(reg.loras / name)
        await reg.stub.CreateModel(create_request(name, LORA))
    (reg.loras / "gone.safetensors").unlink()
    (reg.loras / "gone.safetensors").mkdir()  # a folder by that name is no file
    target = write_lora(reg.loras / "sub" / "target.safetensors")
    (reg.loras / "linked.safetensors").unlink()
    os.symlink(target, reg.loras / "linked.safetensors")  # a link that stays on the volume: present
    (reg.loras / "outside.safetensors").unlink()
    os.symlink(write_lora(tmp_path / "elsewhere.safetensors"), reg.loras / "outside.safetensors")
    report = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert list(report.missing_filenames) == ["gone.safetensors", "outside.safetensors"]
    assert [s.path for s in report.skipped] == []  # links of known names are not new files
    listed = await reg.stub.ListModels(registry_pb2.ListModelsRequest(page_size=10))
    present = {m.filename: m.file_present for m in listed.models}
    assert present == {"gone.safetensors": False, "kept.safetensors": True, "linked.safetensors": True,
                       "outside.safetensors": False}


def test_leftovers_are_found_at_every_depth_and_only_ours(tmp_path):
    root = tmp_path / "user-models"
    deep = root / "loras" / "a" / "b"
    deep.mkdir(parents=True)
    (root / "checkpoints").mkdir()
    stale = [root / ".metadata.json.123.tmp", root / "loras" / ".upload-1.part", root / "checkpoints" / ".upload-2.part",
             root / "loras" / ".import-3.part", deep / ".import-4.part", root / "checkpoints" / "x" / ".import-5.part"]
    kept = [deep / ".upload-6.part", root / "loras" / "model.safetensors", root / "loras" / "a" / "import-7.part",
            root / "embeddings" / ".upload-8.part"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    remove_leftovers(root)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)
