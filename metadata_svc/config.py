"""Settings of the registry, each declared once: default, flag, MODELMGR_* variable, help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from service_kit.config import (
    DEFAULT_REGISTRY,
    CliSettings,
    listen_setting,
    log_format_setting,
    log_level_setting,
    models_dir_setting,
    setting,
    user_models_dir_setting,
)

GIB = 1024**3


@dataclass
class RegistrySettings(CliSettings):
    CLI_PROG: ClassVar[str] = "python -m metadata_svc"
    CLI_DESCRIPTION: ClassVar[str] = "SDXL model registry"

    listen: str = listen_setting("MODELMGR_REGISTRY_LISTEN", DEFAULT_REGISTRY)
    user_models_dir: Path = user_models_dir_setting()
    models_dir: Path = models_dir_setting()
    # Uploads larger than this are refused while they stream (RESOURCE_EXHAUSTED / UPLOAD_TOO_LARGE).
    max_upload_bytes: int = setting(50 * GIB, help="largest upload accepted, in bytes",
                                    env="MODELMGR_MAX_UPLOAD_BYTES", positive=True)
    # An upload whose client sends nothing for this long is abandoned (its .part removed, its name freed),
    # so a stalled client cannot hold a name and a file descriptor for ever. Longer than the gateway's.
    upload_idle_timeout: float = setting(
        120.0, help="abandon an upload whose client sends nothing for this many seconds",
        env="MODELMGR_UPLOAD_IDLE_TIMEOUT", positive=True)
    # .ckpt/.pt/.pth/.bin files unpickle on load, which can run code; refused unless enabled.
    allow_pickle: bool = setting(
        False, help="accept pickle formats (.ckpt/.pt/.pth/.bin), which can run code when loaded",
        env="MODELMGR_ALLOW_PICKLE")
    log_level: str = log_level_setting()
    log_format: str = log_format_setting()
