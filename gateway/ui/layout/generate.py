"""The Generate and Upscale tabs, each with its LoRA rows (built from the registry) and prompt preview;
Generate's embeddings picker and VAE, Upscale's upscaler model, VAE, Ultimate SD Upscale settings and regions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from gateway.config import GatewaySettings
from gateway.ui.handlers import GenerateHandlers
from gateway.ui.handlers.generate import (
    ACTIVE_CHECKPOINT,
    DEFAULT_VAE,
    LANCZOS,
    REGION_HEADERS,
    SEAMS_FIX,
    insert_embedding,
    prune,
    select,
)
from gateway.ui.rendering import md_code

# The LoRA-row renders run one at a time. Both panels re-render at once whenever the LoRA list changes
# (page load; after a download, upload, edit or delete once models came from elsewhere, e.g. the CLI),
# each in a worker thread, and Gradio's render bookkeeping of a session (its blocks and events, its
# event-id counter) is not thread-safe: concurrent renders failed ("dictionary changed size during
# iteration") or clashed, which the page showed as an error toast.
LORA_ROWS_CONCURRENCY = "lora-rows"


@dataclass
class LoraPanel:
    loras: gr.State  # every installed LoRA: [{"filename", "name", "weight", "triggers"}]
    selected: gr.State  # the selection: {filename: weight}
    refresh: gr.Button
    # A selection set from elsewhere ("reuse parameters"): {"version": n, "selected": {filename: weight}}.
    # The rows are rebuilt under new keys for it, so the keyed checkboxes and sliders take its values.
    applied: gr.State


def lora_panel(h: GenerateHandlers, prefix: str) -> LoraPanel:
    loras_state = gr.State([])
    selected = gr.State({})
    applied = gr.State({})
    with gr.Row():
        gr.Markdown("#### LoRAs")
        refresh = gr.Button("↻ Refresh LoRAs", size="sm", scale=0, elem_id=f"{prefix}-lora-refresh")

    # Rows are re-built only when the LoRA list changes; keyed components keep their values.
    @gr.render(inputs=[loras_state, applied], triggers=[loras_state.change, applied.change], concurrency_limit=1,
               concurrency_id=LORA_ROWS_CONCURRENCY)
    def rows(loras: list[dict[str, Any]], applied: dict[str, Any] | None) -> None:
        if not loras:
            gr.Markdown("_No LoRAs installed yet: download or upload one in the Model Manager tab._")
            return
        chosen: dict[str, float] = (applied or {}).get("selected") or {}
        version = (applied or {}).get("version")
        suffix = f"~{version}" if version else ""
        for lora in loras:
            fn = lora["filename"]
            with gr.Row(equal_height=True):
                box = gr.Checkbox(label=lora["name"], value=fn in chosen, scale=2, key=f"{prefix}-cb-{fn}{suffix}",
                                  elem_classes=["mm-lora-check"])
                # interactive: Gradio does not infer it for components made inside gr.render (the slider
                # came out disabled).
                slider = gr.Slider(0, 2, value=chosen.get(fn, lora["weight"]), step=0.05, label="weight", scale=2,
                                   key=f"{prefix}-w-{fn}{suffix}", interactive=True)
                gr.Markdown("triggers: " + md_code(lora["triggers"]), key=f"{prefix}-t-{fn}{suffix}")

            def update(enabled: bool, weight: float, current: dict[str, float], fn: str = fn) -> dict[str, float]:
                return select(enabled, weight, current, fn)

            box.input(update, [box, slider, selected], selected)
            slider.change(update, [box, slider, selected], selected, trigger_mode="always_last",
                          show_progress="hidden")

    loras_state.change(prune, [loras_state, selected], selected)
    refresh.click(h.reload_loras, None, loras_state)
    return LoraPanel(loras_state, selected, refresh, applied)


def _preview_follows(h: GenerateHandlers, prompt: gr.Textbox, panel: LoraPanel, preview: gr.Markdown) -> None:
    for trigger in (prompt.change, panel.selected.change):
        trigger(h.preview, [prompt, panel.selected], preview, show_progress="hidden", trigger_mode="always_last")


@dataclass
class GenerateTab:
    loras: LoraPanel
    scheduler: gr.Dropdown  # its choices come from the inference service when the page loads
    # The form, in the order "reuse parameters" fills it, and the job (the history follows it).
    form: list[Any]
    job: Any
    embeddings: gr.State  # the installed embeddings: {filename: {"token", "negative"}}
    embedding_pick: gr.Dropdown
    vae: gr.Dropdown


def generate_tab(h: GenerateHandlers, settings: GatewaySettings) -> GenerateTab:
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="gen-prompt")
            preview = gr.Markdown("**Final prompt:**", elem_id="gen-preview")
            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="gen-negative")
            embeddings = gr.State({})
            with gr.Row():
                embedding_pick = gr.Dropdown([], value=None, label="Embeddings (a pick adds its token; a negative "
                                             "one's to the negative prompt)", elem_id="gen-embedding", scale=3)
                vae = gr.Dropdown([DEFAULT_VAE], value=DEFAULT_VAE, allow_custom_value=True, label="VAE",
                                  elem_id="gen-vae", scale=2)
            panel = lora_panel(h, "gen")
            with gr.Accordion("Settings", open=False):
                with gr.Row():
                    width = gr.Slider(64, 2048, value=settings.ui_image_size, step=8, label="Width",
                                      elem_id="gen-width")
                    height = gr.Slider(64, 2048, value=settings.ui_image_size, step=8, label="Height",
                                       elem_id="gen-height")
                with gr.Row():
                    steps = gr.Slider(1, 150, value=settings.ui_steps, step=1, label="Steps", elem_id="gen-steps")
                    guidance = gr.Slider(0, 30, value=7.0, step=0.5, label="Guidance", elem_id="gen-guidance")
                with gr.Row():
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)", elem_id="gen-seed")
                    scheduler = gr.Dropdown(["default"], value="default", label="Scheduler")
                # Filled by "reuse parameters"; a name typed here is checked by the inference service.
                checkpoint = gr.Dropdown([ACTIVE_CHECKPOINT], value=ACTIVE_CHECKPOINT, allow_custom_value=True,
                                         label="Checkpoint (this job only)", elem_id="gen-checkpoint")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(scale=2):
            progress = gr.HTML(elem_id="gen-progress")
            image = gr.Image(label="Result", interactive=False, elem_id="gen-image", format="png")
            info = gr.Markdown(elem_id="gen-info")

    _preview_follows(h, prompt, panel, preview)
    embedding_pick.input(insert_embedding, [embedding_pick, embeddings, prompt, negative],
                         [prompt, negative, embedding_pick])
    job = run.click(h.generate, [prompt, negative, panel.selected, width, height, steps, guidance, seed, scheduler,
                                 checkpoint, vae], [progress, image, info])
    stop.click(None, None, None, cancels=[job])
    form = [prompt, negative, width, height, steps, guidance, seed, scheduler, checkpoint, panel.applied,
            panel.selected]
    return GenerateTab(panel, scheduler, form, job, embeddings, embedding_pick, vae)


@dataclass
class UpscaleTab:
    loras: LoraPanel
    image: gr.Image  # the input ("send to Upscale" fills it)
    job: Any
    vae: gr.Dropdown
    upscaler: gr.Dropdown


def upscale_tab(h: GenerateHandlers, settings: GatewaySettings) -> UpscaleTab:
    with gr.Row():
        with gr.Column(scale=3):
            image = gr.Image(label="Image to upscale", type="filepath", elem_id="up-image")
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="up-prompt")
            preview = gr.Markdown("**Final prompt:**", elem_id="up-preview")
            negative = gr.Textbox(label="Negative prompt", lines=1)
            panel = lora_panel(h, "up")
            with gr.Row():
                scale = gr.Slider(1, 4, value=2, step=0.5, label="Scale factor")
                strength = gr.Slider(0, 1, value=0.35, step=0.05, label="Strength")
            with gr.Row():
                steps = gr.Slider(1, 100, value=min(20, settings.ui_steps), step=1, label="Steps", elem_id="up-steps")
                tile = gr.Slider(64, 2048, value=settings.ui_image_size, step=8, label="Tile size", elem_id="up-tile")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
            with gr.Row():
                upscaler = gr.Dropdown([LANCZOS], value=LANCZOS, allow_custom_value=True,
                                       label="Upscaler model (enlarges before the refine)", elem_id="up-upscaler")
                vae = gr.Dropdown([DEFAULT_VAE], value=DEFAULT_VAE, allow_custom_value=True, label="VAE",
                                  elem_id="up-vae")
            with gr.Accordion("Ultimate SD Upscale settings", open=False):
                with gr.Row():
                    padding = gr.Slider(0, 256, value=0, step=8, label="Tile padding (context around a tile)",
                                        elem_id="up-padding")
                    mask_blur = gr.Slider(0, 64, value=0, step=1, label="Mask blur", elem_id="up-mask-blur")
                with gr.Row():
                    seams = gr.Radio(list(SEAMS_FIX), value="None", label="Seams fix", elem_id="up-seams")
                    seams_width = gr.Slider(8, 512, value=64, step=8, label="Seams fix width (band pass)",
                                            elem_id="up-seams-width")
            with gr.Accordion("Regions (rectangles of the source image, each with its own prompt)", open=False):
                gr.Markdown("One rectangle a row, in pixels of the image above; LoRAs as `name:0.8, other`. "
                            "Their prompt and LoRAs go on top of the global ones.")
                regions = gr.Dataframe(headers=REGION_HEADERS,
                                       datatype=["number", "number", "number", "number", "str", "str"],
                                       row_count=1, column_count=len(REGION_HEADERS),
                                       type="array", interactive=True, elem_id="up-regions")
            with gr.Row():
                run = gr.Button("Upscale", variant="primary", elem_id="upscale-btn")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(scale=2):
            progress = gr.HTML(elem_id="up-progress")
            with gr.Row():
                before = gr.Image(label="Before", interactive=False)
                after = gr.Image(label="After", interactive=False, elem_id="up-after", format="png")
            info = gr.Markdown()

    _preview_follows(h, prompt, panel, preview)
    image.change(lambda p: p, image, before)
    job = run.click(h.upscale, [image, prompt, negative, panel.selected, scale, strength, steps, tile, seed,
                                upscaler, vae, padding, mask_blur, seams, seams_width, regions],
                    [progress, after, info])
    stop.click(None, None, None, cancels=[job])
    return UpscaleTab(panel, image, job, vae, upscaler)
