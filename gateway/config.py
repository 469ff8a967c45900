"""Gateway settings: flags with `MODELMGR_*` environment defaults (see service_kit.config)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from service_kit.config import (
    DEFAULT_CIVITAI,
    DEFAULT_GATEWAY,
    DEFAULT_INFERENCE,
    DEFAULT_REGISTRY,
    add_common_settings,
    add_setting,
    env,
)

DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024**3  # 32 GiB: larger than any SDXL checkpoint in the wild.
# Every API body but an upload's or an upscale's is a small JSON document.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Failed logins / API keys per client IP within the window before it gets 429 (0: no throttling).
DEFAULT_AUTH_FAIL_LIMIT = 10
DEFAULT_AUTH_FAIL_WINDOW = 60.0


@dataclass
class GatewaySettings:
    listen: str = DEFAULT_GATEWAY
    registry: str = DEFAULT_REGISTRY
    civitai: str = DEFAULT_CIVITAI
    inference: str = DEFAULT_INFERENCE
    # When set, every /api call and the web UI need it (x-api-key or Authorization: Bearer).
    api_key: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    # Largest body of any other /api route (uploads: max_upload_bytes; upscale: its image's size).
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    auth_fail_limit: int = DEFAULT_AUTH_FAIL_LIMIT
    auth_fail_window: float = DEFAULT_AUTH_FAIL_WINDOW
    # An upload whose client sends nothing for this long is abandoned (408), seconds.
    upload_idle_timeout: float = 60.0
    # Origins allowed by CORS; empty means no CORS headers at all.
    cors_origins: list[str] = field(default_factory=list)
    # Deadline of unary calls to the services, seconds.
    rpc_timeout: float = 30.0
    # Mount the Gradio web UI at "/".
    ui: bool = True
    # Defaults of the UI's size and steps sliders (the demo stack's tiny models want small ones).
    ui_image_size: int = 1024
    ui_steps: int = 30
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> GatewaySettings:
        parser = build_parser()
        args = parser.parse_args(argv)
        origins = [o.strip() for o in (args.cors_origins or "").split(",") if o.strip()]
        return cls(
            listen=args.listen,
            registry=args.registry,
            civitai=args.civitai,
            inference=args.inference,
            api_key=env("API_KEY"),
            max_upload_bytes=args.max_upload_bytes,
            max_body_bytes=args.max_body_bytes,
            auth_fail_limit=args.auth_fail_limit,
            auth_fail_window=args.auth_fail_window,
            upload_idle_timeout=args.upload_idle_timeout,
            cors_origins=origins,
            rpc_timeout=args.rpc_timeout,
            ui=not args.no_ui,
            ui_image_size=args.ui_image_size,
            ui_steps=args.ui_steps,
            log_level=args.log_level,
            log_format=args.log_format,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="HTTP API (/api/v1, OpenAPI at /docs) and web UI over the model manager's gRPC services. "
        "Set MODELMGR_API_KEY to require an API key (x-api-key header or Authorization: Bearer) "
        "for every API call and for the UI.",
    )
    add_common_settings(parser, listen_env="GATEWAY_LISTEN", default_listen=DEFAULT_GATEWAY)
    add_setting(parser, "--registry", "REGISTRY_ADDR", DEFAULT_REGISTRY, "registry service address")
    add_setting(parser, "--civitai", "MODELMGR_CIVITAI_ADDR", DEFAULT_CIVITAI, "CivitAI service address")
    add_setting(parser, "--inference", "INFERENCE_ADDR", DEFAULT_INFERENCE, "inference service address")
    add_setting(parser, "--max-upload-bytes", "MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES,
                "largest accepted upload, bytes", type=int)
    add_setting(parser, "--max-body-bytes", "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES,
                "largest JSON body of any other API route, bytes (larger: 413)", type=int)
    add_setting(parser, "--auth-fail-limit", "AUTH_FAIL_LIMIT", DEFAULT_AUTH_FAIL_LIMIT,
                "failed logins / API keys per client IP within --auth-fail-window before 429 (0: off)", type=int)
    add_setting(parser, "--auth-fail-window", "AUTH_FAIL_WINDOW", DEFAULT_AUTH_FAIL_WINDOW,
                "sliding window of --auth-fail-limit, seconds", type=float)
    add_setting(parser, "--upload-idle-timeout", "UPLOAD_IDLE_TIMEOUT", 60.0,
                "seconds an upload may send nothing before it is abandoned (408)", type=float)
    add_setting(parser, "--cors-origins", "CORS_ORIGINS", "", "comma-separated origins allowed by CORS (none if empty)")
    add_setting(parser, "--rpc-timeout", "RPC_TIMEOUT", 30.0, "deadline of unary service calls, seconds", type=float)
    add_setting(parser, "--ui-image-size", "UI_IMAGE_SIZE", 1024, "default width/height in the UI", type=int)
    add_setting(parser, "--ui-steps", "UI_STEPS", 30, "default steps in the UI", type=int)
    parser.add_argument("--no-ui", action="store_true", help="serve the API only, without the web UI")
    return parser
