"""Gateway settings, each declared once: default, flag, MODELMGR_* variable, help (see service_kit.config)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar

from service_kit.config import (
    DEFAULT_CIVITAI,
    DEFAULT_GATEWAY,
    DEFAULT_INFERENCE,
    CliSettings,
    listen_setting,
    log_format_setting,
    log_level_setting,
    registry_addr_setting,
    setting,
)

DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024**3  # 32 GiB: larger than any SDXL checkpoint in the wild.
# Every API body but an upload's or an upscale's is a small JSON document.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Failed logins / API keys per client IP within the window before it gets 429 (0: no throttling).
DEFAULT_AUTH_FAIL_LIMIT = 10
DEFAULT_AUTH_FAIL_WINDOW = 60.0
# CivitAI's NSFW levels (bit flags): 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX. The default shows every preview.
DEFAULT_PREVIEW_NSFW_MAX = 16


@dataclass
class GatewaySettings(CliSettings):
    CLI_PROG: ClassVar[str] = "python -m gateway"
    CLI_DESCRIPTION: ClassVar[str] = (
        "HTTP API (/api/v1, OpenAPI at /docs) and web UI over the model manager's gRPC services. "
        "Set MODELMGR_API_KEY to require an API key (x-api-key header or Authorization: Bearer) "
        "for every API call and for the UI.")

    listen: str = listen_setting("MODELMGR_GATEWAY_LISTEN", DEFAULT_GATEWAY)
    registry: str = registry_addr_setting()
    civitai: str = setting(DEFAULT_CIVITAI, help="CivitAI service address", env="MODELMGR_CIVITAI_ADDR")
    inference: str = setting(DEFAULT_INFERENCE, help="inference service address", env="MODELMGR_INFERENCE_ADDR")
    # The CivitAI service's --base-url: the image proxy fetches from its origin too (a mirror, the demo's fake).
    civitai_base_url: str = setting("https://civitai.com",
                                    help="CivitAI base URL (images are fetched only from its origin and CivitAI's "
                                         "image hosts)",
                                    env="MODELMGR_CIVITAI_BASE_URL", aliases=("CIVITAI_BASE_URL",))
    # When set, every /api call and the web UI need it (x-api-key or Authorization: Bearer).
    # No flag on purpose: a flag shows up in `ps`. Environment only.
    api_key: str | None = setting(None, help="API key required of every API call and the UI",
                                  env="MODELMGR_API_KEY", env_only=True)
    max_upload_bytes: int = setting(DEFAULT_MAX_UPLOAD_BYTES, help="largest accepted upload, bytes",
                                    env="MODELMGR_MAX_UPLOAD_BYTES")
    # Largest body of any other /api route (uploads: max_upload_bytes; upscale: its image's size).
    max_body_bytes: int = setting(DEFAULT_MAX_BODY_BYTES,
                                  help="largest JSON body of any other API route, bytes (larger: 413)",
                                  env="MODELMGR_MAX_BODY_BYTES")
    auth_fail_limit: int = setting(
        DEFAULT_AUTH_FAIL_LIMIT,
        help="failed logins / API keys per client IP within --auth-fail-window before 429 (0: off)",
        env="MODELMGR_AUTH_FAIL_LIMIT")
    auth_fail_window: float = setting(DEFAULT_AUTH_FAIL_WINDOW, help="sliding window of --auth-fail-limit, seconds",
                                      env="MODELMGR_AUTH_FAIL_WINDOW")
    # An upload whose client sends nothing for this long is abandoned (408), seconds.
    upload_idle_timeout: float = setting(60.0, help="seconds an upload may send nothing before it is abandoned (408)",
                                         env="MODELMGR_UPLOAD_IDLE_TIMEOUT")
    # A model preview whose image is rated above this CivitAI NSFW level is answered 404 PREVIEW_HIDDEN
    # (no placeholder: nothing of the image leaves the gateway). A preview of unknown level (0: from a
    # sidecar or an upload) is shown.
    preview_nsfw_max: int = setting(
        DEFAULT_PREVIEW_NSFW_MAX,
        help="hide model previews rated above this CivitAI NSFW level (1 PG, 2 PG-13, 4 R, 8 X, 16 XXX: all)",
        env="MODELMGR_PREVIEW_NSFW_MAX", minimum=1)
    # Origins allowed by CORS; empty means no CORS headers at all.
    cors_origins: list[str] = setting(help="comma-separated origins allowed by CORS (none if empty)",
                                      env="MODELMGR_CORS_ORIGINS", default_factory=list)
    # Deadline of unary calls to the services, seconds.
    rpc_timeout: float = setting(30.0, help="deadline of unary service calls, seconds", env="MODELMGR_RPC_TIMEOUT")
    # Mount the Gradio web UI at "/".
    ui: bool = setting(True, help="serve the web UI at / (--no-ui: the API only)", env="MODELMGR_UI")
    # Defaults of the UI's size and steps sliders (the demo stack's tiny models want small ones).
    ui_image_size: int = setting(1024, help="default width/height in the UI", env="MODELMGR_UI_IMAGE_SIZE")
    ui_steps: int = setting(30, help="default steps in the UI", env="MODELMGR_UI_STEPS")
    log_level: str = log_level_setting()
    log_format: str = log_format_setting()

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def build_parser() -> argparse.ArgumentParser:
    return GatewaySettings.parser()
