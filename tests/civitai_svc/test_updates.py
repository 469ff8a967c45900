"""Updates through the wire: the bulk check, early access, ignore/unignore, "download update", `modelmgr updates`.

A real registry, the CivitAI service and the fake CivitAI on 127.0.0.1. The large library is written into the
registry's index before it starts (devtools.update_library), as bench_registry does.
"""

from __future__ import annotations

import asyncio
import os
import sys

import grpc
import pytest
import pytest_asyncio
from civitai_helpers import TOKEN, Stack, status_of
from google.protobuf import field_mask_pb2

from civitai_svc.app import create_server
from civitai_svc.config import CivitaiSettings
from civitai_svc.updates import IGNORED_FILE
from devtools.fake_civitai import FakeCivitai, make_safetensors
from devtools.update_library import seed_library
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc, model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import insecure_channel

S = civitai_pb2
LIBRARY = 2_000


@pytest_asyncio.fixture
async def library(volumes):
    """(stack, installed): LIBRARY CivitAI LoRAs in the registry, every third with a newer version on the fake."""
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings

    user_models, models = volumes
    fake = FakeCivitai(token=TOKEN)
    installed = await asyncio.to_thread(seed_library, user_models, fake, LIBRARY)
    registry_server = await create_registry(
        RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models))
    await registry_server.start()
    settings = CivitaiSettings(listen="127.0.0.1:0", registry=registry_server.address, user_models_dir=user_models,
                               base_url=fake.base_url, token=TOKEN, retry_attempts=2, retry_backoff_base=0.001,
                               retry_after_max=0.02, disk_reserve_bytes=0)
    server = await create_server(settings)
    await server.start()
    channels = [insecure_channel(server.address), insecure_channel(registry_server.address)]
    stack = Stack(fake, civitai_pb2_grpc.CivitaiServiceStub(channels[0]),
                  registry_pb2_grpc.ModelRegistryServiceStub(channels[1]), user_models, settings, server,
                  registry_server)
    yield stack, installed
    for channel in channels:
        await channel.close()
    await server.stop(0)
    await registry_server.stop(0)
    await asyncio.to_thread(fake.close)


async def check(stack: Stack, **kwargs) -> dict[str, S.ModelUpdate]:
    reply = await stack.civitai.CheckUpdates(S.CheckUpdatesRequest(**kwargs), timeout=120)
    return {u.filename: u for u in reply.updates}


async def test_two_thousand_installed_models_are_checked_in_twenty_calls(library):
    stack, installed = library
    stack.fake.reset_counters()
    updates = await check(stack)
    assert stack.fake.calls("models-ids") == LIBRARY // 100  # 20 pages of 100
    assert stack.fake.calls("model") == 0 and stack.fake.calls("version") == 0  # nothing one by one
    stack.fake.reset_counters()
    stack.fake.rate_limit("models-ids", times=1, retry_after="0")  # a 429 on the way: retried, nothing lost
    assert await check(stack) == updates
    assert stack.fake.calls("models-ids") == LIBRARY // 100 + 1
    assert len(updates) == LIBRARY and all(u.checked for u in updates.values())
    for model in installed:
        u = updates[model.filename]
        assert (u.model_id, u.installed_version_id, u.installed_version_name) == (model.model_id, model.version_id,
                                                                                  "v1.0")
        if model.latest_version_id:
            assert u.update_available and u.latest_version_id == model.latest_version_id
            assert (u.latest_version_name, u.latest_base_model) == ("v2.0", "NoobAI")
            assert u.latest_published_at.seconds > 0
        else:
            assert not u.update_available and u.latest_version_id == model.version_id
        assert not u.early_access and not u.ignored

    # A check of named files asks for those models only; answers are fresh, never the cache's.
    named = [m.filename for m in installed[:3]]
    before = stack.fake.calls("models-ids")
    assert list(await check(stack, filenames=named)) == named
    assert list(await check(stack, filenames=named)) == named
    assert stack.fake.calls("models-ids") == before + 2


async def test_models_civitai_leaves_out_are_not_checked_and_errors_say_why(library):
    stack, installed = library
    gone = installed[1]
    stack.fake.fail("models-ids", 503, times=3)  # the first page fails past its retries
    updates = await check(stack)
    assert sum(1 for u in updates.values() if not u.checked) == 100  # that page only; the rest answered
    assert not updates[gone.filename].checked and updates[gone.filename].latest_version_id == 0

    stack.fake.fail("models-ids", 503, times=100)
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # nothing answered: the check fails and says why
        await check(stack)
    assert status_of(exc.value)[0] == grpc.StatusCode.UNAVAILABLE
    assert status_of(exc.value)[1].reason == "CIVITAI_UNAVAILABLE"
    stack.fake.clear_failures()

    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await check(stack, filenames=["nothing-here.safetensors"])
    assert (status_of(exc.value)[0], status_of(exc.value)[1].reason) == (grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await check(stack, filenames=[f"m{i}.safetensors" for i in range(10_001)])
    assert status_of(exc.value)[1].reason == "TOO_MANY_ITEMS"


async def test_an_early_access_only_update_is_marked_with_its_deadline(stack):
    lora = stack.fake.add_lora(name="Early Bird", data=make_safetensors("lora", 10_000, seed=31))
    job = await stack.download(lora.url)
    newer = stack.fake.add_version(lora.model_id, version_name="v2.0", data=make_safetensors("lora", 10_000, seed=32))
    stack.fake.early_access(newer.version_id, deadline="2031-05-01T00:00:00.000Z")
    update = (await check(stack))[job.filename]
    assert update.update_available and update.latest_version_id == newer.version_id
    assert update.early_access and update.early_access_deadline.ToDatetime().isoformat() == "2031-05-01T00:00:00"

    stack.fake.early_access(newer.version_id, deadline="2020-01-01T00:00:00.000Z")  # the deadline passed: public
    update = (await check(stack))[job.filename]
    assert update.update_available and not update.early_access and not update.early_access_deadline.seconds


async def test_ignore_and_unignore_persist_across_a_restart(stack):
    lora = stack.fake.add_lora(name="Ignorable", data=make_safetensors("lora", 10_000, seed=41))
    job = await stack.download(lora.url)
    v2 = stack.fake.add_version(lora.model_id, version_name="v2.0", data=make_safetensors("lora", 10_000, seed=42))
    ignored = await stack.civitai.IgnoreUpdate(S.IgnoreUpdateRequest(model_id=lora.model_id, version_id=v2.version_id))
    assert list(ignored.ignored_version_ids) == [v2.version_id]
    again = await stack.civitai.IgnoreUpdate(S.IgnoreUpdateRequest(model_id=lora.model_id, version_id=v2.version_id))
    assert list(again.ignored_version_ids) == [v2.version_id]  # twice is once
    update = (await check(stack))[job.filename]
    assert update.update_available and update.ignored
    assert (stack.user_models / IGNORED_FILE).is_file()

    await stack.server.stop(0)
    stack = await stack.restarted()
    assert (await check(stack))[job.filename].ignored

    v3 = stack.fake.add_version(lora.model_id, version_name="v3.0", data=make_safetensors("lora", 10_000, seed=43))
    update = (await check(stack))[job.filename]  # a newer version than the ignored one shows again
    assert update.latest_version_id == v3.version_id and not update.ignored

    left = await stack.civitai.UnignoreUpdate(S.UnignoreUpdateRequest(model_id=lora.model_id, version_id=v2.version_id))
    assert list(left.ignored_version_ids) == []
    await stack.civitai.IgnoreUpdate(S.IgnoreUpdateRequest(model_id=lora.model_id, version_id=v3.version_id))
    await stack.civitai.UnignoreUpdate(S.UnignoreUpdateRequest(model_id=lora.model_id, version_id=v3.version_id))
    await stack.server.stop(0)
    stack = await stack.restarted()
    assert not (await check(stack))[job.filename].ignored

    for bad in (S.IgnoreUpdateRequest(model_id=0, version_id=1), S.IgnoreUpdateRequest(model_id=1, version_id=-5)):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stack.civitai.IgnoreUpdate(bad)
        assert (status_of(exc.value)[0], status_of(exc.value)[1].reason) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                                             "INVALID_ID")


async def test_a_corrupt_ignore_file_is_moved_aside_not_fatal(stack_factory, volumes):
    user_models, _ = volumes
    (user_models / IGNORED_FILE).write_text("{not json")
    stack = await stack_factory()
    assert (user_models / (IGNORED_FILE + ".corrupt")).is_file()
    reply = await stack.civitai.IgnoreUpdate(S.IgnoreUpdateRequest(model_id=7, version_id=8))
    assert list(reply.ignored_version_ids) == [8]


async def edit(stack: Stack, filename: str, **fields) -> model_pb2.Model:
    reply = await stack.registry.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename=filename, **fields), update_mask=field_mask_pb2.FieldMask(paths=list(fields))))
    return reply.model


async def registered(stack: Stack) -> dict[str, model_pb2.Model]:
    return {m.filename: m for m in await stack.models()}


async def test_download_update_carries_the_edits_and_keeps_or_deletes_the_old_one(stack):
    lora = stack.fake.add_lora(name="Carry Me", data=make_safetensors("lora", 10_000, seed=51),
                               trained_words=["carry v1"], tags=("style",))
    v1 = await stack.download(lora.url)
    await edit(stack, v1.filename, trigger_words=["my words", "carry v1"], recommended_weight=0.55, tags=["mine"],
               display_name="My Carry")
    v2 = stack.fake.add_version(lora.model_id, version_name="v2.0", data=make_safetensors("lora", 10_000, seed=52),
                                trained_words=["carry v2"])
    job = await stack.download(f"v:{v2.version_id}", replaces=v1.filename)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error.message
    assert (job.replaces, job.delete_replaced, job.replaced_deleted, job.replace_note) == (v1.filename, False, False, "")
    assert set(job.carried_fields) == {"display_name", "trigger_words", "recommended_weight", "tags"}
    models = await registered(stack)
    new = models[job.filename]
    assert new.civitai_version_id == v2.version_id and new.filename != v1.filename
    assert list(new.trigger_words) == ["my words", "carry v1"] and new.recommended_weight == 0.55
    assert list(new.tags) == ["mine"] and new.display_name == "My Carry"
    assert set(new.user_edited_fields) >= set(job.carried_fields)  # still the user's on the new entry
    assert v1.filename in models and models[v1.filename].file_present  # kept, as asked
    assert (stack.user_models / "loras" / v1.filename).is_file()

    # The next update deletes the old one; fields the user never edited come from the new version.
    v3 = stack.fake.add_version(lora.model_id, version_name="v3.0", data=make_safetensors("lora", 10_000, seed=53),
                                trained_words=["carry v3"])
    third = await stack.download(f"v:{v3.version_id}", replaces=job.filename, delete_replaced=True)
    assert third.state == S.DOWNLOAD_STATE_SUCCEEDED and third.replaced_deleted and not third.replace_note
    models = await registered(stack)
    assert job.filename not in models and not (stack.user_models / "loras" / job.filename).exists()
    assert list(models[third.filename].trigger_words) == ["my words", "carry v1"]


async def test_an_update_of_an_unedited_entry_takes_the_new_versions_values(stack):
    lora = stack.fake.add_lora(name="Plain", data=make_safetensors("lora", 10_000, seed=61), trained_words=["plain v1"])
    v1 = await stack.download(lora.url)
    v2 = stack.fake.add_version(lora.model_id, version_name="v2.0", data=make_safetensors("lora", 10_000, seed=62),
                                trained_words=["plain v2"])
    job = await stack.download(f"v:{v2.version_id}", replaces=v1.filename, delete_replaced=True)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED and list(job.carried_fields) == [] and job.replaced_deleted
    models = await registered(stack)
    assert list(models[job.filename].trigger_words) == ["plain v2"] and v1.filename not in models


async def test_a_failed_update_never_loses_the_old_model(stack):
    lora = stack.fake.add_lora(name="Fragile", data=make_safetensors("lora", 10_000, seed=71))
    v1 = await stack.download(lora.url)
    await edit(stack, v1.filename, trigger_words=["keep me"])
    v2 = stack.fake.add_version(lora.model_id, version_name="v2.0", data=make_safetensors("lora", 10_000, seed=72))
    stack.fake.corrupt(v2.file_id)
    job = await stack.download(f"v:{v2.version_id}", replaces=v1.filename, delete_replaced=True)
    assert job.state == S.DOWNLOAD_STATE_FAILED and not job.replaced_deleted
    models = await registered(stack)
    assert set(models) == {v1.filename} and list(models[v1.filename].trigger_words) == ["keep me"]
    assert (stack.user_models / "loras" / v1.filename).is_file()


async def test_replaces_must_name_an_older_entry_of_the_same_model(stack):
    lora = stack.fake.add_lora(name="Mine", data=make_safetensors("lora", 10_000, seed=81))
    other = stack.fake.add_lora(name="Other", data=make_safetensors("lora", 10_000, seed=82))
    mine = await stack.download(lora.url)
    theirs = await stack.download(other.url)
    v2 = stack.fake.add_version(lora.model_id, version_name="v2.0", data=make_safetensors("lora", 10_000, seed=83))
    cases = [
        ("nothing.safetensors", grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
        (theirs.filename, grpc.StatusCode.FAILED_PRECONDITION, "NOT_SAME_MODEL"),
    ]
    for replaces, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stack.civitai.StartDownload(S.StartDownloadRequest(reference=f"v:{v2.version_id}", replaces=replaces,
                                                                     delete_replaced=True), timeout=30)
        assert (status_of(exc.value)[0], status_of(exc.value)[1].reason) == (code, reason)
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # the very version installed: nothing to replace it with
        await stack.civitai.StartDownload(S.StartDownloadRequest(reference=lora.url, replaces=mine.filename), timeout=30)
    assert status_of(exc.value)[1].reason == "NOT_SAME_MODEL"
    assert set(await registered(stack)) == {mine.filename, theirs.filename}


async def modelmgr(stack: Stack, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelmgr", "--registry", stack.registry_server.address, "--civitai", stack.server.address,
        "updates", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "250"})
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_modelmgr_updates_lists_and_downloads(stack):
    fresh = stack.fake.add_lora(name="Cli Fresh", data=make_safetensors("lora", 10_000, seed=91))
    early = stack.fake.add_lora(name="Cli Early", data=make_safetensors("lora", 10_000, seed=92))
    current = stack.fake.add_lora(name="Cli Current", data=make_safetensors("lora", 10_000, seed=93))
    jobs = [await stack.download(m.url) for m in (fresh, early, current)]
    await edit(stack, jobs[0].filename, recommended_weight=0.7)
    v2 = stack.fake.add_version(fresh.model_id, version_name="v2.0", data=make_safetensors("lora", 10_000, seed=94))
    ea = stack.fake.add_version(early.model_id, version_name="v2.0-ea", data=make_safetensors("lora", 10_000, seed=95))
    stack.fake.early_access(ea.version_id)

    code, out, err = await modelmgr(stack)
    assert code == 0, out + err
    assert jobs[0].filename in out and jobs[1].filename in out and jobs[2].filename not in out
    assert "until 2030-01-01" in out  # the early-access one, with its deadline
    assert "3 model(s) checked: 2 update(s) (0 ignored, 1 in early access)" in out
    code, out, err = await modelmgr(stack, "--all")
    assert code == 0 and jobs[2].filename in out and "up to date" in out

    code, out, err = await modelmgr(stack, "--download", "--delete-old")
    assert code == 0, out + err
    assert f"{jobs[0].filename} →" in out and "old deleted" in out and "recommended_weight" in out
    models = await registered(stack)
    new = [m for m in models.values() if m.civitai_version_id == v2.version_id]
    assert len(new) == 1 and new[0].recommended_weight == 0.7 and jobs[0].filename not in models
    assert jobs[1].filename in models  # early access: not attempted, kept

    # Ignored updates are listed as such and not downloaded.
    await stack.civitai.IgnoreUpdate(S.IgnoreUpdateRequest(model_id=early.model_id, version_id=ea.version_id))
    code, out, err = await modelmgr(stack, "--download")
    assert code == 0 and "1 update(s) (1 ignored, 1 in early access)" in out and "nothing to download" in out

