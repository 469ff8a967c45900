"""Every installed model as the UI last listed it, shared by all sessions of the gateway.

The lists that need every entry (the gallery's filter choices, the table, the checkpoint and LoRA
lists, the embeddings/VAEs/upscalers to pick from) are computed from one listing, fetched once per
change instead of once per page load (2,000 models are a few ListModels pages each time).

It is dropped by whatever may change the installed models: a UI call that is not a read (see
`changes_models`), the events after which build_blocks refreshes the lists, the Refresh buttons, and a
count that no longer matches (a model installed or deleted elsewhere, e.g. from the CLI, seen in a
first page's total_size).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from modelmanager.v1 import model_pb2

# The UI's calls that never install, edit or remove a model.
READS = {
    "registry": {"ListModels", "GetModel", "GetActiveCheckpoint", "SetActiveCheckpoint", "ComposePrompt",
                 "ListLibraryRoots", "ListDuplicates", "GetDiskUsage", "GetImport", "ListImports", "GetPreview"},
    "civitai": {"GetModelInfo", "SearchModels", "ListDownloads", "CancelDownload", "CheckUpdates", "IgnoreUpdate",
                "UnignoreUpdate"},
}
READ_ONLY_SERVICES = {"inference"}


def changes_models(service: str, method_name: str) -> bool:
    return service not in READ_ONLY_SERVICES and method_name not in READS.get(service, set())


class ModelListing:
    """The last full listing (ListModels' order), fetched by `fetch` when there is none."""

    def __init__(self, fetch: Callable[[], Awaitable[list[model_pb2.Model]]]) -> None:
        self._fetch = fetch
        self._models: list[model_pb2.Model] | None = None
        self._generation = 0  # bumped by each invalidate: a fetch that overlapped one is not kept
        self._lock = asyncio.Lock()  # concurrent page loads share one fetch

    async def all(self) -> list[model_pb2.Model]:
        models = self._models
        if models is not None:
            return models
        async with self._lock:
            if self._models is not None:
                return self._models
            generation = self._generation
            models = await self._fetch()
            if generation == self._generation:
                self._models = models
            return models

    async def of_type(self, model_type: int) -> list[model_pb2.Model]:
        """Those of one type (0: all), in ListModels' order, as a ListModels with that type gives them."""
        models = await self.all()
        return list(models) if not model_type else [m for m in models if m.type == model_type]

    def invalidate(self) -> None:
        self._generation += 1
        self._models = None

    def note_total(self, total: int) -> None:
        """The registry's count of every model (an unfiltered ListModels' total_size) as just seen."""
        if self._models is not None and len(self._models) != total:
            self.invalidate()


__all__ = ["ModelListing", "changes_models"]
