"""Model Manager tab, "Browse CivitAI" (search, cards, pages, a card's versions, download) and "Updates"
(check the whole library, download an update keeping or deleting the old version, ignore a version)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.events import Dependency

from gateway.ui.browser_rendering import UPDATE_HEADERS
from gateway.ui.handlers.browser import BASE_MODELS, MATURE_CHOICES, PERIODS, SORTS, TYPES, BrowserHandlers
from gateway.ui.handlers.updates import UpdateHandlers
from gateway.ui.library_rendering import card_click_js

# A click on a result card sends its model id (a data attribute; never part of the script).
CARD_CLICK_JS = card_click_js("model_id", "modelId")


@dataclass
class BrowserSection:
    installs: list[Dependency]  # events after which a model may have been installed


@dataclass
class UpdatesSection:
    checked: list[Dependency]  # events after which the gallery's update badges change
    installs: list[Dependency]


def browser_section(h: BrowserHandlers) -> BrowserSection:
    with gr.Accordion("Browse CivitAI", open=False, elem_id="browse"):
        with gr.Row():
            query = gr.Textbox(label="Search CivitAI", placeholder="name, tag, creator…", scale=3,
                               elem_id="browse-query")
            kind = gr.Dropdown(list(TYPES), value="All", label="Type", scale=1, elem_id="browse-type")
            base = gr.Dropdown(list(BASE_MODELS), value="All", label="Base model", scale=1, allow_custom_value=True,
                               elem_id="browse-base")
        with gr.Row():
            sort = gr.Dropdown(list(SORTS), value=SORTS[0], label="Sort", scale=1, elem_id="browse-sort")
            period = gr.Dropdown(list(PERIODS), value=PERIODS[0], label="Period", scale=1, elem_id="browse-period")
            nsfw = gr.Checkbox(value=False, label="Include NSFW", scale=1, elem_id="browse-nsfw")
            mature = gr.Radio(list(MATURE_CHOICES), value="blur", label="Mature previews (R and above)", scale=2,
                              elem_id="browse-mature")
            search = gr.Button("Search", variant="primary", scale=1, elem_id="browse-search")
        with gr.Row():
            prev_btn = gr.Button("◀ Previous", size="sm", scale=0, elem_id="browse-prev")
            next_btn = gr.Button("Next ▶", size="sm", scale=0, elem_id="browse-next")
            status = gr.Markdown(elem_id="browse-status")
        paging = gr.State(None)
        cards = gr.HTML(elem_id="browse-cards", js_on_load=CARD_CLICK_JS, min_height=60)
        model_id = gr.State(0)
        with gr.Row():
            image = gr.HTML(elem_id="browse-image")
            details = gr.Markdown("_Search, then click a card to see its versions._", elem_id="browse-details")
        with gr.Row():
            version = gr.Dropdown(choices=[], label="Version", scale=3, elem_id="browse-version")
            download_btn = gr.Button("Download", variant="primary", interactive=False, scale=1,
                                     elem_id="browse-download")
        download_status = gr.HTML(elem_id="browse-download-status")

    filters = [query, kind, base, sort, period, nsfw, mature]
    results = [cards, status, paging]
    search.click(h.search, filters, results)
    query.submit(h.search, filters, results)
    next_btn.click(h.next_page, [paging, mature], results)
    prev_btn.click(h.previous_page, [paging, mature], results)
    selection = [details, image, version, download_btn, model_id]
    cards.click(h.select_card, None, selection)
    version.input(h.pick_version, [model_id, version], selection)
    download = download_btn.click(h.download, [model_id, version], download_status)
    return BrowserSection(installs=[download])


def updates_section(h: UpdateHandlers) -> UpdatesSection:
    with gr.Accordion("Updates", open=False, elem_id="updates"):
        with gr.Row():
            check = gr.Button("Check for updates", variant="primary", scale=1, elem_id="updates-check")
            status = gr.HTML(elem_id="updates-status")
        table = gr.Dataframe(headers=UPDATE_HEADERS, interactive=False, elem_id="updates-table")
        with gr.Row():
            pick = gr.Dropdown(choices=[], label="Model", scale=3, elem_id="update-pick")
            delete_old = gr.Checkbox(value=False, label="Delete the old version once the new one is in", scale=2,
                                     elem_id="update-delete-old")
        with gr.Row():
            download_btn = gr.Button("Download update", variant="primary", elem_id="update-download")
            ignore_btn = gr.Button("Ignore this version", elem_id="update-ignore")
            unignore_btn = gr.Button("Stop ignoring it", size="sm", elem_id="update-unignore")
        progress = gr.HTML(elem_id="update-progress")

    outputs = [table, pick, status]
    checked = check.click(h.check, None, outputs)
    ignored = ignore_btn.click(h.ignore, pick, outputs)
    unignored = unignore_btn.click(h.unignore, pick, outputs)
    download = download_btn.click(h.download_update, [pick, delete_old], progress)
    download.then(h.table, None, [table, pick])
    return UpdatesSection(checked=[checked, ignored, unignored], installs=[download])
