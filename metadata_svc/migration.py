"""Bring the old app's volume into the new layout, idempotently, at every start (users upgrade in place).

- Model files lying at the volume root move into `loras/` (the old app kept its LoRAs there).
- The old app's two built-in LoRAs get their entries when their files exist and have none.
"""

from __future__ import annotations

import os
from pathlib import Path

from metadata_svc import inspection as insp
from metadata_svc.errors import InvalidSafetensors
from metadata_svc.filenames import looks_like_model_file
from metadata_svc.index_store import IndexState
from metadata_svc.models import FOLDER_OF_TYPE, LORA, Inspection, ModelEntry, now_iso
from service_kit import get_logger
from service_kit.files import fsync_dir, real_path, resolves_inside

log = get_logger("metadata_svc.migration")

BUILTIN_LORAS: tuple[dict[str, object], ...] = (
    {
        "filename": "lora_929497.safetensors",
        "display_name": "Aesthetic Quality Modifiers - Masterpiece",
        "short_name": "Aesthetic Quality",
        "civitai_model_id": 929497,
        "civitai_version_id": 2247497,
        "civitai_url": "https://civitai.com/models/929497",
        "trigger_words": ("masterpiece", "best quality", "very aesthetic"),
        "recommended_weight": 1.0,
    },
    {
        "filename": "lora_1231943.safetensors",
        "display_name": "Detailer IL",
        "short_name": "Detailer IL",
        "civitai_model_id": 1231943,
        "civitai_url": "https://civitai.com/models/1231943",
        "trigger_words": ("Jeddtl02",),
        "recommended_weight": 1.0,
    },
)


def builtin_spec(filename: str) -> dict[str, object] | None:
    return next((spec for spec in BUILTIN_LORAS if spec["filename"] == filename), None)


def builtin_entry(path: Path, spec: dict[str, object]) -> ModelEntry:
    """The entry of one of the old app's built-in LoRAs, whose file is at `path` (in `loras/`)."""
    try:
        found = insp.inspect_file(path)
    except InvalidSafetensors:
        found = Inspection()  # seeded anyway: the old app shipped and used these files
    return ModelEntry(
        filename=path.name,
        type=LORA,
        display_name=str(spec["display_name"]),
        short_name=str(spec["short_name"]),
        source="builtin",
        trigger_words=tuple(spec["trigger_words"]),  # type: ignore[arg-type]
        recommended_weight=float(spec["recommended_weight"]),  # type: ignore[arg-type]
        base_model="Illustrious",
        file_size_bytes=path.stat().st_size,
        added_at=now_iso(),
        civitai_model_id=spec.get("civitai_model_id"),  # type: ignore[arg-type]
        civitai_version_id=spec.get("civitai_version_id"),  # type: ignore[arg-type]
        civitai_url=str(spec.get("civitai_url", "")),
        inspection=found,
    )


def migrate(root: Path, state: IndexState) -> list[str]:
    """Apply the migration to the volume and to `state`; returns what it did (empty when nothing)."""
    done: list[str] = []
    loras = root / "loras"
    for folder in (loras, root / "checkpoints"):
        folder.mkdir(parents=True, exist_ok=True)
    moved = False
    for path in sorted(root.iterdir()):
        if not (path.is_file() and looks_like_model_file(path.name)):
            continue
        known = state.models.get(path.name)
        # A file the index already knows goes to its type's folder; anything else was the old app's LoRA.
        target = root / FOLDER_OF_TYPE[known.type] / path.name if known is not None else loras / path.name
        if target.exists():
            # Never overwrite: a file of that name is in loras/ already; leave both for the operator.
            log.warning("migration.conflict", file=str(path), existing=str(target))
            continue
        os.rename(path, target)  # same volume: atomic
        moved = True
        done.append(f"moved {path.name} into {target.parent.name}/")
    if moved:
        fsync_dir(loras)
        fsync_dir(root / "checkpoints")
        fsync_dir(root)
    for spec in BUILTIN_LORAS:
        filename = str(spec["filename"])
        path = loras / filename
        if filename in state.models or not path.is_file():
            continue
        if not resolves_inside(path, real_path(root)):  # a link out of the volume is never read
            log.warning("migration.outside_volume", path=str(path))
            continue
        state.models[filename] = builtin_entry(path, spec)
        done.append(f"seeded built-in LoRA {filename}")
    for line in done:
        log.info("migration.step", step=line)
    return done
