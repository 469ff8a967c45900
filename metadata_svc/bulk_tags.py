"""Tags added to and removed from a selection of entries in one change: all checked first, then put
together and made durable by one index write (undone together when it fails)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from metadata_svc import limits
from metadata_svc.catalog import Catalog
from metadata_svc.errors import MissingTags, TooManyItems
from metadata_svc.models import ModelEntry, clean_words

MAX_FILENAMES = 1_000


def check_request(filenames: Sequence[str], add: Sequence[str], remove: Sequence[str]) -> None:
    if len(filenames) > MAX_FILENAMES:
        raise TooManyItems(f"{len(filenames)} filenames, at most {MAX_FILENAMES} in one call",
                           metadata={"field": "filenames", "limit": MAX_FILENAMES, "count": len(filenames)})
    if not clean_words(add) and not clean_words(remove):
        raise MissingTags("name at least one tag to add or remove", metadata={})
    limits.check_fields({"tags": list(add)})
    limits.check_fields({"tags": list(remove)})


def retagged(entry: ModelEntry, add: Sequence[str], remove: Sequence[str]) -> ModelEntry:
    gone = {t.strip().lower() for t in remove}
    tags = clean_words([*(t for t in entry.tags if t.lower() not in gone), *add])
    if tags == entry.tags:
        return entry
    limits.check_fields({"tags": tags})  # an entry may not grow past the limit
    edited = tuple(dict.fromkeys([*entry.user_edited_fields, "tags"]))
    return dataclasses.replace(entry, tags=tags, user_edited_fields=edited)


async def update_tags(catalog: Catalog, get_for_change: Callable[[str], ModelEntry], filenames: Sequence[str],
                      add: Sequence[str], remove: Sequence[str]) -> list[ModelEntry]:
    check_request(filenames, add, remove)
    current = [get_for_change(name) for name in filenames]  # every name found before anything changes
    changed: dict[str, tuple[ModelEntry, ModelEntry]] = {}
    for entry in current:
        base = changed[entry.filename][1] if entry.filename in changed else entry
        new = retagged(base, add, remove)
        if new is not base:
            changed[entry.filename] = (entry, new)
    for _, new in changed.values():
        catalog.put(new)  # no await since the gets: nothing else changed these entries meanwhile

    def undo() -> None:
        for old, new in changed.values():
            catalog.restore(old.filename, new, old)

    if changed:
        await catalog.commit(undo)
    return [changed[e.filename][1] if e.filename in changed else e for e in current]
