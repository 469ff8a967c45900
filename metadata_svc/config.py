"""Settings of the registry: flags whose defaults come from MODELMGR_* variables."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from service_kit.config import (
    DEFAULT_REGISTRY,
    add_common_settings,
    add_setting,
    add_volume_settings,
    env_bool,
)

GIB = 1024**3


@dataclass
class RegistrySettings:
    listen: str = DEFAULT_REGISTRY
    user_models_dir: Path = Path("data/user-models")
    models_dir: Path = Path("data/models")
    # Uploads larger than this are refused while they stream (RESOURCE_EXHAUSTED / UPLOAD_TOO_LARGE).
    max_upload_bytes: int = 50 * GIB
    # An upload whose client sends nothing for this long is abandoned (its .part removed, its name freed),
    # so a stalled client cannot hold a name and a file descriptor for ever. Longer than the gateway's.
    upload_idle_timeout: float = 120.0
    # .ckpt/.pt/.pth/.bin files unpickle on load, which can run code; refused unless enabled.
    allow_pickle: bool = False
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> RegistrySettings:
        parser = argparse.ArgumentParser(prog="python -m metadata_svc", description="SDXL model registry")
        add_common_settings(parser, listen_env="REGISTRY_LISTEN", default_listen=DEFAULT_REGISTRY)
        add_volume_settings(parser)
        add_setting(parser, "--max-upload-bytes", "MAX_UPLOAD_BYTES", 50 * GIB,
                    "largest upload accepted, in bytes", type=int)
        add_setting(parser, "--upload-idle-timeout", "UPLOAD_IDLE_TIMEOUT", 120.0,
                    "abandon an upload whose client sends nothing for this many seconds", type=float)
        parser.add_argument(
            "--allow-pickle",
            action=argparse.BooleanOptionalAction,
            default=env_bool("ALLOW_PICKLE", False),
            help="accept pickle formats (.ckpt/.pt/.pth/.bin), which can run code when loaded "
            "(env MODELMGR_ALLOW_PICKLE; default: %(default)s)",
        )
        args = parser.parse_args(argv)
        if args.max_upload_bytes <= 0:
            parser.error("--max-upload-bytes must be positive")
        if args.upload_idle_timeout <= 0:
            parser.error("--upload-idle-timeout must be positive")
        return cls(
            listen=args.listen,
            user_models_dir=args.user_models_dir,
            models_dir=args.models_dir,
            max_upload_bytes=args.max_upload_bytes,
            upload_idle_timeout=args.upload_idle_timeout,
            allow_pickle=args.allow_pickle,
            log_level=args.log_level,
            log_format=args.log_format,
        )
