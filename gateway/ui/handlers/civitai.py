"""CivitAI: fetch a model's info, download it with live progress, list and cancel running downloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from gateway.ui.browser_rendering import civitai_preview_html
from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.rendering import (
    civitai_info_markdown,
    error_html,
    job_html,
    job_state,
    progress_html,
)
from gateway.ui.services import UiServices
from modelmanager.v1 import civitai_pb2

ACTIVE_STATES = (civitai_pb2.DOWNLOAD_STATE_QUEUED, civitai_pb2.DOWNLOAD_STATE_RUNNING,
                 civitai_pb2.DOWNLOAD_STATE_VERIFYING)
# CivitAI itself can be slow: these calls wait for it.
CIVITAI_DEADLINE = 120


def _no_info(message: str) -> tuple[str, str, Any, None]:
    return error_html(message), "", gr.update(interactive=False), None


def _no_jobs(message: str) -> tuple[Any, Any]:
    return gr.update(value=None), gr.update(choices=[], info=message)


class CivitaiHandlers:
    def __init__(self, services: UiServices) -> None:
        self.services = services

    @shows_errors(_no_info)
    async def fetch_info(self, reference: str) -> tuple[str, str, Any, dict[str, Any] | None]:
        """→ (preview markdown, preview image, download button, info state)."""
        reference = (reference or "").strip()
        if not reference:
            raise NeedsInput("Paste a CivitAI URL, a model id or an AIR first.")
        resp = await self.services.unary("civitai", "GetModelInfo",
                                         civitai_pb2.GetModelInfoRequest(reference=reference),
                                         deadline=CIVITAI_DEADLINE)
        info = resp.info
        state = {"reference": reference, "version_id": info.version_id, "name": info.name}
        # The image comes through the gateway's proxy: the page never loads anything from CivitAI itself.
        preview = civitai_preview_html(info, self.services.settings.preview_nsfw_max)
        return civitai_info_markdown(info), preview, gr.update(interactive=info.supported), state

    async def jobs(self, request: civitai_pb2.StartDownloadRequest) -> AsyncIterator[civitai_pb2.DownloadJob]:
        """Start a download and follow it: the job as started, then each state until it ends. The
        callers (this download, the browser's, "Download update") render it and show its errors."""
        started = await self.services.unary("civitai", "StartDownload", request, deadline=CIVITAI_DEADLINE)
        yield started.job
        async for msg in self.services.stream("civitai", "WatchDownload",
                                              civitai_pb2.WatchDownloadRequest(job_id=started.job.id)):
            yield msg.job

    async def progress(self, request: civitai_pb2.StartDownloadRequest) -> AsyncIterator[str]:
        """`jobs` as the progress HTML: "Queued", then the live bar."""
        first = True
        async for job in self.jobs(request):
            yield progress_html(0, f"Queued: {job.name or request.reference}") if first else job_html(job)
            first = False

    @shows_errors(error_html)
    async def download(self, info: dict[str, Any] | None, reference: str) -> AsyncIterator[str]:
        ref = (info or {}).get("reference") or (reference or "").strip()
        if not ref:
            raise NeedsInput("Fetch a model's info first.")
        async for update in self.progress(civitai_pb2.StartDownloadRequest(reference=ref)):
            yield update

    @shows_errors(_no_jobs)
    async def downloads_table(self) -> tuple[Any, Any]:
        resp = await self.services.unary("civitai", "ListDownloads", civitai_pb2.ListDownloadsRequest(page_size=50))
        rows, active = [], []
        for job in resp.jobs:
            pct = f"{job.bytes_done / job.total_bytes * 100:.0f} %" if job.total_bytes else "?"
            rows.append([job.id, job.name or job.reference, job_state(job), pct, job.filename])
            if job.state in ACTIVE_STATES:
                active.append((f"{job.name or job.reference} ({job.id})", job.id))
        return gr.update(value=rows or None), gr.update(choices=active, value=active[0][1] if active else None)

    @shows_errors(error_html)
    async def cancel_download(self, job_id: str | None) -> str:
        if not job_id:
            return "Pick a running download first."
        resp = await self.services.unary("civitai", "CancelDownload", civitai_pb2.CancelDownloadRequest(job_id=job_id))
        return f"Cancelled {resp.job.name or job_id}."
