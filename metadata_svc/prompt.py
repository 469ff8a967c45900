"""Trigger-word injection: the one implementation every service uses through ComposePrompt, so a prompt
comes out the same from the UI, the API and inference.

Rules: a selected LoRA's trigger words that are not already in the prompt
are prepended, in LoRA order then word order, each at most once. "Already
in the prompt" is case-insensitive and matches whole words or phrases, so a
trigger "art" is not taken as present in "party".
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def contains_phrase(text: str, phrase: str) -> bool:
    """Case-insensitive: `phrase` occurs in `text` not glued to other word characters."""
    pattern = r"(?<!\w)" + re.escape(phrase) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def compose(prompt: str, trigger_word_lists: Iterable[Iterable[str]]) -> tuple[str, list[str]]:
    """(final prompt, injected words in order)."""
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
