"""Helpers for the library-import building blocks' tests: other tools' folder layouts and sidecars (written
from the formats' documented fields, see interop-formats.md), images, pickles that must never be
unpickled, and a recorder of every file the process opens (Python's audit hook)."""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from devtools.model_files import write_safetensors

# ---------------------------------------------------------------------------- opens, seen by the audit hook

_recorders: list[set[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _recorders and isinstance(args[0], str | bytes | os.PathLike):
        for opened in _recorders:
            opened.add(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(_audit)  # once per process; does nothing unless a recorder is active


@contextmanager
def recorded_opens() -> Iterator[set[str]]:
    """Every path the process opens (open(), os.open(), io.open) while the block runs, made absolute."""
    opened: set[str] = set()
    _recorders.append(opened)
    try:
        yield opened
    finally:
        _recorders.remove(opened)


# ---------------------------------------------------------------------------- hostile files


class _Explodes:
    """Unpickling this creates `marker`: proof that someone unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def exploding_pickle(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": _Explodes(marker)}, protocol=4)


def exploding_torch_zip(marker: Path) -> bytes:
    """The layout torch.save writes (a zip with `archive/data.pkl`), with the exploding pickle inside."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/data.pkl", exploding_pickle(marker))
        archive.writestr("archive/version", "3\n")
    return out.getvalue()


# ---------------------------------------------------------------------------- images


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color: tuple[int, ...] = (200, 40, 40),
                mode: str = "RGB", **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt, **save)
    return out.getvalue()


# ---------------------------------------------------------------------------- sidecars, per the documented fields


def a1111_json(**overrides: Any) -> dict[str, Any]:
    return {"description": "Ink wash style", "sd version": "SDXL", "activation text": "inkwash, monochrome",
            "preferred weight": 0.8, "negative text": "", "notes": "works best at 1024px", **overrides}


def civitai_version(model_id: int = 1234567, version_id: int = 2345678, sha256: str = "ab" * 32,
                    **overrides: Any) -> dict[str, Any]:
    """A trimmed `GET /api/v1/model-versions/{id}` answer (Civitai Helper's `.civitai.info`)."""
    return {
        "id": version_id, "modelId": model_id, "name": "v1.0", "nsfwLevel": 1, "baseModel": "Illustrious",
        "trainedWords": ["wtrclr style", "watercolor"],
        "description": "<p>Trained on 80 images.</p>",
        "model": {"name": "Soft Watercolor Style", "type": "LORA", "nsfw": False, "poi": False},
        "files": [
            {"id": 1, "name": "training.zip", "type": "Training Data", "primary": False,
             "hashes": {"SHA256": "CD" * 32}},
            {"id": 2, "name": "soft_watercolor.safetensors", "type": "Model", "primary": True,
             "hashes": {"AutoV2": sha256[:10].upper(), "SHA256": sha256.upper()}},
        ],
        "images": [{"url": "https://image.civitai.com/x/original=true/1.jpeg", "nsfwLevel": 1, "type": "image"}],
        **overrides,
    }


def cm_info(sha256: str = "ef" * 32, **overrides: Any) -> dict[str, Any]:
    """Stability Matrix's ConnectedModelInfo, PascalCase as .NET writes it."""
    return {
        "ModelId": 111, "ModelName": "Crisp Lines", "ModelDescription": "<p>model</p>", "Nsfw": False,
        "Tags": ["style", "lineart"], "ModelType": "LORA", "VersionId": 222, "VersionName": "v2",
        "VersionDescription": "<p>version two</p>", "AuthorUsername": "someone", "BaseModel": "SDXL 1.0",
        "RemoteFileName": "crisp.safetensors", "RemoteFileId": 333, "FileMetadata": {"format": "SafeTensor"},
        "ImportedAt": "2025-01-02T03:04:05+00:00", "Hashes": {"SHA256": sha256.upper(), "BLAKE3": "00" * 32},
        "TrainedWords": ["crisplines"], "Stats": {"downloadCount": 5}, "UserTitle": None,
        "ThumbnailImageUrl": "https://image.civitai.com/x/2.jpeg", "InferenceDefaults": None, "Source": "Civitai",
        **overrides,
    }


def lora_manager_json(name: str = "glow.safetensors", sha256: str = "12" * 32, **overrides: Any) -> dict[str, Any]:
    """ComfyUI-Lora-Manager's `.metadata.json` (docs/metadata-json-schema.md)."""
    return {
        "file_name": name.rsplit(".", 1)[0], "model_name": "Neon Glow", "file_path": f"/somewhere/{name}",
        "size": 123, "modified": 1700000000.0, "sha256": sha256, "base_model": "Pony",
        "preview_url": "/etc/passwd", "preview_nsfw_level": 2, "notes": "my notes", "from_civitai": True,
        "tags": ["glow", "neon"], "modelDescription": "glowing edges", "civitai_deleted": False, "favorite": True,
        "exclude": False, "usage_tips": json.dumps({"strength": 0.6, "clip_skip": 2}),
        "civitai": {"id": 444, "modelId": 555, "name": "v3", "baseModel": "Pony", "trainedWords": ["neonglow"],
                    "model": {"name": "Neon Glow (CivitAI)", "type": "LORA"}},
        **overrides,
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------- libraries in each tool's layout


def a1111_library(root: Path) -> Path:
    """A1111/Forge: models/Lora (nested), models/Stable-diffusion, with `<stem>.json`, `.civitai.info`, previews."""
    lora = root / "models" / "Lora"
    write_safetensors(lora / "styles" / "ink.safetensors", "lora", payload_bytes=2048, seed=1)
    write_json(lora / "styles" / "ink.json", a1111_json())
    write_bytes(lora / "styles" / "ink.preview.png", image_bytes("PNG"))
    write_safetensors(lora / "watercolor.safetensors", "lora", payload_bytes=2048, seed=2)
    write_json(lora / "watercolor.civitai.info", civitai_version())
    write_bytes(lora / "watercolor.png", image_bytes("PNG"))
    write_safetensors(lora / "LyCORIS" / "soft.safetensors", "loha", payload_bytes=2048, seed=3)
    write_safetensors(root / "models" / "Stable-diffusion" / "dream.safetensors", "checkpoint", payload_bytes=4096)
    write_safetensors(root / "models" / "Stable-diffusion" / "old15.safetensors", "sd15-checkpoint",
                      payload_bytes=4096)
    write_bytes(root / "models" / "Stable-diffusion" / "put checkpoints here.txt", b"")
    return root


def comfyui_library(root: Path) -> Path:
    """ComfyUI: models/loras and models/checkpoints, with ComfyUI-Lora-Manager `.metadata.json` and `.webp`."""
    loras = root / "models" / "loras"
    write_safetensors(loras / "glow.safetensors", "peft", payload_bytes=2048, seed=4)
    write_json(loras / "glow.metadata.json", lora_manager_json())
    write_bytes(loras / "glow.webp", image_bytes("WEBP"))
    write_safetensors(loras / "pony" / "locon.safetensors", "locon", payload_bytes=2048, seed=5)
    write_safetensors(root / "models" / "checkpoints" / "base.safetensors", "checkpoint", payload_bytes=4096, seed=6)
    return root


def stability_matrix_library(root: Path) -> Path:
    """Stability Matrix: Models/Lora and Models/StableDiffusion, with `.cm-info.json` and `.preview.jpeg`."""
    lora = root / "Models" / "Lora"
    write_safetensors(lora / "crisp.safetensors", "lora", payload_bytes=2048, seed=7)
    write_json(lora / "crisp.cm-info.json", cm_info())
    write_bytes(lora / "crisp.preview.jpeg", image_bytes("JPEG"))
    write_safetensors(root / "Models" / "StableDiffusion" / "xl.safetensors", "checkpoint", payload_bytes=4096, seed=8)
    return root


def invokeai_library(root: Path) -> Path:
    """InvokeAI's models folder: plain files by base and type (models/sdxl/lora, models/sdxl/main)."""
    write_safetensors(root / "models" / "sdxl" / "lora" / "invoke-style.safetensors", "lora", payload_bytes=2048,
                      seed=9)
    write_safetensors(root / "models" / "sdxl" / "main" / "invoke-base.safetensors", "checkpoint",
                      payload_bytes=4096, seed=10)
    # payload 0: model_files pads LoRAs with an SDXL-named tensor, which would make it SDXL.
    write_safetensors(root / "models" / "sd-1" / "lora" / "old.safetensors", "kohya-sd15", payload_bytes=0)
    return root
