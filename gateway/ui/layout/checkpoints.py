"""Model Manager tab, "Active checkpoint": pick one, set it active and watch it load."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from gateway.ui.handlers import CheckpointHandlers
from service_kit.config import DEFAULT_CHECKPOINT


@dataclass
class CheckpointSection:
    choice: gr.Dropdown
    active: gr.Markdown


def checkpoint_section(h: CheckpointHandlers) -> CheckpointSection:
    gr.Markdown("### Active checkpoint")
    gr.HTML('<div class="mm-warn">Switching the checkpoint reloads it on the inference service: '
            "seconds on a GPU, longer on a CPU; a running job finishes first.</div>")
    with gr.Row():
        choice = gr.Dropdown(label="Checkpoint", choices=[DEFAULT_CHECKPOINT], value=DEFAULT_CHECKPOINT,
                             scale=3, elem_id="checkpoint-select")
        set_btn = gr.Button("Set active & load", variant="primary", scale=1, elem_id="set-active")
    active = gr.Markdown(elem_id="active-checkpoint")
    status = gr.HTML(elem_id="checkpoint-status")
    set_btn.click(h.set_active, choice, status).then(h.refresh_checkpoints, None, [choice, active])
    return CheckpointSection(choice, active)
