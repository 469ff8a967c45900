"""Configuration helpers: every setting is a flag whose default comes from a MODELMGR_* variable.

A service's settings are a dataclass whose fields are declared once, with
`setting(default, help=..., env=..., flag=...)`: `parse_settings` builds the
argparse parser from those fields (flag `--field-name`, variable
`MODELMGR_FIELD_NAME` unless given, the variable's value as the flag's default,
so a flag wins over the environment) and constructs the dataclass. `--help`
shows the variable and default of each; tests pass flags instead of mutating
the environment, or construct the dataclass directly with keyword arguments.

Secrets (API keys, tokens) are declared `env_only`: no flag, because a flag
shows up in `ps`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

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


# ---------------------------------------------------------------- declared settings

SETTING_KEY = "modelmgr.setting"
T = TypeVar("T")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one dataclass field is set from the command line and the environment."""

    help: str
    env: str | None = None  # full variable name; None: MODELMGR_<FIELD_NAME>
    flag: str | None = None  # None: --field-name
    aliases: tuple[str, ...] = ()  # older variable names still read, after `env`
    env_only: bool = False  # a secret: no flag (it would show in `ps`)
    positive: bool = False  # refuse values <= 0
    minimum: float | None = None  # refuse values below this

    def env_name(self, field_name: str) -> str:
        return self.env or ENV_PREFIX + field_name.upper()

    def flag_name(self, field_name: str) -> str | None:
        return None if self.env_only else (self.flag or "--" + field_name.replace("_", "-"))


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    env: str | None = None,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    env_only: bool = False,
    positive: bool = False,
    minimum: float | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field declared once: its default, flag, MODELMGR_* variable and help."""
    if env is not None and not env.startswith(ENV_PREFIX) and not env_only:
        raise ValueError(f"{env}: a setting's variable is spelt in full, {ENV_PREFIX}... (older names: aliases)")
    spec = Setting(help=help, env=env, flag=flag, aliases=tuple(aliases), env_only=env_only,
                   positive=positive, minimum=minimum)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={SETTING_KEY: spec})


def setting_of(f: dataclasses.Field[Any]) -> Setting:
    spec = f.metadata.get(SETTING_KEY)
    if not isinstance(spec, Setting):
        raise TypeError(f"field {f.name!r} is not declared with service_kit.config.setting()")
    return spec


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected a boolean, got {raw!r}")


def _parse_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _converter(hint: Any) -> tuple[Callable[[str], Any], bool]:
    """(str -> value, is_bool) for a field's type: str, int, float, bool, Path, list[str], or X | None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported setting type {hint!r}")
        hint = args[0]
    if typing.get_origin(hint) is list or hint is list:
        return _parse_list, False
    if hint is bool:
        return _parse_bool, True
    if hint in (str, int, float, Path):
        return hint, False
    raise TypeError(f"unsupported setting type {hint!r}")


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _env_value(spec: Setting, field_name: str) -> tuple[str, str] | None:
    """(variable, raw value) of the first variable set (empty counts as unset)."""
    for name in (spec.env_name(field_name), *spec.aliases):
        raw = os.environ.get(name)
        if raw not in (None, ""):
            return name, raw
    return None


def _shown(value: Any) -> str:
    shown = ",".join(value) if isinstance(value, list) else str(value)
    return shown.replace("%", "%%")


def settings_parser(cls: type, *, prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of the settings dataclass `cls` (env-only ones excepted).

    Each flag's default is its variable's value when set (so a flag wins over the environment),
    else the field's default.
    """
    secrets = [f"{setting_of(f).env_name(f.name)} ({setting_of(f).help})"
               for f in dataclasses.fields(cls) if setting_of(f).env_only]
    epilog = ("environment only (no flag, which would show in `ps`): " + ", ".join(secrets)) if secrets else None
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(typing.cast(Any, cls)):  # cls is a dataclass: T cannot say so
        spec = setting_of(f)
        flag = spec.flag_name(f.name)
        if flag is None:
            continue
        convert, is_bool = _converter(hints[f.name])
        default = _from_env(parser, spec, f, convert)
        names = " / ".join((spec.env_name(f.name), *spec.aliases))
        text = f"{spec.help} (env {names}; default: {_shown(default)})"
        if is_bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif convert is _parse_list:
            parser.add_argument(flag, dest=f.name, action=_ListAction, default=default, help=f"{text}; repeatable")
        else:
            parser.add_argument(flag, dest=f.name, type=convert, default=default, help=text)
    return parser


class _ListAction(argparse.Action):
    """A list flag, comma-separated and repeatable: `--root a --root b,c` is [a, b, c]. The flags given
    replace the default (the variable's value or the field's), as a single flag would."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = getattr(namespace, self.dest, None)
        items = given if isinstance(given, _Given) else _Given()
        items.extend(_parse_list(str(values)))
        setattr(namespace, self.dest, items)


class _Given(list[str]):
    """Items from this parse's flags, told apart from the default list they replace."""


def _from_env(parser: argparse.ArgumentParser, spec: Setting, f: dataclasses.Field[Any], convert: Callable[[str], Any]) -> Any:
    found = _env_value(spec, f.name)
    if found is None:
        return _field_default(f)
    name, raw = found
    try:
        return convert(raw)
    except ValueError as exc:
        parser.error(f"{name}={raw!r}: {exc}")


def parse_settings(cls: type[T], argv: Sequence[str] | None, *, prog: str, description: str) -> T:
    """Parse `argv` (and the environment) into the settings dataclass `cls`.

    Checks declared on fields (positive, minimum) and then the class's own `validate()`, when it
    has one (raise ValueError to refuse; it may also normalise values), end in a usage error.
    """
    parser = settings_parser(cls, prog=prog, description=description)
    args = parser.parse_args(argv)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, cls)):  # cls is a dataclass: T cannot say so
        spec = setting_of(f)
        flag = spec.flag_name(f.name)
        if flag is None:
            values[f.name] = _from_env(parser, spec, f, _converter(hints[f.name])[0])
            continue
        value = getattr(args, f.name)
        if spec.positive and value is not None and value <= 0:
            parser.error(f"{flag} must be positive")
        if spec.minimum is not None and value is not None and value < spec.minimum:
            parser.error(f"{flag} must be at least {spec.minimum:g}")
        values[f.name] = value
    settings = cls(**values)
    validate = getattr(settings, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            parser.error(str(exc))
    return settings


# Settings every service shares, declared once here.

def listen_setting(env: str, default: str) -> Any:
    return setting(default, help="address to listen on, HOST:PORT", env=env)


def registry_addr_setting() -> Any:
    return setting(DEFAULT_REGISTRY, help="model registry address, HOST:PORT", env="MODELMGR_REGISTRY_ADDR")


def user_models_dir_setting() -> Any:
    return setting(Path("data/user-models"), help="user-models volume", env="MODELMGR_USER_MODELS_DIR")


def models_dir_setting() -> Any:
    return setting(Path("data/models"), help="infrastructure models volume", env="MODELMGR_MODELS_DIR")


def log_level_setting() -> Any:
    return setting("INFO", help="log level", env="MODELMGR_LOG_LEVEL")


def log_format_setting() -> Any:
    return setting("json", help="log format: json or console", env="MODELMGR_LOG_FORMAT")


class CliSettings:
    """`parser()` and `from_args()` for a settings dataclass, written once; the class names its command."""

    CLI_PROG: ClassVar[str]
    CLI_DESCRIPTION: ClassVar[str]

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        return settings_parser(cls, prog=cls.CLI_PROG, description=cls.CLI_DESCRIPTION)

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> Self:
        return parse_settings(cls, argv, prog=cls.CLI_PROG, description=cls.CLI_DESCRIPTION)
