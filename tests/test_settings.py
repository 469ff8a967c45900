"""Every setting of every service is declared once: a flag and a MODELMGR_* variable (secrets: the variable only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from civitai_svc.config import CivitaiSettings
from gateway.config import GatewaySettings
from inference_svc.config import InferenceSettings
from metadata_svc.config import RegistrySettings
from service_kit.config import setting_of

SETTINGS = [RegistrySettings, CivitaiSettings, InferenceSettings, GatewaySettings]
# Secrets have no flag on purpose (a flag shows up in `ps`): these, and only these, are environment only.
ENV_ONLY = {(CivitaiSettings, "token"): "CIVITAI_TOKEN", (GatewaySettings, "api_key"): "MODELMGR_API_KEY"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for cls in SETTINGS:
        for f in dataclasses.fields(cls):
            spec = setting_of(f)
            for name in (spec.env_name(f.name), *spec.aliases):
                monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_every_field_has_a_flag_and_a_variable(cls):
    for f in dataclasses.fields(cls):
        spec = setting_of(f)
        if (cls, f.name) in ENV_ONLY:
            assert spec.env_only and spec.flag_name(f.name) is None
            assert spec.env_name(f.name) == ENV_ONLY[(cls, f.name)]
            continue
        assert not spec.env_only, f"{cls.__name__}.{f.name} is environment only but not a known secret"
        assert spec.flag_name(f.name).startswith("--"), f.name
        assert spec.env_name(f.name).startswith("MODELMGR_"), f.name
        assert spec.help, f.name


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_help_lists_every_flag_and_variable(cls):
    text = " ".join(cls.parser().format_help().split())
    for f in dataclasses.fields(cls):
        spec = setting_of(f)
        assert spec.env_name(f.name) in text, f.name
        flag = spec.flag_name(f.name)
        if flag is not None:
            assert flag in text, flag


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_defaults_match_the_dataclass(cls):
    """No flags, no variables: the same settings as the dataclass' own defaults."""
    parsed = cls.from_args([])
    assert parsed == cls()


def _sample(value: object, hint: object, n: int) -> tuple[str, object]:
    """The n-th value unlike the default (and unlike the others), as text and as parsed."""
    if isinstance(value, bool):
        return ("false", False) if value else ("true", True)
    if isinstance(value, int):
        return str(value + 7 * n), value + 7 * n
    if isinstance(value, float):
        return str(value + 1.5 * n), value + 1.5 * n
    if isinstance(value, Path) or "Path" in str(hint):
        return f"/elsewhere/{n}", Path(f"/elsewhere/{n}")
    if isinstance(value, list):
        return f"http://a{n}, http://b{n}", [f"http://a{n}", f"http://b{n}"]
    return f"127.0.0.1:{4240 + n}", f"127.0.0.1:{4240 + n}"


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_variable_and_flag_each_set_the_value_and_the_flag_wins(cls, monkeypatch):
    defaults = cls()
    for f in dataclasses.fields(cls):
        spec = setting_of(f)
        default = getattr(defaults, f.name)
        text, parsed = _sample(default, f.type, 1)
        with monkeypatch.context() as m:
            m.setenv(spec.env_name(f.name), text)
            assert getattr(cls.from_args([]), f.name) == parsed, f"{spec.env_name(f.name)} sets {f.name}"
            flag = spec.flag_name(f.name)
            if flag is None:
                continue
            if isinstance(default, bool):
                # The variable says one thing, the flag the other: the flag wins.
                argv = [flag if default else "--no-" + flag[2:]]
                m.setenv(spec.env_name(f.name), "true" if not default else "false")
                assert getattr(cls.from_args(argv), f.name) is default
                continue
            m.setenv(spec.env_name(f.name), text)
            flag_text, flag_parsed = _sample(default, f.type, 2)
            assert getattr(cls.from_args([flag, flag_text]), f.name) == flag_parsed, f"{flag} wins over the variable"
        assert getattr(cls.from_args([]), f.name) == default


def test_older_variable_names_still_work(monkeypatch):
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://mirror.example/")
    assert CivitaiSettings.from_args([]).base_url == "http://mirror.example"
    monkeypatch.setenv("MODELMGR_CIVITAI_BASE_URL", "http://primary.example")
    assert CivitaiSettings.from_args([]).base_url == "http://primary.example"


def test_secrets_come_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("CIVITAI_TOKEN", "tok")
    monkeypatch.setenv("MODELMGR_API_KEY", "key")
    assert CivitaiSettings.from_args([]).token == "tok"
    assert GatewaySettings.from_args([]).api_key == "key"
    with pytest.raises(SystemExit):
        CivitaiSettings.from_args(["--token", "tok"])
    with pytest.raises(SystemExit):
        GatewaySettings.from_args(["--api-key", "key"])


@pytest.mark.parametrize("argv", [["--registry-timeout", "0"]])
def test_inference_refuses_a_nonpositive_registry_timeout(argv):
    with pytest.raises(SystemExit):
        InferenceSettings.from_args(argv)
    assert InferenceSettings.from_args(["--registry-timeout", "2.5"]).registry_timeout_s == 2.5


@pytest.mark.parametrize(("cls", "argv"), [
    (CivitaiSettings, ["--read-timeout", "0"]),
    (CivitaiSettings, ["--connect-timeout", "-1"]),
    (CivitaiSettings, ["--max-resumes", "-1"]),
    (RegistrySettings, ["--upload-idle-timeout", "0"]),
])
def test_refuses_values_out_of_range(cls, argv):
    with pytest.raises(SystemExit):
        cls.from_args(argv)


def test_a_bad_variable_names_itself(monkeypatch, capsys):
    monkeypatch.setenv("MODELMGR_INFERENCE_MAX_QUEUE", "lots")
    with pytest.raises(SystemExit):
        InferenceSettings.from_args([])
    assert "MODELMGR_INFERENCE_MAX_QUEUE" in capsys.readouterr().err


def test_a_list_flag_is_repeatable_and_replaces_the_variable(monkeypatch):
    monkeypatch.setenv("MODELMGR_LIBRARY_ROOT", "/from/env")
    assert RegistrySettings.from_args([]).library_root == ["/from/env"]
    settings = RegistrySettings.from_args(["--library-root", "/a", "--library-root", "/b,/c"])
    assert settings.library_root == ["/a", "/b", "/c"]
