"""Model Manager tab, "Import a folder": the import form, its live progress and summary, the library roots."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.events import Dependency

from gateway.ui.handlers.library import IMPORT_MODES, LibraryHandlers
from gateway.ui.library_rendering import ROOT_HEADERS


@dataclass
class LibrarySection:
    changes: list[Dependency]  # events after which the installed models may have changed
    roots: list[gr.components.Component]  # what LibraryHandlers.roots fills (on page load too)


def library_section(h: LibraryHandlers) -> LibrarySection:
    with gr.Accordion("Import a folder", open=False, elem_id="import-accordion"):
        gr.Markdown("Index an existing library (A1111/Forge, ComfyUI, Stability Matrix, InvokeAI) where it is, "
                    "or bring its files into the volume. The path is a folder on the registry's machine, under "
                    "one of its `--library-allow` folders. The import keeps running if you close the page.")
        with gr.Row():
            path = gr.Textbox(label="Folder", placeholder="/data/stable-diffusion-webui/models/Lora", scale=4,
                              elem_id="import-path")
            mode = gr.Radio(list(IMPORT_MODES), value="in place", label="Mode", scale=2, elem_id="import-mode")
        with gr.Row():
            identify = gr.Checkbox(value=True, label="Identify on CivitAI (by hash)", elem_id="import-identify")
            write_back = gr.Checkbox(value=False, label="Write A1111 sidecars next to the files",
                                     elem_id="import-write-back")
            start = gr.Button("Start import", variant="primary", elem_id="import-start")
            cancel = gr.Button("Cancel import", variant="stop", elem_id="import-cancel")
        job_id = gr.State("")
        progress = gr.HTML(elem_id="import-progress")
        cancel_msg = gr.HTML(elem_id="import-cancel-msg")

        gr.Markdown("#### Library roots")
        roots_status = gr.Markdown(elem_id="roots-status")
        roots = gr.Dataframe(headers=ROOT_HEADERS, interactive=False, wrap=True, elem_id="roots-table")
        with gr.Row():
            root_choice = gr.Dropdown(label="Root", choices=[], scale=3, elem_id="root-choice")
            remove = gr.Button("Remove from the index (files stay)", variant="stop", scale=1, elem_id="root-remove")
            refresh_roots = gr.Button("Refresh", scale=1, elem_id="roots-refresh")
        root_msg = gr.HTML(elem_id="root-msg")

    roots_out = [roots, root_choice, roots_status]
    imported = start.click(h.start_import, [path, mode, identify, write_back], [progress, job_id])
    imported.then(h.roots, None, roots_out)
    cancel.click(h.cancel_import, job_id, cancel_msg)
    removed = remove.click(h.remove_root, root_choice, root_msg)
    removed.then(h.roots, None, roots_out)
    refresh_roots.click(h.roots, None, roots_out)
    return LibrarySection(changes=[imported, removed], roots=roots_out)
