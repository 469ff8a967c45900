"""The Gradio Blocks: the tabs, each section built by its own module, and the cross-section events.

A new feature adds its module here (building its components and wiring its own events, returning
what other sections need) and one call in `build_blocks`; if it can install or remove models it
returns those events, and `build_blocks` refreshes everything that lists models after them.
"""

from __future__ import annotations

import gradio as gr

from gateway.ui.handlers import Handlers
from gateway.ui.layout.browser import browser_section, updates_section
from gateway.ui.layout.checkpoints import checkpoint_section
from gateway.ui.layout.civitai import civitai_section
from gateway.ui.layout.gallery import gallery_section
from gateway.ui.layout.generate import generate_tab, upscale_tab
from gateway.ui.layout.library import library_section
from gateway.ui.layout.maintenance import maintenance_section
from gateway.ui.layout.models import models_section, upload_section
from gateway.ui.layout.outputs import connect_histories, history_section


def build_blocks(h: Handlers) -> gr.Blocks:
    settings = h.services.settings
    # analytics_enabled=False: no version check or telemetry leaves the machine. delete_cache: uploads
    # and outputs older than an hour are removed every ten minutes (and all of them at shutdown).
    demo: gr.Blocks  # what Blocks.__enter__ (unannotated) returns: the Blocks itself
    with gr.Blocks(title="Model Manager", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Model Manager\nSDXL LoRAs and checkpoints: install from CivitAI, manage, generate. "
                    "API docs at [/docs](/docs).")
        with gr.Tabs() as tabs:
            with gr.Tab("Model Manager", id="manager"):
                civitai = civitai_section(h.civitai)
                browser = browser_section(h.browser)
                updates = updates_section(h.updates)
                library = library_section(h.library)
                gallery = gallery_section(h.gallery)
                health = maintenance_section(h.maintenance, gallery)
                models = models_section(h.models)
                checkpoints = checkpoint_section(h.checkpoints)
                uploaded = upload_section(h.models)
            with gr.Tab("Generate", id="generate") as generate_page:
                generate = generate_tab(h.generate, settings)
                generate_history = history_section(h.outputs, "gen")
            with gr.Tab("Upscale", id="upscale") as upscale_page:
                upscale = upscale_tab(h.generate, settings)
                upscale_history = history_section(h.outputs, "up")

        # The first screen is the gallery's first page, alone (one ListModels page per type); the rest of
        # the page loads after it, from the model listing the gateway keeps between changes.
        loaded = demo.load(h.gallery.cards, gallery.inputs, gallery.outputs)
        moves = connect_histories(loaded, h.outputs, [generate_history, upscale_history], generate, upscale, tabs)
        listing_inputs = [models.type_filter, models.search, models.page]
        listing = [models.table, models.status, models.page, checkpoints.choice, checkpoints.active]
        # The embeddings, VAEs and upscalers to pick from in Generate and Upscale.
        typed = [generate.embeddings, generate.embedding_pick, generate.vae, upscale.vae, upscale.upscaler]
        loaded.then(h.gallery.facets, None, gallery.facet_outputs)
        loaded.then(h.load_listing, listing_inputs, listing)
        loaded.then(h.generate.schedulers, None, generate.scheduler)
        loaded.then(h.generate.typed_models, None, typed)
        loaded.then(h.library.roots, None, library.roots)

        # A LoRA panel's rows (one per installed LoRA) are built when its tab is first shown.
        panels = []
        for page, panel, shown_by in ((generate_page, generate.loras, moves.to_generate),
                                      (upscale_page, upscale.loras, moves.to_upscale)):
            opened = gr.State(False)
            panels.append((panel, opened))
            for event in (page.select, *(move.then for move in shown_by)):
                event(h.open_loras, None, [panel.loras, opened], show_progress="hidden")

        # An update check (or ignoring one) changes the gallery's badges and its "update available" filter.
        for event in updates.checked:
            event.then(h.gallery.cards, gallery.inputs, gallery.outputs)
        # Whatever lists installed models follows each event that may have installed, edited or removed one.
        for event in (*civitai.installs, *browser.installs, *updates.installs, *models.changes, uploaded,
                      *library.changes, *gallery.changes, *health.changes):
            changed = event.then(h.models_changed, None, None)
            changed.then(h.load_listing, listing_inputs, listing)
            changed.then(h.generate.typed_models, None, typed)
            changed.then(h.gallery.facets, None, gallery.facet_outputs).then(h.gallery.cards, gallery.inputs,
                                                                            gallery.outputs)
            for panel, opened in panels:
                changed.then(h.shown_loras, [opened, panel.loras], panel.loras)
        for event in gallery.checkpoint_changes:
            event.then(h.checkpoints.refresh_checkpoints, None, [checkpoints.choice, checkpoints.active])
        models.refreshed.then(h.checkpoints.refresh_checkpoints, None, [checkpoints.choice, checkpoints.active])
    demo.queue(default_concurrency_limit=16)
    return demo
