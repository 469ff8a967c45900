"""The "Library health" section of the Model Manager tab: duplicates (with delete), disk use, and bulk
actions on a selection of the gallery's cards."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.events import Dependency

from gateway.ui.handlers.maintenance import MaintenanceHandlers
from gateway.ui.layout.gallery import GallerySection


@dataclass
class MaintenanceSection:
    changes: list[Dependency]  # events after which the installed models may have changed


def maintenance_section(h: MaintenanceHandlers, gallery: GallerySection) -> MaintenanceSection:
    with gr.Accordion("Library health", open=False, elem_id="library-health"):
        refresh = gr.Button("Check duplicates and disk use", elem_id="health-refresh")
        with gr.Row():
            dups = gr.HTML(elem_id="health-duplicates")
            usage = gr.HTML(elem_id="health-disk")
        with gr.Row():
            dup_pick = gr.Dropdown(label="Duplicates to delete", multiselect=True, choices=[],
                                   elem_id="health-dup-pick")
            dup_files = gr.Checkbox(label="Also delete library-root files", value=False, elem_id="health-dup-files")
            dup_delete = gr.Button("Delete chosen duplicates", variant="stop", elem_id="health-dup-delete")
        dup_msg = gr.HTML(elem_id="health-dup-message")
        gr.Markdown("#### Bulk actions on gallery cards")
        with gr.Row():
            selection = gr.Dropdown(label="Selected cards", multiselect=True, choices=[], elem_id="bulk-selection")
            select_shown = gr.Button("Select all shown in the gallery", elem_id="bulk-select-shown")
        with gr.Row():
            add_tags = gr.Textbox(label="Add tags (comma separated)", elem_id="bulk-add-tags")
            remove_tags = gr.Textbox(label="Remove tags", elem_id="bulk-remove-tags")
            tags_btn = gr.Button("Apply tags", elem_id="bulk-tags")
        with gr.Row():
            force = gr.Checkbox(label="Ask CivitAI again even if it did not know a file", value=False,
                                elem_id="bulk-force")
            refresh_btn = gr.Button("Refresh from CivitAI", elem_id="bulk-refresh")
            delete_files = gr.Checkbox(label="Also delete library-root files", value=False, elem_id="bulk-delete-files")
            delete_btn = gr.Button("Delete selected", variant="stop", elem_id="bulk-delete")
        bulk_msg = gr.HTML(elem_id="bulk-message")

    health_outputs = [dups, usage, dup_pick]
    refresh.click(h.health, None, health_outputs)
    dup_deleted = dup_delete.click(h.delete_duplicates, [dup_pick, dup_files], dup_msg)
    dup_deleted.then(h.health, None, health_outputs)
    select_shown.click(h.select_shown, gallery.inputs[:7] + gallery.inputs[-1:], [selection, bulk_msg])
    tagged = tags_btn.click(h.bulk_tags, [selection, add_tags, remove_tags], bulk_msg)
    refreshed = refresh_btn.click(h.bulk_refresh, [selection, force], bulk_msg)
    deleted = delete_btn.click(h.bulk_delete, [selection, delete_files], bulk_msg)
    deleted.then(h.health, None, health_outputs)
    return MaintenanceSection(changes=[dup_deleted, tagged, refreshed, deleted])
