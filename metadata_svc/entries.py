"""What goes into an entry: a new one (Create, Upload, rescan) from the client's fields and the file's
facts, and an Update's changes to one. Every value is bounded (limits.py) and normalised here."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metadata_svc import limits
from metadata_svc.errors import InvalidUpdateMask
from metadata_svc.models import (
    CHECKPOINT,
    EMBEDDING,
    FileFacts,
    ModelEntry,
    ModelFields,
    NewModel,
    clean_words,
    now_iso,
)

EDITABLE_FIELDS = ("display_name", "short_name", "trigger_words", "recommended_weight", "tags", "description",
                   "base_model", "default_vae", "negative_embedding")
# Fields that mean something for one type only (an Update naming them for another is refused).
FIELD_TYPES = {"default_vae": CHECKPOINT, "negative_embedding": EMBEDDING}


def new_entry(new: NewModel, facts: FileFacts) -> ModelEntry:
    f = new.fields
    # Create and Upload checked already; nothing unbounded gets in by another way.
    limits.check_fields(dataclasses.asdict(f))
    weight = limits.check_weight(f.recommended_weight or 1.0, new.filename)
    words = clean_words(f.trigger_words)
    if new.type == EMBEDDING and not words:
        words = (Path(new.filename).stem,)  # an embedding's trigger word is its token
    return ModelEntry(
        filename=new.filename,
        type=new.type,
        display_name=f.display_name.strip() or Path(new.filename).stem,
        short_name=f.short_name.strip(),
        source=new.source,
        trigger_words=words,
        recommended_weight=weight,
        base_model=f.base_model.strip(),
        tags=clean_words(f.tags),
        description=f.description,
        file_size_bytes=facts.size,
        added_at=now_iso(),
        civitai_model_id=f.civitai_model_id or None,
        civitai_version_id=f.civitai_version_id or None,
        civitai_url=f.civitai_url,
        sha256=facts.sha256,
        inspection=facts.inspection,
        negative_embedding=f.negative_embedding and new.type == EMBEDDING,
    )


def updated(current: ModelEntry, fields: ModelFields, mask: Sequence[str]) -> ModelEntry:
    """`current` with the fields `mask` names taken from `fields` (an empty mask: those set)."""
    paths = list(mask)
    unknown = [p for p in paths if p not in EDITABLE_FIELDS]
    if unknown:
        raise InvalidUpdateMask(
            f"update_mask names fields that cannot be updated: {', '.join(unknown)}; "
            f"editable: {', '.join(EDITABLE_FIELDS)}",
            metadata={"fields": ",".join(unknown)},
        )
    if not paths:
        paths = [name for name in EDITABLE_FIELDS if fields.is_set(name)
                 and FIELD_TYPES.get(name, current.type) == current.type]
    wrong = [p for p in paths if FIELD_TYPES.get(p, current.type) != current.type]
    if wrong:
        raise InvalidUpdateMask(
            f"{current.filename} is a {current.type}: " + ", ".join(
                f"{p} applies to {FIELD_TYPES[p]}s only" for p in wrong),
            metadata={"fields": ",".join(wrong)},
        )
    limits.check_fields({name: getattr(fields, name) for name in paths})
    changes: dict[str, Any] = {}
    for name in paths:
        value = getattr(fields, name)
        if name in ("trigger_words", "tags"):
            changes[name] = clean_words(value)
        elif name == "recommended_weight":
            changes[name] = limits.check_weight(float(value) if value else 1.0, current.filename)
        elif name == "display_name":
            changes[name] = value.strip() or Path(current.filename).stem
        elif name == "negative_embedding":
            changes[name] = bool(value)
        else:
            changes[name] = value.strip() if name != "description" else value
    # The user's own values from now on: an identification or a refresh from CivitAI leaves them alone.
    edited = tuple(dict.fromkeys([*current.user_edited_fields, *paths]))
    if edited != current.user_edited_fields:
        changes["user_edited_fields"] = edited
    return dataclasses.replace(current, **changes)
