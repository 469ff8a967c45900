"""The web UI: Gradio Blocks mounted in the gateway at "/".

Tabs: Model Manager (CivitAI fetch + download with live progress, running
downloads, installed models with filter/search/details/delete, active
checkpoint with live load progress, upload), Generate and Upscale (LoRA rows
built from the registry, live prompt preview from ComposePrompt, progress,
result). Handlers call the gateway's own gRPC clients (`app.state.clients`),
never HTTP to this process. Errors show as readable text, never tracebacks.
"""

from __future__ import annotations

import asyncio
import html
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
import grpc
from fastapi import FastAPI
from PIL import Image

from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.errors import ApiError
from gateway.security import key_matches
from gateway.text import human_size, type_name
from gateway.ui_guard import UiGuard, UploadedFiles, upload_root
from modelmanager.v1 import civitai_pb2, inference_pb2, model_pb2, registry_pb2
from service_kit.config import DEFAULT_CHECKPOINT
from service_kit.logs import new_request_id, request_id_var

UPLOAD_CHUNK = 1024 * 1024
# A file given to the UI: an fp32 SDXL checkpoint with EMA weights is ~13 GB (the API takes up to
# max_upload_bytes, streamed without a copy; the UI keeps a copy in its cache until it is sent).
UI_MAX_FILE_BYTES = 16 * 1024**3
TABLE_HEADERS = ["filename", "name", "type", "base model", "trigger words", "weight", "size", "source"]
TYPE_FILTER = {"All": model_pb2.MODEL_TYPE_UNSPECIFIED, "LoRAs": model_pb2.MODEL_TYPE_LORA,
               "Checkpoints": model_pb2.MODEL_TYPE_CHECKPOINT}

CSS = """
.mm-progress {background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden;margin:4px 0}
.mm-progress > div {background:#2563eb;height:100%;transition:width .2s}
.mm-error {color:#b91c1c;font-weight:600}
.mm-ok {color:#15803d;font-weight:600}
.mm-warn {background:#fef3c7;border-left:4px solid #d97706;padding:6px 10px;border-radius:4px}
"""


# ---------------------------------------------------------------- helpers


def describe_error(exc: BaseException) -> str:
    """One readable line for any failure a handler meets."""
    if isinstance(exc, ApiError):
        reason = exc.reason
        return f"{exc.message}" + (f" ({reason})" if reason else "")
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.details() or exc.code().name} ({exc.code().name})"
    return f"{type(exc).__name__}: {exc}"


def error_html(text: str) -> str:
    return f'<p class="mm-error">⚠ {html.escape(text)}</p>'


def progress_html(fraction: float | None, text: str) -> str:
    pct = 0.0 if fraction is None else max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="mm-progress"><div style="width:{pct:.1f}%"></div></div>'
            f"<div>{html.escape(text)}</div>")


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md_text(text: str) -> str:
    """Text from CivitAI or a client, shown literally inside Markdown: no HTML, no links, no emphasis."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text or "", quote=False))


def md_code(words: list[str] | tuple[str, ...]) -> str:
    """Words as escaped inline code ('—' when none); a backtick in a word cannot end the span."""
    return ", ".join(f"<code>{html.escape(w)}</code>" for w in words) or "—"


def md_link(label: str, url: str) -> str:
    """A link only to an https URL (never javascript: or data:), its label and target escaped."""
    if not url.startswith("https://"):
        return ""
    return f'<a href="{html.escape(url)}" target="_blank" rel="noopener noreferrer">{html.escape(label)}</a>'


def split_words(text: str) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


class Ui:
    """The handlers; `clients` is looked up at call time (made in the app's lifespan)."""

    def __init__(self, app: FastAPI, settings: GatewaySettings) -> None:
        self.app = app
        self.settings = settings
        self.uploads = UploadedFiles(upload_root())

    @property
    def clients(self) -> ServiceClients:
        # Each UI event gets a request id (in its own task's context) that travels to the services.
        if request_id_var.get() is None:
            request_id_var.set(new_request_id())
        return self.app.state.clients

    async def unary(self, service: str, method_name: str, request: Any, deadline: float | None = None) -> Any:
        stub = getattr(self.clients, service)
        return await self.clients.unary(service, getattr(stub, method_name), request, deadline=deadline)

    # ------------------------------------------------------------ models

    async def list_models(self, type_filter: str = "All", query: str = "") -> list[model_pb2.Model]:
        out: list[model_pb2.Model] = []
        token = ""
        while True:
            req = registry_pb2.ListModelsRequest(page_size=1000, page_token=token,
                                                 type=TYPE_FILTER.get(type_filter, 0), query=query or "")
            resp = await self.unary("registry", "ListModels", req)
            out.extend(resp.models)
            token = resp.next_page_token
            if not token:
                return out

    async def models_table(self, type_filter: str, query: str) -> tuple[list[list[Any]], str]:
        try:
            models = await self.list_models(type_filter, query)
        except ApiError as exc:
            return [], error_html(describe_error(exc))
        rows = [
            [m.filename, m.display_name, type_name(m.type), m.base_model, ", ".join(m.trigger_words),
             round(m.recommended_weight, 2), human_size(m.file_size_bytes),
             model_pb2.ModelSource.Name(m.source).removeprefix("MODEL_SOURCE_").lower()]
            for m in models
        ]
        return rows, f"{len(rows)} model(s)"

    async def refresh_models(self, type_filter: str, query: str) -> tuple[Any, str]:
        rows, status = await self.models_table(type_filter, query)
        return gr.update(value=rows or None), status

    async def checkpoint_choices(self) -> tuple[list[str], str]:
        try:
            checkpoints = await self.list_models("Checkpoints", "")
            active = await self.unary("registry", "GetActiveCheckpoint", registry_pb2.GetActiveCheckpointRequest())
        except ApiError:
            return [DEFAULT_CHECKPOINT], DEFAULT_CHECKPOINT
        return [DEFAULT_CHECKPOINT, *(m.filename for m in checkpoints)], active.checkpoint or DEFAULT_CHECKPOINT

    async def refresh_checkpoints(self) -> tuple[Any, str]:
        choices, active = await self.checkpoint_choices()
        return gr.update(choices=choices, value=active), f"Active checkpoint: **{active}**"

    # ------------------------------------------------------------ civitai

    async def fetch_info(self, reference: str) -> tuple[str, Any, Any, dict[str, Any] | None]:
        """→ (preview markdown, preview image, download button, info state)."""
        if not (reference or "").strip():
            return error_html("Paste a CivitAI URL, a model id or an AIR first."), "", gr.update(interactive=False), None
        try:
            resp = await self.unary("civitai", "GetModelInfo", civitai_pb2.GetModelInfoRequest(reference=reference.strip()),
                                    deadline=120)
        except ApiError as exc:
            return error_html(describe_error(exc)), "", gr.update(interactive=False), None
        info = resp.info
        url = next((i.url for i in info.images if i.type in ("", "image")), None)
        # The browser loads the preview from CivitAI's image host itself (nothing proxied here).
        image = (f'<img src="{html.escape(url)}" alt="preview image" referrerpolicy="no-referrer" '
                 'style="max-height:220px;max-width:100%;border-radius:6px" '
                 "onerror=\"this.replaceWith('(preview image unavailable)')\">") if url else "(no preview image)"
        size = info.file.size_bytes
        lines = [
            f"### {md_text(info.name)}" + (f" — {md_text(info.version_name)}" if info.version_name else ""),
            f"**Type:** {md_text(info.civitai_type)} ({type_name(info.model_type)})  ",
            f"**Base model:** {md_text(info.base_model) or '?'}  ",
            f"**Trigger words:** {md_code(info.trigger_words) if info.trigger_words else '(none)'}  ",
            f"**File:** {md_text(info.file.name)} · {human_size(size)}  ",
            f"**Recommended weight:** {info.recommended_weight:g}  ",
            md_link("Open on CivitAI", info.civitai_url),
        ]
        if not info.supported:
            lines.append(f'\n<p class="mm-error">This type ({html.escape(info.civitai_type)}) cannot be installed: '
                         "only LoRA, LoCon, DoRA and Checkpoint.</p>")
        if info.installed_filename:
            lines.append(f'\n<p class="mm-ok">Already installed as {html.escape(info.installed_filename)}.</p>')
        state = {"reference": reference.strip(), "version_id": info.version_id, "name": info.name}
        return "\n".join(lines), image, gr.update(interactive=info.supported), state

    async def download(self, info: dict[str, Any] | None, reference: str) -> AsyncIterator[str]:
        ref = (info or {}).get("reference") or (reference or "").strip()
        if not ref:
            yield error_html("Fetch a model's info first.")
            return
        try:
            started = await self.unary("civitai", "StartDownload", civitai_pb2.StartDownloadRequest(reference=ref),
                                       deadline=120)
            yield progress_html(0, f"Queued: {started.job.name or ref}")
            call = self.clients.civitai.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=started.job.id))
            async for msg in self.clients.stream("civitai", call):
                yield self.job_html(msg.job)
        except ApiError as exc:
            yield error_html(describe_error(exc))

    @staticmethod
    def job_html(job: civitai_pb2.DownloadJob) -> str:
        state = civitai_pb2.DownloadState.Name(job.state).removeprefix("DOWNLOAD_STATE_").lower()
        name = job.name or job.reference
        if job.state == civitai_pb2.DOWNLOAD_STATE_SUCCEEDED:
            what = "already installed" if job.already_installed else "installed"
            return progress_html(1, f"✓ {name}: {what} as {job.filename or job.model.filename}")
        if job.state == civitai_pb2.DOWNLOAD_STATE_FAILED:
            return error_html(f"{name}: download failed: {job.error.message or 'unknown error'}")
        if job.state == civitai_pb2.DOWNLOAD_STATE_CANCELLED:
            return error_html(f"{name}: cancelled")
        fraction = job.bytes_done / job.total_bytes if job.total_bytes else None
        text = f"{name}: {state} — {human_size(job.bytes_done)}"
        if job.total_bytes:
            text += f" of {human_size(job.total_bytes)} ({fraction * 100:.0f} %)"
        if job.bytes_per_second:
            text += f" · {human_size(job.bytes_per_second)}/s"
        if job.eta_seconds > 0:
            text += f" · {job.eta_seconds:.0f} s left"
        return progress_html(fraction, text)

    async def downloads_table(self) -> tuple[Any, Any]:
        try:
            resp = await self.unary("civitai", "ListDownloads", civitai_pb2.ListDownloadsRequest(page_size=50))
        except ApiError as exc:
            return gr.update(value=None), gr.update(choices=[], info=describe_error(exc))
        rows, active = [], []
        for job in resp.jobs:
            state = civitai_pb2.DownloadState.Name(job.state).removeprefix("DOWNLOAD_STATE_").lower()
            pct = f"{job.bytes_done / job.total_bytes * 100:.0f} %" if job.total_bytes else "?"
            rows.append([job.id, job.name or job.reference, state, pct, job.filename])
            if job.state in (civitai_pb2.DOWNLOAD_STATE_QUEUED, civitai_pb2.DOWNLOAD_STATE_RUNNING,
                             civitai_pb2.DOWNLOAD_STATE_VERIFYING):
                active.append((f"{job.name or job.reference} ({job.id})", job.id))
        return gr.update(value=rows or None), gr.update(choices=active, value=active[0][1] if active else None)

    async def cancel_download(self, job_id: str | None) -> str:
        if not job_id:
            return "Pick a running download first."
        try:
            resp = await self.unary("civitai", "CancelDownload", civitai_pb2.CancelDownloadRequest(job_id=job_id))
        except ApiError as exc:
            return error_html(describe_error(exc))
        return f"Cancelled {resp.job.name or job_id}."

    # ------------------------------------------------------------ details / edit / delete

    async def select_model(self, evt: gr.SelectData) -> tuple[Any, ...]:
        # The event carries its row: the table itself is not sent back (thousands of rows would be
        # megabytes per click, over the UI's body bound).
        try:
            filename = evt.row_value[0]
        except (TypeError, IndexError):
            return ("", "", "", 1.0, "", "", "Select a row of the table.")
        return await self.load_details(filename)

    async def load_details(self, filename: str) -> tuple[Any, ...]:
        try:
            resp = await self.unary("registry", "GetModel", registry_pb2.GetModelRequest(filename=filename))
        except ApiError as exc:
            return ("", "", "", 1.0, "", "", error_html(describe_error(exc)))
        m = resp.model
        facts = (f"**{md_text(m.filename)}** · {type_name(m.type)} · {md_text(m.base_model) or '?'} · "
                 f"{human_size(m.file_size_bytes)} · sha256 {md_code([m.sha256[:12]])}…"
                 + (f" · {md_link('CivitAI', m.civitai_url)}" if m.civitai_url else ""))
        return (m.filename, m.display_name, ", ".join(m.trigger_words), m.recommended_weight or 1.0,
                ", ".join(m.tags), facts, "")

    async def save_details(self, filename: str, display_name: str, triggers: str, weight: float,
                           tags: str) -> str:
        if not filename:
            return "Select a model in the table first."
        model = model_pb2.Model(filename=filename, display_name=display_name.strip(),
                                trigger_words=split_words(triggers), recommended_weight=float(weight),
                                tags=split_words(tags))
        mask = ["display_name", "trigger_words", "recommended_weight", "tags"]
        req = registry_pb2.UpdateModelRequest(model=model)
        req.update_mask.paths.extend(mask)
        try:
            await self.unary("registry", "UpdateModel", req)
        except ApiError as exc:
            return error_html(describe_error(exc))
        return f'<p class="mm-ok">Saved {html.escape(filename)}.</p>'

    async def delete_model(self, filename: str) -> str:
        if not filename:
            return "Select a model in the table first."
        try:
            await self.unary("registry", "DeleteModel", registry_pb2.DeleteModelRequest(filename=filename))
        except ApiError as exc:
            return error_html(describe_error(exc))
        return f'<p class="mm-ok">Deleted {html.escape(filename)}.</p>'

    # ------------------------------------------------------------ active checkpoint

    async def set_active(self, checkpoint: str) -> AsyncIterator[str]:
        if not checkpoint:
            yield "Pick a checkpoint."
            return
        try:
            await self.unary("registry", "SetActiveCheckpoint",
                             registry_pb2.SetActiveCheckpointRequest(checkpoint=checkpoint))
            yield progress_html(0, f"Active checkpoint set to {checkpoint}; loading it on the inference service…")
            call = self.clients.inference.LoadCheckpoint(inference_pb2.LoadCheckpointRequest(checkpoint=checkpoint))
            async for msg in self.clients.stream("inference", call):
                kind = msg.WhichOneof("event")
                if kind == "queued":
                    yield progress_html(0, f"Waiting for the GPU (position {msg.queued.position})…")
                elif kind == "progress":
                    yield progress_html(msg.progress.fraction, f"Loading {checkpoint}: {msg.progress.stage}")
                elif kind == "result":
                    r = msg.result
                    yield progress_html(1, f"✓ {r.checkpoint} loaded in {r.load_seconds:.1f} s (from {r.loaded_from}, "
                                           f"{human_size(r.size_bytes)})")
        except ApiError as exc:
            yield error_html(describe_error(exc))

    # ------------------------------------------------------------ upload

    async def upload(self, file: str | None, kind: str, display_name: str, triggers: str) -> str:
        if not file:
            return error_html("Choose a file to upload.")
        if not self.uploads.is_upload(file):  # UiGuard let it through, so this is a bug, not a client
            return error_html("Upload the file again.")
        path = Path(file)
        header = registry_pb2.UploadModelHeader(
            filename=path.name, type=TYPE_FILTER["LoRAs" if kind == "LoRA" else "Checkpoints"],
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
            resp = await self.clients.unary("registry", self.clients.registry.UploadModel, requests(), deadline=24 * 3600)
        except ApiError as exc:
            return error_html(describe_error(exc))
        finally:
            # A model file is large and now lives on the volume (or was refused): free the UI's copy.
            await asyncio.to_thread(self.uploads.release, file)
        return f'<p class="mm-ok">Uploaded {html.escape(resp.model.filename)} ({human_size(resp.model.file_size_bytes)}).</p>'

    # ------------------------------------------------------------ LoRAs / prompt

    async def loras(self) -> list[dict[str, Any]]:
        try:
            models = await self.list_models("LoRAs", "")
        except ApiError:
            return []
        return [{"filename": m.filename, "name": m.display_name or m.filename,
                 "weight": m.recommended_weight or 1.0, "triggers": list(m.trigger_words)} for m in models]

    @staticmethod
    def selections(selected: dict[str, float] | None) -> list[model_pb2.LoraSelection]:
        return [model_pb2.LoraSelection(name=name, weight=float(w)) for name, w in (selected or {}).items()]

    async def preview(self, prompt: str, selected: dict[str, float] | None) -> str:
        req = registry_pb2.ComposePromptRequest(prompt=prompt or "", loras=self.selections(selected))
        try:
            resp = await self.unary("registry", "ComposePrompt", req)
        except ApiError as exc:
            return error_html(describe_error(exc))
        added = ", ".join(resp.injected_trigger_words)
        return (f"**Final prompt:** {html.escape(resp.prompt) or '(empty)'}"
                + (f"  \n<small>added trigger words: {html.escape(added)}</small>" if added else ""))

    async def run_job(self, kind: str, request: Any) -> AsyncIterator[tuple[str, Any, str]]:
        """Shared by Generate and Upscale: yields (progress html, image, info markdown)."""
        method = self.clients.inference.Generate if kind == "generate" else self.clients.inference.Upscale
        try:
            async for msg in self.clients.stream("inference", method(request)):
                event = msg.WhichOneof("event")
                if event == "queued":
                    text = "Starting…" if msg.queued.position == 0 else f"Queued (position {msg.queued.position})"
                    yield progress_html(0, text), gr.update(), ""
                elif event == "progress":
                    p = msg.progress
                    if p.total_tiles:
                        frac = ((p.tile - 1) + (p.step / p.total_steps if p.total_steps else 0)) / p.total_tiles
                        text = f"{p.stage}: tile {p.tile}/{p.total_tiles}, step {p.step}/{p.total_steps}"
                    else:
                        frac = p.step / p.total_steps if p.total_steps else None
                        text = f"{p.stage}: step {p.step}/{p.total_steps}" if p.total_steps else p.stage
                    yield progress_html(frac, text), gr.update(), ""
                elif event == "result":
                    r = msg.result
                    image = Image.open(io.BytesIO(r.png))
                    info = (f"**Seed** {r.seed} · **{r.width}×{r.height}** · checkpoint `{r.checkpoint}` · "
                            f"{r.timings.total_seconds:.1f} s  \n**Final prompt:** {html.escape(r.final_prompt)}")
                    yield progress_html(1, "Done"), image, info
        except ApiError as exc:
            yield error_html(describe_error(exc)), gr.update(), ""

    async def generate(self, prompt: str, negative: str, selected: dict[str, float] | None, width: float,
                       height: float, steps: float, guidance: float, seed: float, scheduler: str
                       ) -> AsyncIterator[tuple[str, Any, str]]:
        req = inference_pb2.GenerateRequest(prompt=prompt or "", negative_prompt=negative or "",
                                            loras=self.selections(selected), width=int(width), height=int(height),
                                            steps=int(steps), guidance_scale=float(guidance),
                                            scheduler=scheduler if scheduler and scheduler != "default" else "")
        if seed is not None and int(seed) >= 0:
            req.seed = int(seed)
        async for out in self.run_job("generate", req):
            yield out

    async def upscale(self, image_path: str | None, prompt: str, negative: str, selected: dict[str, float] | None,
                      scale: float, strength: float, steps: float, tile: float, seed: float
                      ) -> AsyncIterator[tuple[str, Any, str]]:
        if not image_path:
            yield error_html("Choose an image to upscale."), gr.update(), ""
            return
        req = inference_pb2.UpscaleRequest(image=await asyncio.to_thread(Path(image_path).read_bytes), prompt=prompt or "",
                                           negative_prompt=negative or "", loras=self.selections(selected),
                                           scale_factor=float(scale), strength=float(strength), steps=int(steps),
                                           tile_size=int(tile))
        if seed is not None and int(seed) >= 0:
            req.seed = int(seed)
        async for out in self.run_job("upscale", req):
            yield out

    async def schedulers(self) -> Any:
        try:
            resp = await self.unary("inference", "ListSchedulers", inference_pb2.ListSchedulersRequest())
            return gr.update(choices=["default", *resp.schedulers])
        except ApiError:
            return gr.update(choices=["default"])


# ---------------------------------------------------------------- layout


def lora_panel(ui: Ui, prefix: str) -> tuple[gr.State, gr.State, gr.Button]:
    """LoRA rows (checkbox, weight slider, trigger words) built from the registry; returns
    (all LoRAs state, selection state {filename: weight}, refresh button)."""
    loras_state = gr.State([])
    selected = gr.State({})
    with gr.Row():
        gr.Markdown("#### LoRAs")
        refresh = gr.Button("↻ Refresh LoRAs", size="sm", scale=0, elem_id=f"{prefix}-lora-refresh")

    # Rows are re-built only when the LoRA list changes; keyed components keep their values.
    @gr.render(inputs=[loras_state], triggers=[loras_state.change])
    def rows(loras: list[dict[str, Any]]) -> None:
        sel: dict[str, float] = {}
        if not loras:
            gr.Markdown("_No LoRAs installed yet: download or upload one in the Model Manager tab._")
            return
        for lora in loras:
            fn = lora["filename"]
            with gr.Row(equal_height=True):
                box = gr.Checkbox(label=lora["name"], value=fn in sel, scale=2, key=f"{prefix}-cb-{fn}",
                                  elem_classes=["mm-lora-check"])
                # interactive: Gradio does not infer it for components made inside gr.render (the slider
                # came out disabled).
                slider = gr.Slider(0, 2, value=sel.get(fn, lora["weight"]), step=0.05, label="weight", scale=2,
                                   key=f"{prefix}-w-{fn}", interactive=True)
                gr.Markdown("triggers: " + md_code(lora["triggers"]),
                            key=f"{prefix}-t-{fn}")

            def update(enabled: bool, weight: float, current: dict[str, float], fn: str = fn) -> dict[str, float]:
                current = dict(current or {})
                if enabled:
                    current[fn] = float(weight)
                else:
                    current.pop(fn, None)
                return current

            box.input(update, [box, slider, selected], selected)
            slider.change(update, [box, slider, selected], selected, trigger_mode="always_last",
                          show_progress="hidden")

    def prune(loras: list[dict[str, Any]], current: dict[str, float]) -> dict[str, float]:
        names = {lora["filename"] for lora in loras or []}
        return {k: v for k, v in (current or {}).items() if k in names}

    loras_state.change(prune, [loras_state, selected], selected)

    return loras_state, selected, refresh


def build_blocks(ui: Ui) -> gr.Blocks:
    # analytics_enabled=False: no version check or telemetry leaves the machine. delete_cache: uploads
    # and outputs older than an hour are removed every ten minutes (and all of them at shutdown).
    with gr.Blocks(title="Model Manager", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Model Manager\nSDXL LoRAs and checkpoints: install from CivitAI, manage, generate. "
                    "API docs at [/docs](/docs).")
        with gr.Tabs():
            # ------------------------------------------------ Model Manager
            with gr.Tab("Model Manager", id="manager"):
                with gr.Accordion("Download from CivitAI", open=True):
                    with gr.Row():
                        reference = gr.Textbox(label="CivitAI URL, model id or AIR", scale=4,
                                               placeholder="https://civitai.com/models/929497?modelVersionId=2247497",
                                               elem_id="civitai-ref")
                        fetch = gr.Button("Fetch Info", variant="secondary", scale=1, elem_id="fetch-info")
                    info_state = gr.State(None)
                    with gr.Row():
                        preview_img = gr.HTML(elem_id="civitai-image")
                        preview_md = gr.Markdown("_Paste a link and press Fetch Info._", elem_id="civitai-preview")
                    download_btn = gr.Button("Download", variant="primary", interactive=False, elem_id="download")
                    download_status = gr.HTML(elem_id="download-status")
                    with gr.Accordion("Running downloads", open=False):
                        jobs_table = gr.Dataframe(headers=["job", "name", "state", "progress", "file"],
                                                  interactive=False, elem_id="jobs-table")
                        with gr.Row():
                            job_pick = gr.Dropdown(label="Running job", choices=[], scale=3)
                            jobs_refresh = gr.Button("Refresh", scale=1)
                            job_cancel = gr.Button("Cancel download", variant="stop", scale=1)
                        job_msg = gr.Markdown()

                gr.Markdown("### Installed models")
                with gr.Row():
                    type_filter = gr.Radio(["All", "LoRAs", "Checkpoints"], value="All", label="Show", scale=2)
                    search = gr.Textbox(label="Search", placeholder="name, tag, trigger word…", scale=3,
                                        elem_id="model-search")
                    refresh_btn = gr.Button("Refresh", scale=1, elem_id="models-refresh")
                models_status = gr.Markdown()
                table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True, elem_id="models-table",
                                     column_widths=["22%", "20%", "9%", "10%", "17%", "7%", "8%", "7%"])

                with gr.Accordion("Details (select a row above)", open=True):
                    selected_fn = gr.Textbox(label="Filename", interactive=False, elem_id="detail-filename")
                    facts = gr.Markdown()
                    with gr.Row():
                        d_name = gr.Textbox(label="Display name", elem_id="detail-name")
                        d_triggers = gr.Textbox(label="Trigger words (comma-separated)", elem_id="detail-triggers")
                    with gr.Row():
                        d_weight = gr.Slider(0, 2, value=1.0, step=0.05, label="Recommended weight")
                        d_tags = gr.Textbox(label="Tags (comma-separated)")
                    with gr.Row():
                        save_btn = gr.Button("Save changes", variant="primary", elem_id="save-details")
                        delete_btn = gr.Button("Delete selected…", variant="stop", elem_id="delete-model")
                    with gr.Row(visible=False) as confirm_row:
                        confirm_md = gr.Markdown()
                        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="confirm-delete")
                        cancel_btn = gr.Button("Keep it")
                    detail_msg = gr.HTML(elem_id="detail-msg")

                gr.Markdown("### Active checkpoint")
                gr.HTML('<div class="mm-warn">Switching the checkpoint reloads it on the inference service: '
                        "seconds on a GPU, longer on a CPU; a running job finishes first.</div>")
                with gr.Row():
                    ckpt = gr.Dropdown(label="Checkpoint", choices=[DEFAULT_CHECKPOINT], value=DEFAULT_CHECKPOINT,
                                       scale=3, elem_id="checkpoint-select")
                    ckpt_btn = gr.Button("Set active & load", variant="primary", scale=1, elem_id="set-active")
                active_md = gr.Markdown(elem_id="active-checkpoint")
                ckpt_status = gr.HTML(elem_id="checkpoint-status")

                gr.Markdown("### Upload a model file")
                with gr.Row():
                    up_file = gr.File(label=".safetensors file", type="filepath", scale=2, elem_id="upload-file")
                    with gr.Column(scale=3):
                        up_type = gr.Radio(["LoRA", "Checkpoint"], value="LoRA", label="Type")
                        up_name = gr.Textbox(label="Display name", elem_id="upload-name")
                        up_triggers = gr.Textbox(label="Trigger words (comma-separated)", elem_id="upload-triggers")
                        up_btn = gr.Button("Upload", variant="primary", elem_id="upload-btn")
                up_msg = gr.HTML(elem_id="upload-msg")

            # ------------------------------------------------ Generate
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=3):
                        g_prompt = gr.Textbox(label="Prompt", lines=3, elem_id="gen-prompt")
                        g_preview = gr.Markdown("**Final prompt:**", elem_id="gen-preview")
                        g_negative = gr.Textbox(label="Negative prompt", lines=1)
                        g_loras, g_selected, g_refresh = lora_panel(ui, "gen")
                        with gr.Accordion("Settings", open=False):
                            with gr.Row():
                                g_width = gr.Slider(64, 2048, value=ui.settings.ui_image_size, step=8, label="Width", elem_id="gen-width")
                                g_height = gr.Slider(64, 2048, value=ui.settings.ui_image_size, step=8, label="Height",
                                                     elem_id="gen-height")
                            with gr.Row():
                                g_steps = gr.Slider(1, 150, value=ui.settings.ui_steps, step=1, label="Steps", elem_id="gen-steps")
                                g_guidance = gr.Slider(0, 30, value=7.0, step=0.5, label="Guidance")
                            with gr.Row():
                                g_seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                                g_sched = gr.Dropdown(["default"], value="default", label="Scheduler")
                        with gr.Row():
                            g_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                            g_stop = gr.Button("Stop", variant="stop")
                    with gr.Column(scale=2):
                        g_progress = gr.HTML(elem_id="gen-progress")
                        g_image = gr.Image(label="Result", interactive=False, elem_id="gen-image", format="png")
                        g_info = gr.Markdown(elem_id="gen-info")

            # ------------------------------------------------ Upscale
            with gr.Tab("Upscale", id="upscale"):
                with gr.Row():
                    with gr.Column(scale=3):
                        u_image = gr.Image(label="Image to upscale", type="filepath", elem_id="up-image")
                        u_prompt = gr.Textbox(label="Prompt", lines=2, elem_id="up-prompt")
                        u_preview = gr.Markdown("**Final prompt:**", elem_id="up-preview")
                        u_negative = gr.Textbox(label="Negative prompt", lines=1)
                        u_loras, u_selected, u_refresh = lora_panel(ui, "up")
                        with gr.Row():
                            u_scale = gr.Slider(1, 4, value=2, step=0.5, label="Scale factor")
                            u_strength = gr.Slider(0, 1, value=0.35, step=0.05, label="Strength")
                        with gr.Row():
                            u_steps = gr.Slider(1, 100, value=min(20, ui.settings.ui_steps), step=1, label="Steps", elem_id="up-steps")
                            u_tile = gr.Slider(64, 2048, value=ui.settings.ui_image_size, step=8, label="Tile size", elem_id="up-tile")
                            u_seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                        with gr.Row():
                            u_btn = gr.Button("Upscale", variant="primary", elem_id="upscale-btn")
                            u_stop = gr.Button("Stop", variant="stop")
                    with gr.Column(scale=2):
                        u_progress = gr.HTML(elem_id="up-progress")
                        with gr.Row():
                            u_before = gr.Image(label="Before", interactive=False)
                            u_after = gr.Image(label="After", interactive=False, elem_id="up-after", format="png")
                        u_info = gr.Markdown()

        # ------------------------------------------------ wiring
        async def reload_all(tf: str, q: str) -> tuple[Any, ...]:
            table_upd, status = await ui.refresh_models(tf, q)
            ck_upd, active = await ui.refresh_checkpoints()
            loras = await ui.loras()
            return table_upd, status, ck_upd, active, loras, loras

        everything = [table, models_status, ckpt, active_md, g_loras, u_loras]
        demo.load(reload_all, [type_filter, search], everything)
        demo.load(ui.schedulers, None, g_sched)

        fetch.click(ui.fetch_info, reference, [preview_md, preview_img, download_btn, info_state])
        reference.submit(ui.fetch_info, reference, [preview_md, preview_img, download_btn, info_state])
        download_btn.click(ui.download, [info_state, reference], download_status).then(
            reload_all, [type_filter, search], everything)
        jobs_refresh.click(ui.downloads_table, None, [jobs_table, job_pick])
        job_cancel.click(ui.cancel_download, job_pick, job_msg).then(ui.downloads_table, None, [jobs_table, job_pick])
        timer = gr.Timer(3.0)
        timer.tick(ui.downloads_table, None, [jobs_table, job_pick], show_progress="hidden")

        for trigger in (type_filter.change, search.submit, refresh_btn.click):
            trigger(ui.refresh_models, [type_filter, search], [table, models_status])
        search.input(ui.refresh_models, [type_filter, search], [table, models_status], trigger_mode="always_last",
                     show_progress="hidden")
        refresh_btn.click(ui.refresh_checkpoints, None, [ckpt, active_md])
        detail_outputs = [selected_fn, d_name, d_triggers, d_weight, d_tags, facts, detail_msg]
        table.select(ui.select_model, None, detail_outputs)
        save_btn.click(ui.save_details, [selected_fn, d_name, d_triggers, d_weight, d_tags], detail_msg).then(
            reload_all, [type_filter, search], everything)

        def ask_delete(filename: str) -> tuple[Any, str]:
            if not filename:
                return gr.update(visible=False), ""
            return gr.update(visible=True), f"Delete **{html.escape(filename)}** and its file? This cannot be undone."

        delete_btn.click(ask_delete, selected_fn, [confirm_row, confirm_md])
        cancel_btn.click(lambda: gr.update(visible=False), None, confirm_row)
        confirm_btn.click(ui.delete_model, selected_fn, detail_msg).then(
            lambda: (gr.update(visible=False), "", "", "", 1.0, "", ""), None,
            [confirm_row, selected_fn, d_name, d_triggers, d_weight, d_tags, facts]).then(
            reload_all, [type_filter, search], everything)

        ckpt_btn.click(ui.set_active, ckpt, ckpt_status).then(ui.refresh_checkpoints, None, [ckpt, active_md])
        up_btn.click(ui.upload, [up_file, up_type, up_name, up_triggers], up_msg).then(
            reload_all, [type_filter, search], everything)

        async def reload_loras() -> list[dict[str, Any]]:
            return await ui.loras()

        g_refresh.click(reload_loras, None, g_loras)
        u_refresh.click(reload_loras, None, u_loras)

        for prompt, sel, preview in ((g_prompt, g_selected, g_preview), (u_prompt, u_selected, u_preview)):
            prompt.change(ui.preview, [prompt, sel], preview, show_progress="hidden", trigger_mode="always_last")
            sel.change(ui.preview, [prompt, sel], preview, show_progress="hidden", trigger_mode="always_last")

        g_event = g_btn.click(ui.generate, [g_prompt, g_negative, g_selected, g_width, g_height, g_steps,
                                            g_guidance, g_seed, g_sched], [g_progress, g_image, g_info])
        g_stop.click(None, None, None, cancels=[g_event])
        u_image.change(lambda p: p, u_image, u_before)
        u_event = u_btn.click(ui.upscale, [u_image, u_prompt, u_negative, u_selected, u_scale, u_strength,
                                           u_steps, u_tile, u_seed], [u_progress, u_after, u_info])
        u_stop.click(None, None, None, cancels=[u_event])
    demo.queue(default_concurrency_limit=16)
    return demo


def mount_ui(app: FastAPI, settings: GatewaySettings) -> FastAPI:
    # Gradio's other telemetry paths read the environment at call time; nothing is sent, whatever it says.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    ui = Ui(app, settings)
    demo = build_blocks(ui)
    max_file_bytes = min(settings.max_upload_bytes, UI_MAX_FILE_BYTES)
    auth = None
    if settings.api_key:
        key = settings.api_key

        def auth(_user: str, password: str) -> bool:
            return key_matches(key, password)

    gr.mount_gradio_app(
        app, demo, path="/", auth=auth,
        auth_message="Sign in with any (non-empty) user name and the gateway's API key (MODELMGR_API_KEY) as password.",
        max_file_size=max_file_bytes, show_error=True, footer_links=["api"], css=CSS,
        ssr_mode=False,
    )
    # mount_gradio_app never marks the Blocks launched, and Gradio skips its own path check until it is.
    demo.has_launched = True
    app.add_middleware(UiGuard, uploads=ui.uploads, blocks=demo, max_file_bytes=max_file_bytes)
    return app


__all__ = ["Ui", "build_blocks", "mount_ui"]
