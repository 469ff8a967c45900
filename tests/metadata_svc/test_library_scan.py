"""library_scan: libraries in each tool's layout on disk, walked; links out of the root, pickles, broken,
vanishing and oddly named files are reasons on that file, never a failed walk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from library_helpers import (
    a1111_library,
    comfyui_library,
    exploding_pickle,
    invokeai_library,
    recorded_opens,
    stability_matrix_library,
    write_bytes,
)

from devtools.model_files import make_safetensors, truncated, write_safetensors
from metadata_svc.file_hashes import HashRequest, hash_files
from metadata_svc.inspection import SkipReason
from metadata_svc.library_scan import EntryKind, RootNotUsable, scan_library
from metadata_svc.models import CHECKPOINT, LORA
from metadata_svc.sidecars import SidecarKind


def _scan(root: Path, **kw) -> dict[str, object]:
    return {f.path: f for f in scan_library(root, **kw)}


def _summary(found) -> dict[str, tuple[str, str]]:
    """path -> (kind, model type / skip reason / sidecar kind)."""
    out = {}
    for path, f in found.items():
        what = (f.verdict.kind if f.kind == EntryKind.MODEL else f.skip.value if f.kind == EntryKind.SKIPPED
                else f.sidecar_kind.value)
        out[path] = (f.kind.value, what)
    return out


def test_an_a1111_library(tmp_path):
    found = _scan(a1111_library(tmp_path / "webui"))
    assert _summary(found) == {
        "models/Lora/LyCORIS/soft.safetensors": ("model", LORA),
        "models/Lora/styles/ink.json": ("sidecar", "a1111"),
        "models/Lora/styles/ink.preview.png": ("preview", "preview"),
        "models/Lora/styles/ink.safetensors": ("model", LORA),
        "models/Lora/watercolor.civitai.info": ("sidecar", "civitai_helper"),
        "models/Lora/watercolor.png": ("preview", "preview"),
        "models/Lora/watercolor.safetensors": ("model", LORA),
        "models/Stable-diffusion/dream.safetensors": ("model", CHECKPOINT),
        "models/Stable-diffusion/old15.safetensors": ("skipped", "sd1_model"),
        "models/Stable-diffusion/put checkpoints here.txt": ("skipped", "not_a_model"),
    }
    ink = found["models/Lora/styles/ink.safetensors"]
    assert (ink.folder, ink.name) == ("models/Lora/styles", "ink.safetensors")
    assert ink.size == ink.real.stat().st_size and ink.real == (tmp_path / "webui" / ink.path)
    assert (ink.dev, ink.inode, ink.mtime_ns) == (ink.real.stat().st_dev, ink.real.stat().st_ino,
                                                  ink.real.stat().st_mtime_ns)
    assert found["models/Lora/styles/ink.json"].model_name == "ink.safetensors"
    assert found["models/Lora/LyCORIS/soft.safetensors"].verdict.lora_algorithm == "loha"
    # Folder by folder, depth first, names in order: a folder's files before its subfolders.
    assert list(found)[:4] == ["models/Lora/watercolor.civitai.info", "models/Lora/watercolor.png",
                               "models/Lora/watercolor.safetensors", "models/Lora/LyCORIS/soft.safetensors"]


def test_comfyui_stability_matrix_and_invokeai_libraries(tmp_path):
    comfy = _summary(_scan(comfyui_library(tmp_path / "ComfyUI")))
    assert comfy == {
        "models/checkpoints/base.safetensors": ("model", CHECKPOINT),
        "models/loras/glow.metadata.json": ("sidecar", "lora_manager"),
        "models/loras/glow.safetensors": ("model", LORA),
        "models/loras/glow.webp": ("preview", "preview"),
        "models/loras/pony/locon.safetensors": ("model", LORA),
    }
    sm = _summary(_scan(stability_matrix_library(tmp_path / "StabilityMatrix" / "Data")))
    assert sm == {
        "Models/Lora/crisp.cm-info.json": ("sidecar", "stability_matrix"),
        "Models/Lora/crisp.preview.jpeg": ("preview", "preview"),
        "Models/Lora/crisp.safetensors": ("model", LORA),
        "Models/StableDiffusion/xl.safetensors": ("model", CHECKPOINT),
    }
    invoke = _summary(_scan(invokeai_library(tmp_path / "invokeai")))
    assert invoke == {
        "models/sd-1/lora/old.safetensors": ("skipped", "sd1_model"),
        "models/sdxl/lora/invoke-style.safetensors": ("model", LORA),
        "models/sdxl/main/invoke-base.safetensors": ("model", CHECKPOINT),
    }


def test_only_safetensors_headers_are_read_and_pickles_never_opened(tmp_path):
    root = a1111_library(tmp_path / "webui")
    marker = tmp_path / "exploded"
    for name in ("old.ckpt", "old.pt", "old.pth", "pytorch_model.bin"):
        write_bytes(root / "models" / "Stable-diffusion" / name, exploding_pickle(marker))
    with recorded_opens() as opened:
        found = _scan(root)
    assert not marker.exists()
    for name in ("old.ckpt", "old.pt", "old.pth", "pytorch_model.bin"):
        f = found[f"models/Stable-diffusion/{name}"]
        assert (f.kind, f.skip) == (EntryKind.SKIPPED, SkipReason.PICKLE) and f.size > 0
    read = {Path(p).relative_to(root).as_posix() for p in opened if Path(p).is_relative_to(root)}
    # No sidecar, preview, text or .ckpt/.bin; .pt/.pth (how embeddings and upscalers ship, issue 14) are
    # read by torch's weights-only unpickler only, which refuses the exploding pickle (marker checked above).
    assert read == {p for p in found if p.endswith((".safetensors", ".pt", ".pth"))}


def test_symlinks_out_of_the_root_are_not_followed_and_links_inside_are(tmp_path):
    root = tmp_path / "library"
    outside = tmp_path / "elsewhere"
    secret = write_safetensors(outside / "secret.safetensors", "lora", payload_bytes=64)
    write_safetensors(outside / "folder" / "x.safetensors", "lora", payload_bytes=64)
    real = write_safetensors(root / "real" / "a.safetensors", "lora", payload_bytes=64)
    root.joinpath("out.safetensors").symlink_to(secret)
    root.joinpath("out-folder").symlink_to(outside / "folder")
    root.joinpath("up").symlink_to("..")  # the root's parent: outside
    root.joinpath("inside.safetensors").symlink_to(real)
    root.joinpath("real-again").symlink_to("real")
    root.joinpath("self").symlink_to(".")
    root.joinpath("loop1").symlink_to("loop2")
    root.joinpath("loop2").symlink_to("loop1")
    root.joinpath("dangling.safetensors").symlink_to("nothing-here")
    with recorded_opens() as opened:
        found = _scan(root)
    assert not any(Path(p).is_relative_to(outside) for p in opened)
    assert {p: f.skip for p, f in found.items()} == {
        "dangling.safetensors": SkipReason.SYMLINK_LOOP,
        "inside.safetensors": None,
        "loop1": SkipReason.SYMLINK_LOOP,
        "loop2": SkipReason.SYMLINK_LOOP,
        "out-folder": SkipReason.SYMLINK_OUTSIDE_ROOT,
        "out.safetensors": SkipReason.SYMLINK_OUTSIDE_ROOT,
        "real-again": SkipReason.LINKED_FOLDER,
        "real/a.safetensors": None,
        "self": SkipReason.LINKED_FOLDER,
        "up": SkipReason.SYMLINK_OUTSIDE_ROOT,
    }
    assert found["out.safetensors"].real is None and found["out.safetensors"].size == 0  # not even stat'ed
    link, target = found["inside.safetensors"], found["real/a.safetensors"]
    assert link.kind == EntryKind.MODEL and link.real == target.real
    assert (link.dev, link.inode) == (target.dev, target.inode)


def test_a_rescan_with_the_earlier_verdicts_opens_no_file(tmp_path):
    root = a1111_library(tmp_path / "webui")
    first = _scan(root)
    known = {f.key: f.verdict for f in first.values() if f.verdict is not None}
    (root / "models" / "Lora" / "watercolor.safetensors").rename(root / "models" / "Lora" / "renamed.safetensors")
    with recorded_opens() as opened:
        again = _scan(root, known=known)
    assert not [p for p in opened if Path(p).is_relative_to(root)]
    assert again["models/Lora/renamed.safetensors"].verdict == first["models/Lora/watercolor.safetensors"].verdict
    assert again["models/Stable-diffusion/old15.safetensors"].detail.startswith("old15.safetensors: a checkpoint")
    del again["models/Lora/renamed.safetensors"], first["models/Lora/watercolor.safetensors"]
    first.pop("models/Lora/watercolor.civitai.info"), first.pop("models/Lora/watercolor.png")  # orphans now
    assert {p: f for p, f in again.items() if p in first} == first


def test_a_root_reached_through_a_link_is_walked_under_its_real_path(tmp_path):
    write_safetensors(tmp_path / "real-root" / "a" / "m.safetensors", "lora", payload_bytes=64)
    (tmp_path / "alias").symlink_to(tmp_path / "real-root")
    found = _scan(tmp_path / "alias")
    assert list(found) == ["a/m.safetensors"] and found["a/m.safetensors"].kind == EntryKind.MODEL


def test_duplicates_under_two_names_are_told_apart_by_inode_and_found_by_hash(tmp_path):
    root = tmp_path / "lib"
    first = write_safetensors(root / "A" / "style.safetensors", "lora", payload_bytes=2048, seed=1)
    os.link(first, root / "A" / "style-hardlink.safetensors")
    (root / "B").mkdir()
    shutil.copy2(first, root / "B" / "style.safetensors")  # the same name in another folder, a copy
    found = _scan(root)
    a, link, copy = (found[p] for p in ("A/style.safetensors", "A/style-hardlink.safetensors", "B/style.safetensors"))
    assert (a.dev, a.inode) == (link.dev, link.inode) != (copy.dev, copy.inode)
    results = hash_files([HashRequest(f.real, key=f.key) for f in (a, link, copy)])
    assert len({r.hashes.sha256 for r in results}) == 1


def test_broken_and_odd_files_are_reasons_on_that_file(tmp_path):
    root = tmp_path / "lib"
    write_bytes(root / "cut.safetensors", truncated(make_safetensors("lora")))
    write_bytes(root / "empty.safetensors", b"")
    write_bytes(root / "big.safetensors", make_safetensors("lora", metadata={"ss_tag_frequency": "x" * 50_000}))
    os.mkfifo(root / "fifo.safetensors")
    write_bytes(root / "orphan.json", b"{}")  # no model of that stem here
    write_bytes(root / "orphan.png", b"not even a png")
    write_bytes(root / ".git" / "objects" / "x.safetensors", make_safetensors("lora"))  # hidden folders: not walked
    write_bytes(root / ".hidden.safetensors", make_safetensors("lora"))  # hidden files: not walked either
    found = _scan(root, max_header_bytes=16 * 1024)
    assert {p: f.skip for p, f in found.items()} == {
        "big.safetensors": SkipReason.HEADER_TOO_LARGE,
        "cut.safetensors": SkipReason.TRUNCATED,
        "empty.safetensors": SkipReason.TRUNCATED,
        "fifo.safetensors": SkipReason.NOT_A_REGULAR_FILE,
        "orphan.json": SkipReason.NOT_A_MODEL,
        "orphan.png": SkipReason.NOT_A_MODEL,
    }
    assert all(f.detail for f in found.values() if f.skip is not None)


def test_unicode_and_undecodable_names(tmp_path):
    root = tmp_path / "lib"
    write_safetensors(root / "キャラ" / "ミク_スタイル.safetensors", "lora", payload_bytes=64)
    write_bytes(root / "キャラ" / "ミク_スタイル.json", b'{"activation text": "miku"}')
    write_safetensors(root / "café" / "naïve 🎨.safetensors", "checkpoint", payload_bytes=64)
    fd = os.open(os.fsencode(root) + b"/bad\xff.safetensors", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, make_safetensors("lora"))
    os.close(fd)
    found = _scan(root)
    assert found["キャラ/ミク_スタイル.safetensors"].kind == EntryKind.MODEL
    assert found["キャラ/ミク_スタイル.json"].sidecar_kind == SidecarKind.A1111
    assert found["café/naïve 🎨.safetensors"].folder == "café"
    bad = [f for f in found.values() if f.skip == SkipReason.UNDECODABLE_NAME]
    assert len(bad) == 1 and bad[0].real is None
    bad[0].path.encode("utf-8")  # what is reported can be stored and sent


def test_a_file_removed_mid_scan_is_vanished_and_the_walk_goes_on(tmp_path):
    root = tmp_path / "lib"
    for name in ("a", "b", "c"):
        write_safetensors(root / f"{name}.safetensors", "lora", payload_bytes=64)
    write_safetensors(root / "z-folder" / "d.safetensors", "lora", payload_bytes=64)
    walk = scan_library(root)
    first = next(walk)
    assert first.path == "a.safetensors"
    (root / "b.safetensors").unlink()
    shutil.rmtree(root / "z-folder")
    rest = {f.path: f.skip for f in walk}
    assert rest == {"b.safetensors": SkipReason.VANISHED, "c.safetensors": None, "z-folder": SkipReason.VANISHED}


def test_depth_is_bounded(tmp_path):
    root = tmp_path / "lib"
    write_safetensors(root / "1" / "2" / "3" / "deep.safetensors", "lora", payload_bytes=64)
    write_safetensors(root / "1" / "ok.safetensors", "lora", payload_bytes=64)
    found = _scan(root, max_depth=2)
    assert found["1/ok.safetensors"].kind == EntryKind.MODEL
    assert found["1/2/3"].skip == SkipReason.TOO_DEEP and "1/2/3/deep.safetensors" not in found


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_an_unreadable_folder_is_a_reason(tmp_path):
    root = tmp_path / "lib"
    write_safetensors(root / "locked" / "m.safetensors", "lora", payload_bytes=64)
    (root / "locked").chmod(0)
    try:
        found = _scan(root)
    finally:
        (root / "locked").chmod(0o755)
    assert found["locked"].skip == SkipReason.UNREADABLE


def test_a_root_that_is_not_a_folder_fails_the_scan(tmp_path):
    with pytest.raises(RootNotUsable):
        list(scan_library(tmp_path / "missing"))
    with pytest.raises(RootNotUsable):
        list(scan_library(write_bytes(tmp_path / "file", b"x")))
