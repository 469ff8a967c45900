"""Bounds on what a client may store in an entry (documented in model.proto and registry.proto).

The whole index is rewritten on every change and a ListModels page carries whole entries, so one
unbounded field (a 35 MB description) made `.metadata.json` huge and every page too big to send.
`check_fields` refuses over-limit input (Create, Update, Upload's header); `clip_entry` bounds
entries stored before the limits existed; `clip_model` lets a client (the CivitAI installer) fit
metadata it does not control. Lengths are in characters (a UTF-8 character is at most 4 bytes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from metadata_svc.errors import FieldTooLong, InvalidWeight, TooManyItems
from metadata_svc.inspection import MAX_METADATA_KEYS, MAX_METADATA_VALUE_CHARS
from metadata_svc.models import ModelEntry, ModelFields
from modelmanager.v1 import model_pb2

# Characters per text field.
MAX_CHARS = {
    "display_name": 256,
    "short_name": 128,
    "base_model": 128,
    "description": 65_536,  # CivitAI's HTML descriptions run to tens of kB
    "civitai_url": 2_048,
    "sha256": 64,
}
# Items per list, and characters per item.
MAX_ITEMS = {"trigger_words": 200, "tags": 100}
MAX_ITEM_CHARS = {"trigger_words": 500, "tags": 100}
# Every field above that a client sets; the rest of an entry is computed by the registry.
CLIENT_FIELDS = (*MAX_CHARS, *MAX_ITEMS)
# ListModels' free-text query: its terms go into every page token of the listing.
MAX_QUERY_CHARS = 1_024
# A LoRA's weight, recommended or chosen in ComposePrompt.
MAX_ABS_WEIGHT = 10.0


def check_fields(fields: Mapping[str, Any]) -> None:
    """Refuse (INVALID_ARGUMENT) the first value over its limit; fields without a limit pass."""
    for name, value in fields.items():
        if name in MAX_CHARS:
            _check_chars(name, str(value), MAX_CHARS[name])
        elif name in MAX_ITEMS:
            items = list(value)
            if len(items) > MAX_ITEMS[name]:
                raise TooManyItems(f"{name}: {len(items)} items, at most {MAX_ITEMS[name]} are allowed",
                                   metadata={"field": name, "limit": MAX_ITEMS[name], "count": len(items)})
            for item in items:
                _check_chars(name, str(item), MAX_ITEM_CHARS[name], each=True)


def check_model_fields(fields: ModelFields, *, sha256: str = "") -> None:
    """`check_fields` over a model's client fields (and Create's claimed sha256), in CLIENT_FIELDS order."""
    values = {**dataclasses.asdict(fields), "sha256": sha256}
    check_fields({name: values[name] for name in CLIENT_FIELDS})


def check_weight(weight: float, what: str) -> float:
    if not math.isfinite(weight) or abs(weight) > MAX_ABS_WEIGHT:
        raise InvalidWeight(f"{what}: weight {weight} is not a finite number within ±{MAX_ABS_WEIGHT}",
                            metadata={"weight": weight})
    return weight


def check_query(query: str, base_model: str) -> None:
    """ListModels' filters: no longer than anything they could match."""
    _check_chars("query", query, MAX_QUERY_CHARS)
    _check_chars("base_model", base_model, MAX_CHARS["base_model"])


def fields_of(message: model_pb2.Model | Any) -> dict[str, Any]:
    """The client-settable fields of a Model or an UploadModelHeader (which lacks sha256)."""
    return {name: getattr(message, name) for name in CLIENT_FIELDS if hasattr(message, name)}


def clip_text(name: str, value: str) -> str:
    return value[:MAX_CHARS[name]]


def clip_items(name: str, items: Iterable[str]) -> list[str]:
    limit = MAX_ITEM_CHARS[name]
    return [item for item in items if len(item) <= limit][:MAX_ITEMS[name]]


def clip_model(model: model_pb2.Model) -> None:
    """Fit `model` in place: long texts are cut, over-long list items dropped, lists capped."""
    for name in MAX_CHARS:
        setattr(model, name, clip_text(name, getattr(model, name)))
    for name in MAX_ITEMS:
        kept = clip_items(name, getattr(model, name))
        del getattr(model, name)[:]
        getattr(model, name).extend(kept)


def clip_entry(entry: ModelEntry) -> ModelEntry:
    """`entry` itself when within the limits, else a bounded copy (for entries stored before them)."""
    changes: dict[str, Any] = {}
    for name in MAX_CHARS:
        value = getattr(entry, name)
        if len(value) > MAX_CHARS[name]:
            changes[name] = clip_text(name, value)
    for name in MAX_ITEMS:
        items = getattr(entry, name)
        kept = tuple(clip_items(name, items))
        if kept != items:
            changes[name] = kept
    found = entry.inspection
    if found is not None and (len(found.header_metadata) > MAX_METADATA_KEYS or any(
            len(k) > MAX_METADATA_VALUE_CHARS or len(v) > MAX_METADATA_VALUE_CHARS
            for k, v in found.header_metadata.items())):
        short = {k: v for k, v in found.header_metadata.items()
                 if len(k) <= MAX_METADATA_VALUE_CHARS and len(v) <= MAX_METADATA_VALUE_CHARS}
        changes["inspection"] = dataclasses.replace(found, header_metadata=dict(list(short.items())[:MAX_METADATA_KEYS]))
    return dataclasses.replace(entry, **changes) if changes else entry


def _check_chars(name: str, value: str, limit: int, *, each: bool = False) -> None:
    if len(value) > limit:
        what = f"an item of {name}" if each else name
        raise FieldTooLong(f"{what} is {len(value)} characters long, at most {limit} are allowed",
                           metadata={"field": name, "limit": limit, "length": len(value)})
