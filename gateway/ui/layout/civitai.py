"""Model Manager tab, "Download from CivitAI": reference, Fetch Info, preview, Download, running downloads."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.events import Dependency

from gateway.ui.handlers import CivitaiHandlers

DOWNLOADS_POLL_SECONDS = 3.0


@dataclass
class CivitaiSection:
    installs: list[Dependency]  # events after which a model may have been installed


def civitai_section(h: CivitaiHandlers) -> CivitaiSection:
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

    preview = [preview_md, preview_img, download_btn, info_state]
    fetch.click(h.fetch_info, reference, preview)
    reference.submit(h.fetch_info, reference, preview)
    download = download_btn.click(h.download, [info_state, reference], download_status)
    jobs = [jobs_table, job_pick]
    jobs_refresh.click(h.downloads_table, None, jobs)
    job_cancel.click(h.cancel_download, job_pick, job_msg).then(h.downloads_table, None, jobs)
    timer = gr.Timer(DOWNLOADS_POLL_SECONDS)
    timer.tick(h.downloads_table, None, jobs, show_progress="hidden")
    return CivitaiSection(installs=[download])
