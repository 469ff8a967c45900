"""The Gradio Blocks: the tabs, each section built by its own module, and the one cross-section event.

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
            with gr.Tab("Generate", id="generate"):
                generate = generate_tab(h.generate, settings)
                generate_history = history_section(h.outputs, "gen")
            with gr.Tab("Upscale", id="upscale"):
                upscale = upscale_tab(h.generate, settings)
                upscale_history = history_section(h.outputs, "up")
        connect_histories(demo, h.outputs, [generate_history, upscale_history], generate, upscale, tabs)

        # Whatever lists installed models follows a change of them, on page load and after each
        # event that may have installed, edited or removed one.
        listing = [models.table, models.status, checkpoints.choice, checkpoints.active, generate.loras.loras,
                   upscale.loras.loras]
        filters = [models.type_filter, models.search]
        demo.load(h.reload_all, filters, listing)
        demo.load(h.generate.schedulers, None, generate.scheduler)
        # The embeddings, VAEs and upscalers to pick from in Generate and Upscale.
        typed = [generate.embeddings, generate.embedding_pick, generate.vae, upscale.vae, upscale.upscaler]
        demo.load(h.generate.typed_models, None, typed)
        demo.load(h.library.roots, None, library.roots)
        demo.load(h.gallery.facets, None, gallery.facet_outputs).then(h.gallery.cards, gallery.inputs, gallery.outputs)
        # An update check (or ignoring one) changes the gallery's badges and its "update available" filter.
        for event in updates.checked:
            event.then(h.gallery.cards, gallery.inputs, gallery.outputs)
        for event in (*civitai.installs, *browser.installs, *updates.installs, *models.changes, uploaded,
                      *library.changes, *gallery.changes, *health.changes):
            event.then(h.reload_all, filters, listing)
            event.then(h.generate.typed_models, None, typed)
            event.then(h.gallery.facets, None, gallery.facet_outputs).then(h.gallery.cards, gallery.inputs,
                                                                          gallery.outputs)
        for event in gallery.checkpoint_changes:
            event.then(h.checkpoints.refresh_checkpoints, None, [checkpoints.choice, checkpoints.active])
        models.refresh.click(h.checkpoints.refresh_checkpoints, None, [checkpoints.choice, checkpoints.active])
    demo.queue(default_concurrency_limit=16)
    return demo
