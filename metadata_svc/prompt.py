"""ComposePrompt: LoRAs found by name, their weights checked, their trigger words injected.

This is the one implementation every service uses through ComposePrompt, so a prompt comes out
the same from the UI, the API and inference.

A LoRA is named by its filename (the entry's key), a library file's `folder/file_name`, its file stem
(A1111's `<lora:stem:w>`), its display name or its short name, most specific first (see addressing.py). Trigger-word injection: a selected LoRA's trigger words that are
not already in the prompt are prepended, in LoRA order then word order, each at most once.
"Already in the prompt" is case-insensitive and matches whole words or phrases, so a trigger
"art" is not taken as present in "party".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from metadata_svc.addressing import by_rel_path
from metadata_svc.catalog import Catalog
from metadata_svc.errors import AmbiguousLora, DuplicateLora, FileMissing, LoraNotFound, NotALora
from metadata_svc.limits import check_weight
from metadata_svc.models import LORA, ComposedPrompt, ModelEntry, ResolvedLora
from metadata_svc.volume import Volume


def resolve_lora(catalog: Catalog, name: str) -> ModelEntry:
    wanted = name.strip()
    lowered = wanted.lower()
    entry = catalog.get(wanted)
    if entry is None:
        entries = catalog.entries()
        # Most specific first: filename, then its stem (A1111's `<lora:stem:w>`), then the names.
        by_file = [e for e in entries if e.filename.lower() == lowered] or by_rel_path(catalog, wanted)
        by_stem = by_file or [e for e in entries if Path(e.filename).stem.lower() == lowered]
        candidates = by_stem or [e for e in entries if lowered in (e.display_name.lower(), e.short_name.lower())]
        loras = [e for e in candidates if e.type == LORA] or candidates
        if not loras:
            raise LoraNotFound(f"no LoRA named {name!r} (by filename, file stem, display name or short name)",
                               metadata={"lora": name})
        if len(loras) > 1:
            names = ", ".join(sorted(e.filename for e in loras))
            raise AmbiguousLora(f"{name!r} names several LoRAs ({names}); use the filename",
                                metadata={"lora": name, "filenames": names})
        entry = loras[0]
    if entry.type != LORA:
        raise NotALora(f"{entry.filename} is a {entry.type}, not a LoRA", metadata={"lora": name})
    return entry


def compose_prompt(catalog: Catalog, volume: Volume, prompt: str,
                   selections: Sequence[tuple[str, float | None]]) -> ComposedPrompt:
    """`selections`: (LoRA name, weight; None for its recommended weight), in the order given."""
    resolved: list[ResolvedLora] = []
    seen: set[str] = set()
    for name, weight in selections:
        entry = resolve_lora(catalog, name)
        if entry.filename in seen:
            raise DuplicateLora(f"LoRA {entry.filename} is selected twice", metadata={"lora": entry.filename})
        seen.add(entry.filename)
        path = volume.path_of(entry)
        if not path.is_file():
            raise FileMissing(f"the file of LoRA {entry.filename} is gone from {volume.relative(path.parent)}/",
                              metadata={"lora": entry.filename, "path": volume.relative(path)})
        volume.check_on_volume(path)
        chosen = entry.recommended_weight if weight is None else check_weight(weight, entry.filename)
        resolved.append(ResolvedLora(entry, path, chosen))
    final, injected = compose(prompt, (lora.entry.trigger_words for lora in resolved))
    return ComposedPrompt(final, injected, resolved)


def contains_phrase(text: str, phrase: str) -> bool:
    """Case-insensitive: `phrase` occurs in `text` not glued to other word characters."""
    pattern = r"(?<!\w)" + re.escape(phrase) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def compose(prompt: str, trigger_word_lists: Iterable[Iterable[str]]) -> tuple[str, list[str]]:
    """Trigger-word injection: (final prompt, injected words in order)."""
    injected: list[str] = []
    seen: set[str] = set()
    for words in trigger_word_lists:
        for word in words:
            word = word.strip()
            key = word.lower()
            if not word or key in seen:
                continue
            seen.add(key)
            if not contains_phrase(prompt, word):
                injected.append(word)
    stripped = prompt.strip()
    final = ", ".join([*injected, stripped] if stripped else injected) if injected else prompt
    return final, injected
