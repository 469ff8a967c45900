"""What every UI handler holds: the gateway's ServiceClients, its settings and the UI's uploaded files.

Handlers call the services over the gateway's own gRPC clients, never HTTP to this process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.ui.guard import UploadedFiles, upload_root
from gateway.ui.model_listing import ModelListing, changes_models
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit.logs import new_request_id, request_id_var
from service_kit.peer import paged

# The UI's "Show" choices (and the upload's type) as the registry's model types.
TYPE_FILTER = {"All": model_pb2.MODEL_TYPE_UNSPECIFIED, "LoRAs": model_pb2.MODEL_TYPE_LORA,
               "Checkpoints": model_pb2.MODEL_TYPE_CHECKPOINT, "Embeddings": model_pb2.MODEL_TYPE_EMBEDDING,
               "VAEs": model_pb2.MODEL_TYPE_VAE, "Upscalers": model_pb2.MODEL_TYPE_UPSCALER}
LIST_PAGE_SIZE = 1000


class UiServices:
    """The ServiceClients (looked up at each call: the app makes them in its lifespan, after the UI
    is built), the settings and the record of who uploaded which file."""

    def __init__(self, get_clients: Callable[[], ServiceClients], settings: GatewaySettings,
                 uploads: UploadedFiles | None = None) -> None:
        self._get_clients = get_clients
        self.settings = settings
        self.uploads = uploads or UploadedFiles(upload_root())
        self.listing = ModelListing(self._list_all)

    @classmethod
    def of_app(cls, app: FastAPI, settings: GatewaySettings) -> UiServices:
        return cls(lambda: app.state.clients, settings)

    @property
    def clients(self) -> ServiceClients:
        # Each UI event gets a request id (in its own task's context) that travels to the services.
        if request_id_var.get() is None:
            request_id_var.set(new_request_id())
        return self._get_clients()

    async def unary(self, service: str, method_name: str, request: Any, deadline: float | None = None) -> Any:
        """One call of `service`'s `method_name`; a failure raises ApiError."""
        clients = self.clients
        if not changes_models(service, method_name):
            return await clients.unary(service, getattr(getattr(clients, service), method_name), request,
                                       deadline=deadline)
        # Dropped before (no page load caches the old list meanwhile) and after (what it changed is seen).
        self.listing.invalidate()
        try:
            return await clients.unary(service, getattr(getattr(clients, service), method_name), request,
                                       deadline=deadline)
        finally:
            self.listing.invalidate()

    def stream(self, service: str, method_name: str, request: Any) -> AsyncIterator[Any]:
        """The messages of one server-streaming call; a failure raises ApiError; leaving early cancels it."""
        clients = self.clients
        if changes_models(service, method_name):  # a download or an import: its end is an event's .then
            self.listing.invalidate()
        return clients.stream(service, getattr(getattr(clients, service), method_name)(request))

    async def list_models(self, type_filter: str = "All", query: str = "") -> list[model_pb2.Model]:
        """Every installed model of that type matching `query`, all pages (without a query: from the
        listing kept between changes)."""
        if not (query or "").strip():
            return await self.listing.of_type(TYPE_FILTER.get(type_filter, 0))
        return await self.list_from_registry(type_filter, query)

    async def _list_all(self) -> list[model_pb2.Model]:
        return await self.list_from_registry("All", "")

    async def list_from_registry(self, type_filter: str = "All", query: str = "") -> list[model_pb2.Model]:
        request = registry_pb2.ListModelsRequest(page_size=LIST_PAGE_SIZE, type=TYPE_FILTER.get(type_filter, 0),
                                                 query=query or "")
        pages = paged(lambda page: self.unary("registry", "ListModels", page), request, "models")
        return [model async for model in pages]
