"""Model Manager tab, "Gallery": cards of the installed models (filters, sort, search, pages), a card's
details (edit, delete, open on CivitAI, copy trigger words, use in Generate), refresh from CivitAI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from gateway.ui.handlers.gallery import MATURE_CHOICES, NO_CARD, NSFW_FILTERS, SORTS, GalleryHandlers
from gateway.ui.library_rendering import card_click_js
from gateway.ui.services import TYPE_FILTER

# A click on a card sends its key (a data attribute, escaped; never part of the script) as the event's data.
CARD_CLICK_JS = card_click_js("filename", "filename")

# "Use in Generate": show the Generate tab and, for a LoRA, tick its checkbox there (the page's own
# control, so Generate's selection and prompt preview follow as if the user had clicked it).
USE_IN_GENERATE_JS = """
(filename, label, kind) => {
  const tab = [...document.querySelectorAll('button[role="tab"]')].find(b => b.textContent.trim() === 'Generate');
  if (tab) tab.click();
  if (kind === 'LoRA') {
    const tick = (tries) => {
      const row = [...document.querySelectorAll('.mm-lora-check')]
        .find(c => c.offsetParent !== null && c.textContent.trim() === label);
      const box = row && row.querySelector('input[type="checkbox"]');
      if (box) { if (!box.checked) box.click(); } else if (tries > 0) setTimeout(() => tick(tries - 1), 200);
    };
    tick(50);
  }
  return [filename, label, kind];
}
"""


@dataclass
class GallerySection:
    inputs: list[gr.components.Component]  # what `refresh` reads
    outputs: list[gr.components.Component]  # what `refresh` writes
    facet_outputs: list[gr.components.Component]
    changes: list[Dependency]  # events after which the installed models may have changed
    checkpoint_changes: list[Dependency]  # events after which the active checkpoint may have changed


def gallery_section(h: GalleryHandlers) -> GallerySection:
    gr.Markdown("### Gallery")
    with gr.Row():
        type_filter = gr.Dropdown(list(TYPE_FILTER), value="All", label="Type", scale=1,
                                  elem_id="gallery-type")
        base = gr.Dropdown(["All"], value="All", label="Base model", scale=1, allow_custom_value=True,
                           elem_id="gallery-base")
        place = gr.Dropdown([("All places", "")], value="", label="Root / folder", scale=2, allow_custom_value=True,
                            elem_id="gallery-place")
        tag = gr.Dropdown(["All"], value="All", label="Tag", scale=1, allow_custom_value=True, elem_id="gallery-tag")
        nsfw = gr.Dropdown(list(NSFW_FILTERS), value="any", label="NSFW level at most", scale=1,
                           elem_id="gallery-nsfw")
    with gr.Row():
        search = gr.Textbox(label="Search", placeholder="name, tag, trigger word…", scale=3, elem_id="gallery-search")
        sort = gr.Radio(list(SORTS), value="name", label="Sort", scale=2, elem_id="gallery-sort")
        mature = gr.Radio(list(MATURE_CHOICES), value="blur", label="Mature previews (R and above)", scale=2,
                          elem_id="gallery-mature")
        updates_only = gr.Checkbox(value=False, label="Update available", scale=1, elem_id="gallery-updates-only")
    with gr.Row():
        prev_btn = gr.Button("◀ Previous", size="sm", scale=0, elem_id="gallery-prev")
        page = gr.Number(value=1, precision=0, minimum=1, label="Page", scale=0, min_width=90, elem_id="gallery-page")
        next_btn = gr.Button("Next ▶", size="sm", scale=0, elem_id="gallery-next")
        status = gr.Markdown(elem_id="gallery-status")
        refresh = gr.Button("Refresh", size="sm", scale=0, elem_id="gallery-refresh")
    facet_msg = gr.HTML()
    cards = gr.HTML(elem_id="gallery-cards", js_on_load=CARD_CLICK_JS, min_height=120)

    with gr.Accordion("Selected model", open=True, elem_id="gallery-details"):
        filename = gr.Textbox(label="Filename", interactive=False, elem_id="card-filename")
        facts = gr.Markdown(elem_id="card-facts")
        links = gr.HTML(elem_id="card-links")
        with gr.Row():
            d_name = gr.Textbox(label="Display name", elem_id="card-name")
            d_triggers = gr.Textbox(label="Trigger words (comma-separated)", elem_id="card-triggers")
        with gr.Row():
            d_weight = gr.Slider(0, 2, value=1.0, step=0.05, label="Recommended weight")
            d_tags = gr.Textbox(label="Tags (comma-separated)", elem_id="card-tags")
        copy_box = gr.Textbox(label="Trigger words to copy", interactive=False, buttons=["copy"],
                              elem_id="card-copy-triggers")
        label = gr.Textbox(visible=False)  # the name Generate's LoRA list shows
        kind = gr.Textbox(visible=False)
        with gr.Row():
            save_btn = gr.Button("Save changes", variant="primary", elem_id="card-save")
            use_btn = gr.Button("Use in Generate", elem_id="card-use")
            refresh_one = gr.Button("Refresh from CivitAI", elem_id="card-refresh-civitai")
            delete_btn = gr.Button("Delete…", variant="stop", elem_id="card-delete")
        with gr.Row():
            force = gr.Checkbox(value=False, label="Ask CivitAI again even if it did not know the file today",
                                elem_id="refresh-force")
            refresh_all = gr.Button("Refresh all shown from CivitAI", size="sm", elem_id="gallery-refresh-civitai")
        with gr.Row(visible=False) as confirm_row:
            confirm_md = gr.Markdown()
            delete_file = gr.Checkbox(value=False, label="Also delete the file from the library folder",
                                      visible=False, elem_id="card-delete-file")
            confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="card-confirm-delete")
            cancel_btn = gr.Button("Keep it")
        card_msg = gr.HTML(elem_id="card-msg")

    filters = [type_filter, base, place, tag, nsfw, sort, search]
    inputs: list[gr.components.Component] = [*filters, page, mature, filename, updates_only]  # cards(...)'s order
    outputs: list[gr.components.Component] = [cards, status, page]
    facet_outputs = [base, place, tag, facet_msg]

    # Gradio hands the inputs' values in cards(...)'s order, each of its component's type.
    def first_page(*values: Any) -> tuple[Any, ...]:
        return (*values[:len(filters)], 1, *values[len(filters) + 1:])

    async def from_first(*values: Any) -> tuple[str, str, int]:
        return await h.cards(*first_page(*values))

    async def step(delta: int, *values: Any) -> tuple[str, str, int]:
        current = values[len(filters)]
        number = (current if isinstance(current, int | float) else 1) + delta
        args = (*values[:len(filters)], number, *values[len(filters) + 1:])
        return await h.cards(*args)

    async def previous(*values: Any) -> tuple[str, str, int]:
        return await step(-1, *values)

    async def following(*values: Any) -> tuple[str, str, int]:
        return await step(1, *values)

    for component in (type_filter, base, place, tag, nsfw, sort):
        component.change(from_first, inputs, outputs, show_progress="hidden")
    search.submit(from_first, inputs, outputs)
    search.input(from_first, inputs, outputs, trigger_mode="always_last", show_progress="hidden")
    mature.change(h.cards, inputs, outputs, show_progress="hidden")
    updates_only.change(from_first, inputs, outputs, show_progress="hidden")
    page.submit(h.cards, inputs, outputs)
    prev_btn.click(previous, inputs, outputs, show_progress="hidden")
    next_btn.click(following, inputs, outputs, show_progress="hidden")
    refresh.click(h.reload_facets, None, facet_outputs).then(h.cards, inputs, outputs)

    editable = [d_name, d_triggers, d_weight, d_tags]
    detail_outputs = [filename, *editable, facts, links, copy_box, delete_file, label, kind, card_msg]
    cards.click(h.select_card, None, detail_outputs)
    saved = save_btn.click(h.save, [filename, *editable], card_msg)
    delete_btn.click(h.ask_delete, filename, [confirm_row, confirm_md])
    cancel_btn.click(lambda: gr.update(visible=False), None, confirm_row)
    deleted = confirm_btn.click(h.delete, [filename, delete_file], card_msg).then(
        lambda: (gr.update(visible=False), *NO_CARD), None, [confirm_row, *detail_outputs[:-1]])
    used = use_btn.click(h.use_in_generate, [filename, label, kind], card_msg, js=USE_IN_GENERATE_JS)
    refreshed_one = refresh_one.click(h.refresh_selected, [filename, force], card_msg)
    refreshed_all = refresh_all.click(h.refresh_shown, [*filters, force, updates_only], card_msg)
    return GallerySection(inputs, outputs, facet_outputs, changes=[saved, deleted, refreshed_one, refreshed_all],
                          checkpoint_changes=[used])

