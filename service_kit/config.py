"""Configuration helpers: every setting is a flag whose default comes from a MODELMGR_* variable.

Each service declares its own flags with these helpers, so `--help` shows the
variable and default of each, and tests pass flags instead of mutating the
environment.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV_PREFIX = "MODELMGR_"

DEFAULT_REGISTRY = "127.0.0.1:50051"
DEFAULT_CIVITAI = "127.0.0.1:50052"
DEFAULT_INFERENCE = "127.0.0.1:50053"
DEFAULT_GATEWAY = "127.0.0.1:8000"

# The default base checkpoint: its name wherever a checkpoint is named (registry, inference, UI, CLI),
# and where its file lies on the models volume (a diffusers folder at its parent works too).
DEFAULT_CHECKPOINT = "illustrious-xl"
DEFAULT_CHECKPOINT_FILE = Path(DEFAULT_CHECKPOINT) / "Illustrious-XL-v0.1.safetensors"


def env(name: str, default: str | None = None) -> str | None:
    """MODELMGR_<name>, or `name` itself when it already carries a prefix (CIVITAI_TOKEN)."""
    key = name if name.startswith(("MODELMGR_", "CIVITAI_")) else ENV_PREFIX + name
    value = os.environ.get(key)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENV_PREFIX}{name}: expected a boolean, got {value!r}")


def add_setting(
    parser: argparse.ArgumentParser,
    flag: str,
    env_name: str,
    default: object,
    help: str,
    *,
    type: type = str,
) -> None:
    """Add --flag whose default is $MODELMGR_<env_name> (or `default`)."""
    raw = env(env_name)
    value = type(raw) if raw is not None else default
    shown = env_name if env_name.startswith(("MODELMGR_", "CIVITAI_")) else ENV_PREFIX + env_name
    parser.add_argument(flag, default=value, type=type, help=f"{help} (env {shown}; default: %(default)s)")


def add_common_settings(parser: argparse.ArgumentParser, *, listen_env: str, default_listen: str) -> None:
    add_setting(parser, "--listen", listen_env, default_listen, "address to listen on, HOST:PORT")
    add_setting(parser, "--log-level", "LOG_LEVEL", "INFO", "log level")
    add_setting(parser, "--log-format", "LOG_FORMAT", "json", "log format: json or console")


def add_volume_settings(parser: argparse.ArgumentParser) -> None:
    add_setting(parser, "--user-models-dir", "USER_MODELS_DIR", Path("data/user-models"), "user-models volume", type=Path)
    add_setting(parser, "--models-dir", "MODELS_DIR", Path("data/models"), "infrastructure models volume", type=Path)
