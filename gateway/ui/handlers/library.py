"""Issue 12 in the UI: "Import a folder" with live progress and its summary, the library roots, and
"Refresh from CivitAI" for chosen models.

The folder is a path on the registry's machine; the registry decides whether it may be read (its
--library-allow folders) and says why not. An import outlives the page: closing the tab stops the
watch, not the job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from gateway.errors import ApiError
from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.library_rendering import import_ended, import_html, import_progress_html, root_row
from gateway.ui.rendering import error_html, ok_html
from gateway.ui.services import UiServices
from modelmanager.v1 import model_pb2, registry_pb2

IMPORT_MODES = {"in place": registry_pb2.IMPORT_MODE_IN_PLACE, "hard link": registry_pb2.IMPORT_MODE_LINK,
                "copy": registry_pb2.IMPORT_MODE_COPY}
MAX_PATH_CHARS = 4096
MAX_REFRESH = 1000  # RefreshFromCivitai's own limit (TOO_MANY_ITEMS above)
REFRESH_DEADLINE = 600.0  # 1,000 files are 10 by-hash calls to CivitAI, each maybe retried
ImportUpdate = tuple[str, str]  # (progress/summary html, job id)


def error_metadata(exc: ApiError, key: str) -> str:
    for detail in exc.details:
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str((detail.get("metadata") or {}).get(key, ""))
    return ""


class LibraryHandlers:
    def __init__(self, services: UiServices) -> None:
        self.services = services

    # ------------------------------------------------------------ import

    @shows_errors(lambda message: (error_html(message), ""))
    async def start_import(self, path: str, mode: str, identify: bool, write_back: bool) -> AsyncIterator[ImportUpdate]:
        path = (path or "").strip()
        if not path:
            raise NeedsInput("Give the folder to import: its absolute path on the registry's machine.")
        if len(path) > MAX_PATH_CHARS:
            raise NeedsInput(f"A folder path is at most {MAX_PATH_CHARS} characters.")
        if mode not in IMPORT_MODES:
            raise NeedsInput("Choose how to import: in place, hard link or copy.")
        req = registry_pb2.StartImportRequest(path=path, mode=IMPORT_MODES[mode], no_identify=not identify,
                                              write_back=bool(write_back))
        try:
            job = (await self.services.unary("registry", "StartImport", req)).job
        except ApiError as exc:
            running = error_metadata(exc, "job_id") if exc.reason == "IMPORT_IN_PROGRESS" else ""
            if not running:
                raise
            # That folder is being imported already: follow the running job instead.
            job = (await self.services.unary("registry", "GetImport", registry_pb2.GetImportRequest(id=running))).job
        async for update in self._follow(job):
            yield update

    async def _follow(self, job: registry_pb2.ImportJob) -> AsyncIterator[ImportUpdate]:
        yield import_progress_html(job), job.id
        async for msg in self.services.stream("registry", "WatchImport", registry_pb2.WatchImportRequest(id=job.id)):
            job = msg.job
            yield import_html(job), job.id
        if not import_ended(job):  # the stream ended early (the registry restarting): say where it stood
            job = (await self.services.unary("registry", "GetImport", registry_pb2.GetImportRequest(id=job.id))).job
            yield import_html(job), job.id

    @shows_errors(error_html)
    async def cancel_import(self, job_id: str) -> str:
        if not job_id:
            return "No import is running from this page."
        job = (await self.services.unary("registry", "CancelImport", registry_pb2.CancelImportRequest(id=job_id))).job
        return ok_html(f"Cancel asked for import {job.id} (now {registry_pb2.ImportState.Name(job.state)}).")

    # ------------------------------------------------------------ roots

    @shows_errors(lambda message: (gr.update(value=None), gr.update(choices=[], value=None), error_html(message)))
    async def roots(self) -> tuple[Any, Any, str]:
        resp = await self.services.unary("registry", "ListLibraryRoots", registry_pb2.ListLibraryRootsRequest())
        rows = [root_row(r) for r in resp.roots]
        choices = [(f"{r.path} ({r.id})", r.id) for r in resp.roots]
        return (gr.update(value=rows or None), gr.update(choices=choices, value=None),
                f"{len(rows)} library root(s)")

    @shows_errors(error_html)
    async def remove_root(self, root_id: str) -> str:
        if not root_id:
            raise NeedsInput("Choose a library root to remove.")
        resp = await self.services.unary("registry", "RemoveLibraryRoot", registry_pb2.RemoveLibraryRootRequest(id=root_id))
        return ok_html(f"Removed {resp.root.path} and its {resp.removed_models} entr(ies) from the index; "
                       "its files are untouched.")

    # ------------------------------------------------------------ refresh from CivitAI

    @shows_errors(error_html)
    async def refresh_from_civitai(self, filenames: list[str], force: bool) -> str:
        names = list(dict.fromkeys(f for f in filenames or [] if f))
        if not names:
            raise NeedsInput("Select a model first.")
        if len(names) > MAX_REFRESH:
            raise NeedsInput(f"Refresh at most {MAX_REFRESH} models at once; narrow the filter.")
        req = registry_pb2.RefreshFromCivitaiRequest(filenames=names, force=bool(force))
        resp = await self.services.unary("registry", "RefreshFromCivitai", req, deadline=REFRESH_DEADLINE)
        states = [m.civitai_lookup.state for m in resp.models]
        found = states.count(model_pb2.CIVITAI_LOOKUP_STATE_FOUND)
        unknown = states.count(model_pb2.CIVITAI_LOOKUP_STATE_NOT_FOUND)
        failed = states.count(model_pb2.CIVITAI_LOOKUP_STATE_FAILED)
        return ok_html(f"Refreshed {len(resp.models)} model(s) from CivitAI: {found} found, {unknown} not on CivitAI"
                       + (f", {failed} failed" if failed else "") + ".")
