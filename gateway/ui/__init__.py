"""The web UI: Gradio Blocks mounted in the gateway at "/".

Tabs: Model Manager (CivitAI fetch + download with live progress, running downloads, installed
models with filter/search/details/delete, active checkpoint with live load progress, upload),
Generate and Upscale (LoRA rows built from the registry, live prompt preview from ComposePrompt,
progress, result). Errors show as readable text, never tracebacks.

The package, one module per concept:

- `services`: what every handler holds (the gateway's ServiceClients, settings, uploaded files);
- `handlers/`: the callbacks, one class per feature (civitai, models, checkpoints, generate);
- `layout/`: the Blocks, one module per section, and `build_blocks` joining them;
- `rendering`: Markdown/HTML for what is shown, escaping everything untrusted;
- `error_display`: the one path from a failed call to the message a user reads;
- `guard`: the ASGI middleware in front of the UI (what a UI client may make the gateway touch).

A new feature (picture gallery, CivitAI browser, "Import a folder") is a handlers module and a
layout module, plus one line in `Handlers` and one in `build_blocks`.
"""

from __future__ import annotations

import os

import gradio as gr
from fastapi import FastAPI

from gateway.config import GatewaySettings
from gateway.image_proxy import install_ui_image_route
from gateway.security import key_matches
from gateway.ui.browser_rendering import BROWSER_CSS
from gateway.ui.guard import UiGuard
from gateway.ui.handlers import Handlers
from gateway.ui.layout import build_blocks
from gateway.ui.library_rendering import LIBRARY_CSS
from gateway.ui.preview_route import install_preview_route
from gateway.ui.rendering import CSS
from gateway.ui.services import UiServices

# A file given to the UI: an fp32 SDXL checkpoint with EMA weights is ~13 GB (the API takes up to
# max_upload_bytes, streamed without a copy; the UI keeps a copy in its cache until it is sent).
UI_MAX_FILE_BYTES = 16 * 1024**3


def mount_ui(app: FastAPI, settings: GatewaySettings) -> FastAPI:
    # Gradio's other telemetry paths read the environment at call time; nothing is sent, whatever it says.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    services = UiServices.of_app(app, settings)
    demo = build_blocks(Handlers.of(services))
    max_file_bytes = min(settings.max_upload_bytes, UI_MAX_FILE_BYTES)
    auth = None
    if settings.api_key:
        key = settings.api_key

        def auth(_user: str, password: str) -> bool:
            return key_matches(key, password)

    install_preview_route(app, settings)  # before the mount at "/", which answers every path
    install_ui_image_route(app, settings)
    gr.mount_gradio_app(
        app, demo, path="/", auth=auth,
        auth_message="Sign in with any (non-empty) user name and the gateway's API key (MODELMGR_API_KEY) as password.",
        max_file_size=max_file_bytes, show_error=True, footer_links=["api"], css=CSS + LIBRARY_CSS + BROWSER_CSS,
        ssr_mode=False,
    )
    # mount_gradio_app never marks the Blocks launched, and Gradio skips its own path check until it is.
    demo.has_launched = True
    app.add_middleware(UiGuard, uploads=services.uploads, blocks=demo, max_file_bytes=max_file_bytes)
    return app


__all__ = ["build_blocks", "mount_ui"]
