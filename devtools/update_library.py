"""A library of many installed CivitAI models for update checks (tests/civitai_svc/test_updates.py, bench_updates).

Registering thousands of models through CreateModel would take minutes; as bench_registry does, the
registry's index is written directly before the registry starts (every file a hard link to one small
LoRA), and the fake CivitAI learns each model by hash alone (no bytes, no previews). Every
`updated_every`-th model gets a newer version on the fake, so a check has something to find.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devtools.fake_civitai import FakeCivitai


@dataclass(frozen=True)
class Installed:
    filename: str
    model_id: int
    version_id: int
    # The newer version on the fake, 0 when the installed one is the latest.
    latest_version_id: int


def seed_library(user_models: Path, fake: FakeCivitai, count: int, *, updated_every: int = 3) -> list[Installed]:
    """`count` CivitAI LoRAs in the (not yet started) registry's index on `user_models`, known to `fake`."""
    from devtools.model_files import write_safetensors
    from metadata_svc.index_store import render
    from metadata_svc.inspection import inspect_file
    from metadata_svc.models import ModelEntry, now_iso
    from service_kit.config import DEFAULT_CHECKPOINT
    from service_kit.files import sha256_of

    loras = user_models / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    template = write_safetensors(user_models / ".template-lora.safetensors", "lora", 0)
    found, digest, size = inspect_file(template), sha256_of(template), template.stat().st_size
    added = now_iso()
    installed, lines = [], []
    for i in range(count):
        known = fake.register_hash(f"{i + 1:064x}", name=f"Update Check LoRA {i}", trained_words=[f"uc{i}"],
                                   previews=())
        latest = 0
        if updated_every and i % updated_every == 0:
            latest = fake.register_hash(f"{count + i + 1:064x}", model_id=known.model_id, version_name="v2.0",
                                        base_model="NoobAI", previews=()).version_id
        name = f"update_check_{i:05d}.safetensors"
        os.link(template, loras / name)
        entry = ModelEntry(
            filename=name, type="lora", display_name=f"Update Check LoRA {i}", source="civitai",
            trigger_words=(f"uc{i}",), base_model="Illustrious", file_size_bytes=size, added_at=added,
            civitai_model_id=known.model_id, civitai_version_id=known.version_id,
            civitai_url=f"https://civitai.com/models/{known.model_id}?modelVersionId={known.version_id}",
            sha256=digest, inspection=found,
        )
        lines.append(entry.json_line())
        installed.append(Installed(name, known.model_id, known.version_id, latest))
    template.unlink()
    (user_models / ".metadata.json").write_bytes(render(DEFAULT_CHECKPOINT, lines))
    return installed
