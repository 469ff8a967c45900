"""Model Manager tab: the installed models (filter, search, table), a model's details and the upload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from gateway.ui.handlers import ModelHandlers
from gateway.ui.handlers.models import NO_DETAILS, OWN_VAE, TABLE_HEADERS, UPLOAD_TYPES, ask_delete
from gateway.ui.services import TYPE_FILTER


@dataclass
class ModelsSection:
    type_filter: gr.Radio
    search: gr.Textbox
    refreshed: Dependency  # the Refresh button's fresh listing
    table: gr.Dataframe
    status: gr.Markdown
    page: gr.Number
    changes: list[Dependency]  # events after which the installed models may have changed


def models_section(h: ModelHandlers) -> ModelsSection:
    gr.Markdown("### Installed models")
    with gr.Row():
        type_filter = gr.Radio(list(TYPE_FILTER), value="All", label="Show", scale=2)
        search = gr.Textbox(label="Search", placeholder="name, tag, trigger word…", scale=3,
                            elem_id="model-search")
        refresh = gr.Button("Refresh", scale=1, elem_id="models-refresh")
    with gr.Row():
        prev_btn = gr.Button("◀ Previous", size="sm", scale=0, elem_id="models-prev")
        page = gr.Number(value=1, precision=0, minimum=1, label="Page", scale=0, min_width=90, elem_id="models-page")
        next_btn = gr.Button("Next ▶", size="sm", scale=0, elem_id="models-next")
        status = gr.Markdown(elem_id="models-status")
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
            # Shown for the type they belong to (type_details).
            d_vae = gr.Dropdown([OWN_VAE], value=OWN_VAE, label="Default VAE", visible=False,
                                elem_id="detail-vae")
            d_negative = gr.Checkbox(label="Negative embedding (goes in the negative prompt)", visible=False,
                                     elem_id="detail-negative")
        with gr.Row():
            save_btn = gr.Button("Save changes", variant="primary", elem_id="save-details")
            delete_btn = gr.Button("Delete selected…", variant="stop", elem_id="delete-model")
        with gr.Row(visible=False) as confirm_row:
            confirm_md = gr.Markdown()
            confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="confirm-delete")
            cancel_btn = gr.Button("Keep it")
        detail_msg = gr.HTML(elem_id="detail-msg")

    shown = [table, status, page]
    for trigger in (type_filter.change, search.submit):
        trigger(h.show_table, [type_filter, search], shown)
    refreshed = refresh.click(h.reload_table, [type_filter, search], shown)
    search.input(h.show_table, [type_filter, search], shown, trigger_mode="always_last", show_progress="hidden")
    page.submit(h.show_table, [type_filter, search, page], shown)

    async def previous(type_filter: str, query: str, number: float | None) -> tuple[Any, str, int]:
        return await h.show_table(type_filter, query, (number or 1) - 1)

    async def following(type_filter: str, query: str, number: float | None) -> tuple[Any, str, int]:
        return await h.show_table(type_filter, query, (number or 1) + 1)

    prev_btn.click(previous, [type_filter, search, page], shown, show_progress="hidden")
    next_btn.click(following, [type_filter, search, page], shown, show_progress="hidden")
    editable = [d_name, d_triggers, d_weight, d_tags]
    table.select(h.select_model, None, [selected_fn, *editable, facts, detail_msg])
    selected_fn.change(h.type_details, selected_fn, [d_vae, d_negative])
    saved = save_btn.click(h.save_details, [selected_fn, *editable, d_vae, d_negative], detail_msg)
    delete_btn.click(ask_delete, selected_fn, [confirm_row, confirm_md])
    cancel_btn.click(lambda: gr.update(visible=False), None, confirm_row)
    deleted = confirm_btn.click(h.delete_model, selected_fn, detail_msg).then(
        lambda: (gr.update(visible=False), *NO_DETAILS), None, [confirm_row, selected_fn, *editable, facts])
    return ModelsSection(type_filter, search, refreshed, table, status, page, changes=[saved, deleted])


def upload_section(h: ModelHandlers) -> Dependency:
    """→ the upload event (after it, a model may have been installed)."""
    gr.Markdown("### Upload a model file")
    with gr.Row():
        up_file = gr.File(label="model file (.safetensors; .pt/.pth for embeddings, VAEs, upscalers)", type="filepath", scale=2, elem_id="upload-file")
        with gr.Column(scale=3):
            up_type = gr.Radio(list(UPLOAD_TYPES), value="LoRA", label="Type")
            up_name = gr.Textbox(label="Display name", elem_id="upload-name")
            up_triggers = gr.Textbox(label="Trigger words (comma-separated)", elem_id="upload-triggers")
            up_btn = gr.Button("Upload", variant="primary", elem_id="upload-btn")
    up_msg = gr.HTML(elem_id="upload-msg")
    return up_btn.click(h.upload, [up_file, up_type, up_name, up_triggers], up_msg)
