"""The index's journal (index_store.py, journal.py): O(1) durable writes, replay at start, compaction into
`.metadata.json`, and SIGKILL at any moment (writes, compaction) losing no acknowledged write."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from registry_helpers import LORA, create_request, write_lora

from metadata_svc import journal
from metadata_svc.app import create_server
from metadata_svc.config import RegistrySettings
from metadata_svc.errors import CorruptIndexError
from metadata_svc.index_store import IndexState, load_index, open_index, render
from metadata_svc.models import ModelEntry
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import insecure_channel

REPO = Path(__file__).resolve().parents[2]
JOURNALED = {"index_journal_from_bytes": 0, "index_compact_idle": 3600.0}  # journal always, compact at stop


def journals(user_models: Path) -> list[Path]:
    return [p for _, p in journal.journal_files(user_models / ".metadata.json")]


def entry(name: str, label: str = "", kind: str = "lora") -> ModelEntry:
    return ModelEntry(filename=name, type=kind, display_name=label or name, source="local", sha256="ab" * 32)


def assert_documented_shape(index: Path) -> dict:
    """What the original app reads: plain JSON with exactly these three keys."""
    data = json.loads(index.read_bytes())
    assert set(data) == {"version", "active_checkpoint", "models"} and data["version"] == 1
    assert all(value["filename"] == key and value["type"] in ("lora", "checkpoint")
               for key, value in data["models"].items())
    return data


# ---------------------------------------------------------------------- the record format


def test_records_round_trip_and_a_torn_tail_is_ignored(tmp_path):
    lines = [entry(f"m{i}.safetensors").json_line() for i in range(3)]
    data = b"".join([journal.put(lines[0]), journal.put(lines[1]), journal.delete("m0.safetensors"),
                     journal.active("base.safetensors")])
    records = list(journal.read_records(data))
    assert [(r.kind, r.name) for r in records] == [(journal.PUT, "m0.safetensors"), (journal.PUT, "m1.safetensors"),
                                                   (journal.DELETE, "m0.safetensors"),
                                                   (journal.ACTIVE, "base.safetensors")]
    assert records[1].value == json.loads(b"{" + lines[1] + b"}")["m1.safetensors"]
    whole = journal.put(lines[2])
    # What a crash can leave after the last acknowledged record: part of one, zeros, a wrong checksum.
    for tail in (whole[:-1], whole[: len(whole) // 2], b"\0" * 4096, b"\0" * 100 + b"\n",
                 b"00000000" + whole[8:]):
        assert [r.name for r in journal.read_records(data + tail)] == [r.name for r in records]


def test_damage_before_good_records_stops_start_up_and_touches_nothing(tmp_path):
    index = tmp_path / ".metadata.json"
    index.write_bytes(render("illustrious-xl", [entry("a.safetensors").json_line()]))
    good = journal.put(entry("b.safetensors").json_line())
    damaged = good.replace(b"b.safetensors", b"c.safetensors")  # checksum no longer matches
    path = journal.journal_path(index, 1)
    path.write_bytes(damaged + good)
    with pytest.raises(CorruptIndexError) as caught:
        open_index(index)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == damaged + good and journals(tmp_path) == [path]


def test_a_record_with_a_bad_entry_is_corrupt_not_skipped(tmp_path):
    index = tmp_path / ".metadata.json"
    journal.journal_path(index, 1).write_bytes(journal.put(b'"x.safetensors":{"type":"nonsense"}'))
    with pytest.raises(CorruptIndexError):
        load_index(index)


def test_every_state_an_interrupted_compaction_can_leave_replays_to_the_same_index(tmp_path):
    """Compaction writes the state of journals <= n into the file, then removes them oldest first, while
    appends go to n+1. Each state on the way (and a leftover temp file) must load the same."""
    index = tmp_path / ".metadata.json"
    base = {f"m{i}.safetensors": entry(f"m{i}.safetensors") for i in range(5)}
    j1 = [journal.put(entry("m1.safetensors", "one").json_line()), journal.delete("m2.safetensors"),
          journal.put(entry("m1.safetensors", "one again").json_line()), journal.active("m3.safetensors"),
          journal.put(entry("new.safetensors", "new").json_line())]
    j2 = [journal.put(entry("m2.safetensors", "back").json_line()), journal.delete("new.safetensors"),
          journal.put(entry("m1.safetensors", "two").json_line())]
    j3 = [journal.put(entry("m4.safetensors", "four").json_line()), journal.delete("m1.safetensors")]

    def replayed(*parts: list[bytes]) -> IndexState:
        state = IndexState(models=dict(base))
        for part in parts:
            for record in journal.read_records(b"".join(part)):
                if record.kind == journal.PUT:
                    state.models[record.name] = ModelEntry.from_json(record.name, record.value)
                elif record.kind == journal.DELETE:
                    state.models.pop(record.name, None)
                else:
                    state.active_checkpoint = record.name
        return state

    def lines(state: IndexState) -> list[bytes]:
        return [e.json_line() for e in state.models.values()]

    expected = replayed(j1, j2, j3)
    old_file = render("illustrious-xl", lines(IndexState(models=dict(base))))
    compacted = replayed(j1, j2)  # what a compaction covering journals 1 and 2 writes
    new_file = render(compacted.active_checkpoint, lines(compacted))
    states = {
        "before the rename": (old_file, [1, 2, 3], True),
        "renamed, nothing removed": (new_file, [1, 2, 3], False),
        "renamed, the oldest removed": (new_file, [2, 3], False),
        "renamed, both removed": (new_file, [3], False),
    }
    for label, (file_bytes, present, leftover_tmp) in states.items():
        for path in tmp_path.iterdir():
            path.unlink()
        index.write_bytes(file_bytes)
        for generation, part in ((1, j1), (2, j2), (3, j3)):
            if generation in present:
                journal.journal_path(index, generation).write_bytes(b"".join(part))
        if leftover_tmp:
            (tmp_path / ".metadata.json.abc123.tmp").write_bytes(new_file[: len(new_file) // 2])
        got = load_index(index)
        assert got is not None, label
        assert (got.active_checkpoint, lines(got)) == (expected.active_checkpoint, lines(expected)), label
        reopened = open_index(index)  # start-up compacts them away
        assert reopened is not None and lines(reopened) == lines(expected), label
        assert journals(tmp_path) == [], label
        assert lines(load_index(index) or IndexState()) == lines(expected), label


# ---------------------------------------------------------------------- a registry in this process


async def test_writes_go_to_the_journal_and_a_clean_stop_compacts(start_registry, volumes):
    user_models, _ = volumes
    for name in ("a.safetensors", "b.safetensors"):
        write_lora(user_models / "loras" / name, seed=len(name))
    reg = await start_registry(**JOURNALED)
    before = reg.index.read_bytes()  # written at start: the rescan found two files
    write_lora(reg.loras / "c.safetensors", seed=3)
    await reg.stub.CreateModel(create_request("c.safetensors", LORA, display_name="C"))
    await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors", display_name="A!")))
    await reg.stub.DeleteModel(registry_pb2.DeleteModelRequest(filename="b.safetensors", keep_file=True))
    assert reg.index.read_bytes() == before  # no whole rewrite: O(1) appends
    assert len(journals(user_models)) == 1
    durable = load_index(reg.index)  # the file with its journal replayed: every acknowledged write
    assert durable is not None
    assert sorted(durable.models) == ["a.safetensors", "c.safetensors"]
    assert (durable.models["a.safetensors"].display_name, durable.models["c.safetensors"].display_name) == ("A!", "C")
    await reg.server.stop(0)
    assert journals(user_models) == []
    models = assert_documented_shape(reg.index)["models"]
    assert sorted(models) == ["a.safetensors", "c.safetensors"] and models["a.safetensors"]["display_name"] == "A!"


async def test_a_small_index_is_rewritten_whole_and_never_journaled(reg):
    write_lora(reg.loras / "a.safetensors")
    await reg.stub.CreateModel(create_request("a.safetensors", LORA))
    assert "a.safetensors" in assert_documented_shape(reg.index)["models"]  # current at once
    assert journals(reg.user_models) == []


async def test_background_compaction_catches_the_file_up(start_registry, volumes):
    user_models, _ = volumes
    for i in range(30):
        write_lora(user_models / "loras" / f"m{i}.safetensors", seed=i)
    reg = await start_registry(index_journal_from_bytes=0, index_compact_idle=0.05)
    store = reg.server.registry.store
    await asyncio.gather(*(reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename=f"m{i}.safetensors", display_name=f"Model {i}"))) for i in range(30)))
    for _ in range(3000):  # a generous limit for a loaded machine; not a timing assertion
        if store.compactions and not journals(user_models):
            break
        await asyncio.sleep(0.01)
    assert store.compactions >= 1 and journals(user_models) == []
    models = assert_documented_shape(reg.index)["models"]
    assert all(models[f"m{i}.safetensors"]["display_name"] == f"Model {i}" for i in range(30))
    # Writes after a compaction go to the next journal and replay over the compacted file.
    await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="m0.safetensors", display_name="later")))
    assert (load_index(reg.index) or IndexState()).models["m0.safetensors"].display_name == "later"


async def test_start_up_replays_a_journal_with_a_torn_tail(volumes):
    user_models, models = volumes
    write_lora(user_models / "loras" / "a.safetensors")
    index = user_models / ".metadata.json"
    index.write_bytes(render("illustrious-xl", [entry("a.safetensors").json_line()]))
    torn = journal.put(entry("a.safetensors", "never acknowledged").json_line())
    journal.journal_path(index, 7).write_bytes(
        journal.put(entry("a.safetensors", "replayed").json_line()) + torn[: len(torn) - 5])
    server = await create_server(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models,
                                                  models_dir=models, **JOURNALED))
    await server.start()
    try:
        async with insecure_channel(server.address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            got = await stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
            assert got.model.display_name == "replayed"
            assert journals(user_models) == []  # compacted at start
            assert assert_documented_shape(index)["models"]["a.safetensors"]["display_name"] == "replayed"
            await stub.UpdateModel(registry_pb2.UpdateModelRequest(
                model=model_pb2.Model(filename="a.safetensors", display_name="after")))
            assert [p.name for p in journals(user_models)] == [".metadata.journal.1"]
    finally:
        await server.stop(0)


async def test_a_failed_append_is_not_acknowledged_undone_and_a_retry_works(start_registry, volumes):
    user_models, _ = volumes
    write_lora(user_models / "loras" / "a.safetensors")
    reg = await start_registry(**JOURNALED)
    # The first journal's name is taken by a directory: opening it fails.
    blocker = journal.journal_path(reg.index, 1)
    blocker.mkdir()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
            model=model_pb2.Model(filename="a.safetensors", display_name="lost")))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    got = await reg.stub.GetModel(registry_pb2.GetModelRequest(filename="a.safetensors"))
    assert got.model.display_name != "lost"  # undone in memory too
    blocker.rmdir()
    await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="a.safetensors", display_name="kept")))
    assert (load_index(reg.index) or IndexState()).models["a.safetensors"].display_name == "kept"


# ---------------------------------------------------------------------- a real process, SIGKILLed


async def _spawn(user_models: Path, models: Path, **env: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadata_svc", "--listen", "127.0.0.1:0",
        "--user-models-dir", str(user_models), "--models-dir", str(models), "--log-level", "WARNING",
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **env},
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
    assert "listening on" in line, line
    return proc, line.rsplit(" ", 1)[-1].strip()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()


async def test_sigkill_under_concurrent_create_update_delete_loses_no_acknowledged_write(volumes):
    user_models, models = volumes
    loras = user_models / "loras"
    template = write_lora(loras / "u000.safetensors").read_bytes()
    updates = [f"u{i:03d}.safetensors" for i in range(150)]
    deletes = [f"d{i:03d}.safetensors" for i in range(150)]
    creates = [f"c{i:03d}.safetensors" for i in range(150)]
    for name in updates[1:] + deletes:
        (loras / name).write_bytes(template)
    # Journal always; compact whenever writers pause: kills land during appends and compactions alike.
    env = {"MODELMGR_INDEX_JOURNAL_FROM_BYTES": "0", "MODELMGR_INDEX_COMPACT_IDLE": "0.01"}
    proc, address = await _spawn(user_models, models, **env)
    for name in creates:  # after the start-up rescan, so CreateModel registers them
        (loras / name).write_bytes(template)
    ops = [("update", n) for n in updates] + [("delete", n) for n in deletes] + [("create", n) for n in creates]
    random.Random(3).shuffle(ops)
    acked: dict[str, str | None] = {}  # name -> display name now, None: deleted
    enough = asyncio.Event()

    async def writer(stub) -> None:
        while ops:
            op, name = ops.pop()
            try:
                if op == "update":
                    await stub.UpdateModel(registry_pb2.UpdateModelRequest(
                        model=model_pb2.Model(filename=name, display_name=f"updated {name}")), timeout=10)
                elif op == "create":
                    await stub.CreateModel(create_request(name, LORA, display_name=f"created {name}"), timeout=10)
                else:
                    await stub.DeleteModel(registry_pb2.DeleteModelRequest(filename=name, keep_file=False), timeout=10)
            except grpc.aio.AioRpcError:
                return  # the server is gone
            acked[name] = None if op == "delete" else f"{op}d {name}"
            if len(acked) >= 150:
                enough.set()
            if len(acked) % 25 == 0:
                await asyncio.sleep(0.02)  # a pause, so idle compactions run between bursts

    try:
        async with insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            writers = [asyncio.create_task(writer(stub)) for _ in range(8)]
            await asyncio.wait_for(enough.wait(), 120)
            await _kill(proc)  # while 8 writers have calls in flight
            await asyncio.gather(*writers)
    finally:
        await _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) < len(updates) + len(deletes) + len(creates)  # it really died mid-stream

    def check(state: IndexState | None) -> None:
        assert state is not None
        for name, label in acked.items():
            if label is None:
                assert name not in state.models, name
            else:
                assert state.models[name].display_name == label, name

    check(load_index(user_models / ".metadata.json"))
    proc, address = await _spawn(user_models, models, **env)  # replays, then serves it
    try:
        async with insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            for name, label in list(acked.items())[:30]:
                if label is not None:
                    got = await stub.GetModel(registry_pb2.GetModelRequest(filename=name), timeout=10)
                    assert got.model.display_name == label
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    # A clean stop compacts: the file alone, as the original app reads it, holds every acknowledged write.
    assert journals(user_models) == []
    assert_documented_shape(user_models / ".metadata.json")
    check(load_index(user_models / ".metadata.json"))
    assert not list(user_models.glob(".metadata.json.*.tmp"))


async def test_sigkill_during_a_compaction_leaves_a_readable_index(volumes):
    user_models, models = volumes
    index = user_models / ".metadata.json"
    # A large index written directly (entries whose files are absent are kept, marked missing): a
    # compaction of it takes long enough to be caught in the middle.
    filler = [entry(f"big{i:05d}.safetensors", "filler " * 60).json_line() for i in range(20_000)]
    names = [f"w{i:02d}.safetensors" for i in range(40)]
    index.write_bytes(render("illustrious-xl", filler + [entry(n).json_line() for n in names]))
    env = {"MODELMGR_INDEX_JOURNAL_FROM_BYTES": "0", "MODELMGR_INDEX_COMPACT_IDLE": "0.01"}
    proc, address = await _spawn(user_models, models, **env)
    acked: dict[str, str] = {}
    interrupted = False
    try:
        async with insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            for round_ in range(200):  # a burst of writes, then watch the idle compaction start
                for name in names[:10]:
                    label = f"{name} round {round_}"
                    await stub.UpdateModel(registry_pb2.UpdateModelRequest(
                        model=model_pb2.Model(filename=name, display_name=label)), timeout=10)
                    acked[name] = label
                for _ in range(2000):
                    if list(user_models.glob(".metadata.json.*.tmp")):
                        await _kill(proc)
                        break
                    await asyncio.sleep(0.001)
                if proc.returncode is not None:
                    break
    finally:
        # The temp file still there once it is dead: it died inside the compaction, not after.
        interrupted = proc.returncode is not None and bool(list(user_models.glob(".metadata.json.*.tmp")))
        await _kill(proc)
    assert interrupted
    state = load_index(index)
    assert state is not None and len(state.models) == 20_040
    assert all(state.models[name].display_name == label for name, label in acked.items())
    proc, address = await _spawn(user_models, models, **env)
    try:
        async with insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            got = await stub.GetModel(registry_pb2.GetModelRequest(filename=names[0]), timeout=10)
            assert got.model.display_name == acked[names[0]]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert not list(user_models.glob(".metadata.json.*.tmp")) and journals(user_models) == []
    assert len(assert_documented_shape(index)["models"]) == 20_040
