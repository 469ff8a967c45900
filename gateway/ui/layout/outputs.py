"""The history of outputs, in the Generate tab and in the Upscale tab: a paged gallery, the opened output
(image, parameters) and its actions. `history_section` builds one inside the current tab;
`connect_histories` wires what crosses tabs (reuse into the Generate form, send to Upscale, refresh after
each job) once both tabs exist."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from gateway.ui.handlers.outputs import OutputHandlers, first_page
from gateway.ui.layout.generate import GenerateTab, UpscaleTab


@dataclass
class History:
    page: list[Any]  # what a page load shows: gallery, ids, pager, status, newer, older
    pager: gr.State
    opened: gr.State  # the opened output's id
    reuse: gr.Button
    send: gr.Button
    message: gr.HTML


def history_section(h: OutputHandlers, prefix: str) -> History:
    ids = gr.State([])  # the ids of the page shown, in gallery order
    pager = gr.State(first_page())
    opened = gr.State("")
    with gr.Accordion("History", open=True, elem_id=f"{prefix}-history"):
        with gr.Row():
            refresh = gr.Button("↻ Newest", size="sm", scale=0, elem_id=f"{prefix}-history-refresh")
            newer = gr.Button("← Newer", size="sm", scale=0, interactive=False, elem_id=f"{prefix}-history-newer")
            older = gr.Button("Older →", size="sm", scale=0, interactive=False, elem_id=f"{prefix}-history-older")
            status = gr.Markdown(elem_id=f"{prefix}-history-status")
        # Never an event's input: the browser would send every thumbnail's path back. A click sends
        # only its index (and its own thumbnail, which this login owns).
        gallery = gr.Gallery(label="Outputs, newest first", columns=6, height=300, allow_preview=False, object_fit="contain",
                             interactive=False, show_label=False, elem_id=f"{prefix}-history-gallery")
        with gr.Row():
            image = gr.Image(label="Output", interactive=False, format="png", elem_id=f"{prefix}-output-image")
            with gr.Column():
                params = gr.Markdown(elem_id=f"{prefix}-output-params")
                with gr.Row():
                    reuse = gr.Button("Reuse parameters", size="sm", elem_id=f"{prefix}-output-reuse")
                    send = gr.Button("Send to Upscale", size="sm", elem_id=f"{prefix}-output-send")
                    download = gr.DownloadButton("Download", size="sm", interactive=False,
                                                 elem_id=f"{prefix}-output-download")
                    delete = gr.Button("Delete", size="sm", variant="stop", elem_id=f"{prefix}-output-delete")
                message = gr.HTML(elem_id=f"{prefix}-output-msg")

    page = [gallery, ids, pager, status, newer, older]
    shown = [image, params, opened, download, message]
    refresh.click(h.newest, None, page)
    older.click(h.older, pager, page)
    newer.click(h.newer, pager, page)
    gallery.select(h.open_selected, ids, shown)
    delete.click(h.delete, opened, shown).then(h.show_page, pager, page)
    return History(page, pager, opened, reuse, send, message)


@dataclass
class HistoryMoves:
    to_generate: list[Dependency]  # "Reuse parameters": the Generate tab shown, its form filled
    to_upscale: list[Dependency]  # "Send to Upscale": the Upscale tab shown


def connect_histories(loaded: Dependency, h: OutputHandlers, histories: list[History], generate: GenerateTab,
                      upscale: UpscaleTab, tabs: gr.Tabs) -> HistoryMoves:
    """Reuse and send from either history; every history to its newest page once the page has loaded
    (`loaded`) and after each job."""
    moves = HistoryMoves([], [])
    for history in histories:
        moves.to_generate.append(history.reuse.click(h.reuse, [history.opened, generate.loras.applied],
                                                     [*generate.form, history.message, tabs]))
        moves.to_upscale.append(history.send.click(h.send_to_upscale, history.opened,
                                                   [upscale.image, history.message, tabs]))
        loaded.then(h.newest, None, history.page)
        for job in (generate.job, upscale.job):
            job.then(h.newest, None, history.page)
    return moves


__all__ = ["History", "HistoryMoves", "connect_histories", "history_section"]
