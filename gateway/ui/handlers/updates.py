"""Updates: "Check for updates" over the whole library (CheckUpdates, in bulk), "Download update" (the new
version with the user's edits carried over, the old one kept or deleted), "Ignore this version".

The last check's answer is kept here (`KnownUpdates`, one per gateway: the library is shared), so the
gallery's cards carry its badges and its "update available" filter without asking CivitAI again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from gateway.ui.browser_rendering import UPDATE_HEADERS, update_badges_html, update_row
from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.handlers.civitai import CivitaiHandlers
from gateway.ui.rendering import error_html, job_html, ok_html
from modelmanager.v1 import civitai_pb2

# 2,000 models are 20 CivitAI calls, one at a time, each possibly retried after a 429.
CHECK_DEADLINE = 300


class KnownUpdates:
    """The last CheckUpdates answer, by registry filename."""

    def __init__(self) -> None:
        self.by_filename: dict[str, civitai_pb2.ModelUpdate] = {}

    def replace(self, updates: list[civitai_pb2.ModelUpdate]) -> None:
        self.by_filename = {u.filename: u for u in updates}

    def available(self, filename: str) -> bool:
        """An update to show: checked, newer, not ignored (early access included, marked)."""
        u = self.by_filename.get(filename)
        return u is not None and u.checked and u.update_available and not u.ignored

    def badges(self) -> dict[str, str]:
        return {f: html for f, u in self.by_filename.items() if (html := update_badges_html(u))}


def _failed(message: str) -> tuple[Any, Any, str]:
    return gr.update(), gr.update(), error_html(message)


class UpdateHandlers:
    def __init__(self, civitai: CivitaiHandlers, known: KnownUpdates) -> None:
        self.civitai = civitai
        self.services = civitai.services
        self.known = known

    def _table(self, keep: str = "") -> tuple[Any, Any]:
        updates = sorted(self.known.by_filename.values(), key=lambda u: (not self.known.available(u.filename),
                                                                        u.filename.casefold()))
        rows = [update_row(u) for u in updates if u.update_available or not u.checked]
        choices = [u.filename for u in updates if u.checked and u.update_available]
        value = keep if keep in choices else next((f for f in choices if self.known.available(f)), None)
        return (gr.update(value=rows or None, headers=UPDATE_HEADERS),
                gr.update(choices=choices, value=value))

    async def table(self) -> tuple[Any, Any]:
        """The table and picker as the last check (and what was done since) left them."""
        return self._table()

    @shows_errors(_failed)
    async def check(self) -> tuple[Any, Any, str]:
        """→ (updates table, the update picker, status)."""
        resp = await self.services.unary("civitai", "CheckUpdates", civitai_pb2.CheckUpdatesRequest(),
                                         deadline=CHECK_DEADLINE)
        self.known.replace(list(resp.updates))
        updates = list(resp.updates)
        shown = [u for u in updates if u.checked and u.update_available]
        early = sum(u.early_access and not u.ignored for u in shown)
        ignored = sum(u.ignored for u in shown)
        unchecked = sum(not u.checked for u in updates)
        status = (f"{len(updates)} CivitAI model(s) checked: {len(shown) - ignored} update(s) available"
                  + (f" ({early} in early access)" if early else "") + (f", {ignored} ignored" if ignored else "")
                  + (f"; CivitAI did not answer for {unchecked}" if unchecked else "") + ".")
        return (*self._table(), ok_html(status) if not unchecked else error_html(status))

    def _update(self, filename: str | None) -> civitai_pb2.ModelUpdate:
        u = self.known.by_filename.get(filename or "")
        if u is None or not u.update_available:
            raise NeedsInput("Check for updates, then pick a model with an update.")
        return u

    @shows_errors(error_html)
    async def download_update(self, filename: str | None, delete_old: bool) -> AsyncIterator[str]:
        """The latest version, replacing `filename`: its edits carried over, the old entry deleted if asked."""
        u = self._update(filename)
        request = civitai_pb2.StartDownloadRequest(
            reference=f"https://civitai.com/models/{u.model_id}?modelVersionId={u.latest_version_id}",
            replaces=u.filename, delete_replaced=bool(delete_old))
        last = None
        async for job in self.civitai.jobs(request):
            last = job
            yield job_html(job)
        if last is None or last.state != civitai_pb2.DOWNLOAD_STATE_SUCCEEDED:
            return
        self.known.by_filename.pop(u.filename, None)  # the new version is the latest; the old one is handled
        done = [f"{u.filename} updated to {u.latest_version_name or u.latest_version_id}: "
                f"{last.filename or last.model.filename}"]
        if last.carried_fields:
            done.append(f"your edits carried over ({', '.join(last.carried_fields)})")
        done.append("the old version was deleted" if last.replaced_deleted else "the old version is kept")
        yield job_html(last) + ok_html("; ".join(done) + ".") + (error_html(last.replace_note)
                                                                  if last.replace_note else "")

    @shows_errors(_failed)
    async def ignore(self, filename: str | None) -> tuple[Any, Any, str]:
        u = self._update(filename)
        await self.services.unary("civitai", "IgnoreUpdate", civitai_pb2.IgnoreUpdateRequest(
            model_id=u.model_id, version_id=u.latest_version_id))
        u.ignored = True
        return (*self._table(u.filename),
                ok_html(f"{u.latest_version_name or u.latest_version_id} of {u.filename} is ignored until a newer "
                        "version comes."))

    @shows_errors(_failed)
    async def unignore(self, filename: str | None) -> tuple[Any, Any, str]:
        u = self._update(filename)
        await self.services.unary("civitai", "UnignoreUpdate", civitai_pb2.UnignoreUpdateRequest(
            model_id=u.model_id, version_id=u.latest_version_id))
        u.ignored = False
        return (*self._table(u.filename), ok_html(f"The update of {u.filename} shows again."))


__all__ = ["KnownUpdates", "UpdateHandlers"]
