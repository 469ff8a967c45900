"""Settings, reflection/health on the registry server, the volume lock, and List's ordered columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st
from registry_helpers import write_lora

from metadata_svc.app import create_server
from metadata_svc.config import GIB, RegistrySettings
from metadata_svc.listing import ListOrder
from metadata_svc.models import ModelEntry
from modelmanager.v1 import registry_pb2
from service_kit import insecure_channel
from service_kit.files import LockHeld


def test_settings_from_flags_and_environment(monkeypatch):
    defaults = RegistrySettings.from_args([])
    assert (defaults.listen, defaults.max_upload_bytes, defaults.allow_pickle) == ("127.0.0.1:50051", 50 * GIB, False)
    monkeypatch.setenv("MODELMGR_REGISTRY_LISTEN", "0.0.0.0:6000")
    monkeypatch.setenv("MODELMGR_USER_MODELS_DIR", "/vol/um")
    monkeypatch.setenv("MODELMGR_ALLOW_PICKLE", "yes")
    monkeypatch.setenv("MODELMGR_MAX_UPLOAD_BYTES", "1234")
    from_env = RegistrySettings.from_args([])
    assert (from_env.listen, from_env.user_models_dir, from_env.allow_pickle, from_env.max_upload_bytes) == (
        "0.0.0.0:6000", Path("/vol/um"), True, 1234)
    flags = RegistrySettings.from_args(["--listen", "127.0.0.1:7", "--models-dir", "/m", "--no-allow-pickle",
                                        "--log-format", "console"])
    assert (flags.listen, flags.models_dir, flags.allow_pickle, flags.log_format) == (
        "127.0.0.1:7", Path("/m"), False, "console")
    with pytest.raises(SystemExit):
        RegistrySettings.from_args(["--max-upload-bytes", "0"])


async def test_reflection_and_health(reg):
    async with insecure_channel(reg.server.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="modelmanager.v1.ModelRegistryService"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        replies = [r async for r in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(ask())]
    assert "modelmanager.v1.ModelRegistryService" in {s.name for s in replies[0].list_services_response.service}


async def test_one_registry_per_volume(reg):
    with pytest.raises(LockHeld) as caught:
        await create_server(RegistrySettings(listen="127.0.0.1:0", user_models_dir=reg.user_models,
                                             models_dir=reg.models))
    assert str(reg.user_models) in str(caught.value)
    await reg.server.stop(0)  # releases the volume
    again = await create_server(RegistrySettings(listen="127.0.0.1:0", user_models_dir=reg.user_models,
                                                 models_dir=reg.models))
    await again.start()
    await again.stop(0)


async def test_page_size_is_capped(reg):
    template = write_lora(reg.loras / "l0000.safetensors").read_bytes()
    for i in range(1, 1005):
        (reg.loras / f"l{i:04d}.safetensors").write_bytes(template)
    await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    resp = await reg.stub.ListModels(registry_pb2.ListModelsRequest(page_size=5000))
    assert (len(resp.models), resp.total_size) == (1000, 1005) and resp.next_page_token
    default = await reg.stub.ListModels(registry_pb2.ListModelsRequest())
    assert len(default.models) == 50


names = st.sampled_from([f"m{i}.safetensors" for i in range(12)])
ops = st.lists(st.tuples(st.sampled_from(["put", "pop"]), names, st.sampled_from(["Ink", "alpha", "Zed", "ink"]),
                         st.sampled_from(["lora", "checkpoint"])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_list_order_stays_sorted_under_changes(ops):
    models: dict[str, ModelEntry] = {}
    order = ListOrder([])
    for op, name, display, kind in ops:
        old = models.get(name)
        if op == "put":
            entry = ModelEntry(filename=name, type=kind, display_name=display)
            if old is not None:
                order.remove(old)
            models[name] = entry
            order.insert(entry)
        elif old is not None:
            order.remove(models.pop(name))
    expected = sorted(models.values(), key=ModelEntry.sort_key)
    assert order.entries == expected
    assert order.keys == [e.sort_key() for e in expected]
    assert order.types == [e.type for e in expected]
    assert order.matching("lora", "", ["ink"]) == [
        i for i, e in enumerate(expected) if e.type == "lora" and "ink" in e.search_text()]
