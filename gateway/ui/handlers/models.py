"""Installed models: the filtered table (TABLE_PAGE_SIZE rows a page), a model's details (edit, delete)
and uploading a model file."""

from __future__ import annotations

import asyncio
import html
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.rendering import error_html, model_facts, ok_html
from gateway.ui.services import UiServices
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit.display import human_size, type_name

TABLE_PAGE_SIZE = 100
TABLE_HEADERS = ["filename", "name", "type", "base model", "trigger words", "weight", "size", "source"]
UPLOAD_CHUNK = 1024 * 1024
EDITABLE = ["display_name", "trigger_words", "recommended_weight", "tags"]
# The upload's type choice.
UPLOAD_TYPES = {"LoRA": model_pb2.MODEL_TYPE_LORA, "Checkpoint": model_pb2.MODEL_TYPE_CHECKPOINT,
                "Embedding": model_pb2.MODEL_TYPE_EMBEDDING, "VAE": model_pb2.MODEL_TYPE_VAE,
                "Upscaler": model_pb2.MODEL_TYPE_UPSCALER}
# The details' default-VAE choice meaning "none: the checkpoint's own".
OWN_VAE = "(the checkpoint's own)"
# The details form, empty: (filename, display name, trigger words, weight, tags, facts).
NO_DETAILS = ("", "", "", 1.0, "", "")


def split_words(text: str) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


def table_row(m: model_pb2.Model) -> list[Any]:
    return [m.filename, m.display_name, type_name(m.type), m.base_model, ", ".join(m.trigger_words),
            round(m.recommended_weight, 2), human_size(m.file_size_bytes),
            model_pb2.ModelSource.Name(m.source).removeprefix("MODEL_SOURCE_").lower()]


def ask_delete(filename: str) -> tuple[Any, str]:
    """Show the confirmation row for the selected model."""
    if not filename:
        return gr.update(visible=False), ""
    return gr.update(visible=True), f"Delete **{html.escape(filename)}** and its file? This cannot be undone."


class ModelHandlers:
    def __init__(self, services: UiServices) -> None:
        self.services = services

    @shows_errors(lambda message: ([], error_html(message), 1))
    async def table_page(self, type_filter: str, query: str, page: float | None = 1) -> tuple[list[list[Any]], str, int]:
        """One page of rows (2,000 rows at once were seconds of rendering), the status and the page number."""
        models = await self.services.list_models(type_filter, query)
        pages = max(1, math.ceil(len(models) / TABLE_PAGE_SIZE))
        number = min(max(1, int(page) if page is not None and math.isfinite(page) else 1), pages)
        first = (number - 1) * TABLE_PAGE_SIZE
        rows = [table_row(m) for m in models[first:first + TABLE_PAGE_SIZE]]
        return rows, f"{len(models)} model(s)" + (f" · page {number} of {pages}" if pages > 1 else ""), number

    async def models_table(self, type_filter: str, query: str, page: float | None = 1) -> tuple[list[list[Any]], str]:
        rows, status, _ = await self.table_page(type_filter, query, page)
        return rows, status

    async def refresh_models(self, type_filter: str, query: str) -> tuple[Any, str]:
        rows, status = await self.models_table(type_filter, query)
        return gr.update(value=rows or None), status

    async def show_table(self, type_filter: str, query: str, page: float | None = 1) -> tuple[Any, str, int]:
        rows, status, number = await self.table_page(type_filter, query, page)
        return gr.update(value=rows or None), status, number

    async def reload_table(self, type_filter: str, query: str) -> tuple[Any, str, int]:
        """The Refresh button: a fresh listing (models may have come from elsewhere, e.g. the CLI)."""
        self.services.listing.invalidate()
        return await self.show_table(type_filter, query, 1)

    # ------------------------------------------------------------ details / edit / delete

    async def select_model(self, evt: gr.SelectData) -> tuple[Any, ...]:
        # The event carries its row: the table itself is not sent back (thousands of rows would be
        # megabytes per click, over the UI's body bound).
        try:
            filename = evt.row_value[0]
        except (TypeError, IndexError):
            return (*NO_DETAILS, "Select a row of the table.")
        return await self.load_details(filename)

    @shows_errors(lambda message: (*NO_DETAILS, error_html(message)))
    async def load_details(self, filename: str) -> tuple[Any, ...]:
        m = (await self.services.unary("registry", "GetModel", registry_pb2.GetModelRequest(filename=filename))).model
        return (m.filename, m.display_name, ", ".join(m.trigger_words), m.recommended_weight or 1.0,
                ", ".join(m.tags), model_facts(m), "")

    # Hidden unless the selected model is of their type: nothing to show when the registry cannot say.
    @shows_errors(lambda _message: (gr.update(visible=False), gr.update(visible=False)))
    async def type_details(self, filename: str) -> tuple[Any, Any]:
        """The fields of one type: a checkpoint's default VAE (the VAEs installed to choose from), an
        embedding's negative flag."""
        hidden = gr.update(visible=False)
        if not filename:
            return hidden, hidden
        m = (await self.services.unary("registry", "GetModel", registry_pb2.GetModelRequest(filename=filename))).model
        if m.type == model_pb2.MODEL_TYPE_CHECKPOINT:
            vaes = [v.filename for v in await self.services.list_models("VAEs", "")]
            return gr.update(visible=True, choices=[OWN_VAE, *vaes], value=m.default_vae or OWN_VAE), hidden
        if m.type == model_pb2.MODEL_TYPE_EMBEDDING:
            return hidden, gr.update(visible=True, value=m.negative_embedding,
                                     info=f"token: {m.embedding_token}" if m.embedding_token else None)
        return hidden, hidden

    @shows_errors(error_html)
    async def save_details(self, filename: str, display_name: str, triggers: str, weight: float,
                           tags: str, default_vae: str | None = None, negative: bool | None = None) -> str:
        """`default_vae` and `negative` are saved only for the type they belong to (the registry refuses
        them for another)."""
        if not filename:
            return "Select a model in the table first."
        model = model_pb2.Model(filename=filename, display_name=display_name.strip(),
                                trigger_words=split_words(triggers), recommended_weight=float(weight),
                                tags=split_words(tags))
        req = registry_pb2.UpdateModelRequest(model=model)
        req.update_mask.paths.extend(EDITABLE)
        if default_vae is not None or negative is not None:
            kind = (await self.services.unary("registry", "GetModel",
                                              registry_pb2.GetModelRequest(filename=filename))).model.type
            if kind == model_pb2.MODEL_TYPE_CHECKPOINT and default_vae is not None:
                req.model.default_vae = "" if default_vae in ("", OWN_VAE) else default_vae
                req.update_mask.paths.append("default_vae")
            if kind == model_pb2.MODEL_TYPE_EMBEDDING and negative is not None:
                req.model.negative_embedding = bool(negative)
                req.update_mask.paths.append("negative_embedding")
        await self.services.unary("registry", "UpdateModel", req)
        return ok_html(f"Saved {filename}.")

    @shows_errors(error_html)
    async def delete_model(self, filename: str) -> str:
        if not filename:
            return "Select a model in the table first."
        await self.services.unary("registry", "DeleteModel", registry_pb2.DeleteModelRequest(filename=filename))
        return ok_html(f"Deleted {filename}.")

    # ------------------------------------------------------------ upload

    @shows_errors(error_html)
    async def upload(self, file: str | None, kind: str, display_name: str, triggers: str) -> str:
        uploads = self.services.uploads
        if not file:
            raise NeedsInput("Choose a file to upload.")
        if not uploads.is_upload(file):  # UiGuard let it through, so this is a bug, not a client
            raise NeedsInput("Upload the file again.")
        path = Path(file)
        header = registry_pb2.UploadModelHeader(
            filename=path.name, type=UPLOAD_TYPES.get(kind, model_pb2.MODEL_TYPE_LORA),
            display_name=display_name.strip(), trigger_words=split_words(triggers),
            total_size_bytes=(await asyncio.to_thread(path.stat)).st_size,
            # Installed only on the final commit: a call cancelled mid-file (tab closed) installs nothing.
            require_commit=True,
        )

        async def requests() -> AsyncIterator[registry_pb2.UploadModelRequest]:
            yield registry_pb2.UploadModelRequest(header=header)
            fh = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(fh.read, UPLOAD_CHUNK):
                    yield registry_pb2.UploadModelRequest(chunk=chunk)
            finally:
                fh.close()
            yield registry_pb2.UploadModelRequest(commit=registry_pb2.UploadModelCommit())

        try:
            resp = await self.services.unary("registry", "UploadModel", requests(), deadline=24 * 3600)
        finally:
            # A model file is large and now lives on the volume (or was refused): free the UI's copy.
            await asyncio.to_thread(uploads.release, file)
        return ok_html(f"Uploaded {resp.model.filename} ({human_size(resp.model.file_size_bytes)}).")
