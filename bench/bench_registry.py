"""Registry figures on 10,000- and 100,000-entry indexes: start-up, List (filtered query, page of 100) and
durable Create, for the journaled store and the old whole-file rewrite side by side.

    python -m bench registry          (MODELMGR_BENCH_REGISTRY_QUICK=1: 10,000 entries only;
                                       MODELMGR_BENCH_REGISTRY_BASELINE=0: without the old store, whose
                                       200 whole rewrites of an 82 MB index take minutes)

The registry runs as its own process (`python -m metadata_svc`) over a temp
volume whose index is built directly (files are hard links to one small
LoRA, so every entry's file exists). Each size runs twice over the same
volume: the store as it is (an index over 1 MiB takes writes through the
journal, index_store.py) and the old store, every write a whole rewrite
(MODELMGR_INDEX_JOURNAL_FROM_BYTES huge), so the baseline is measured in
the same run. Start-up is spawn to "listening"; for the journaled store also
after a SIGKILL right after the creates (replay + compaction at open). Each
figure is timed through gRPC from this process, sequentially, as p50/p99
with its ratio to a near no-op RPC (GetActiveCheckpoint) and to parsing the
index file once (what any reader of the durable copy pays).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000)
LINKS_PER_FILE = 50_000
OLD_STORE = {"MODELMGR_INDEX_JOURNAL_FROM_BYTES": str(2**62)}  # every write rewrites the whole file
LIST_CALLS = 300
COLD_LIST_CALLS = 100
CREATE_CALLS = 200
UPLOAD_MIB = 256
NOOP_CALLS = 300
WORDS = ["ink", "wash", "style", "detail", "anime", "portrait", "light", "shadow", "forest", "city", "neon", "retro",
         "water", "color", "sketch", "paint", "glow", "soft", "sharp", "dream"]
BASES = ["Illustrious", "SDXL 1.0", "Pony", "NoobAI"]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_volume(root: Path, size: int) -> Path:
    """A user-models volume with `size` entries (90% LoRAs) and their files."""
    from devtools.model_files import write_safetensors
    from metadata_svc.index_store import render
    from metadata_svc.inspection import inspect_file
    from metadata_svc.models import ModelEntry, now_iso
    from service_kit.config import DEFAULT_CHECKPOINT
    from service_kit.files import sha256_of

    user_models = root / "user-models"
    loras, checkpoints = user_models / "loras", user_models / "checkpoints"
    lora_src = write_safetensors(root / "template-lora.safetensors", "lora", 0)
    ckpt_src = write_safetensors(root / "template-ckpt.safetensors", "checkpoint", 0)
    loras.mkdir(parents=True)
    checkpoints.mkdir()
    facts = {
        "lora": (lora_src, inspect_file(lora_src), sha256_of(lora_src)),
        "checkpoint": (ckpt_src, inspect_file(ckpt_src), sha256_of(ckpt_src)),
    }
    rng = random.Random(7)
    entries: dict[str, ModelEntry] = {}
    added = now_iso()
    for i in range(size):
        kind = "checkpoint" if i % 10 == 9 else "lora"
        name = f"model_{i:05d}.safetensors"
        src, found, digest = facts[kind]
        if i % LINKS_PER_FILE == 0 and i:  # ext4 allows 65,000 links to one file: a fresh copy now and then
            for copied_kind, (old_src, old_found, old_digest) in list(facts.items()):
                copy = root / f"template-{copied_kind}-{i}.safetensors"
                shutil.copyfile(old_src, copy)
                facts[copied_kind] = (copy, old_found, old_digest)
            src = facts[kind][0]
        os.link(src, (checkpoints if kind == "checkpoint" else loras) / name)
        words = rng.sample(WORDS, 3)
        entries[name] = ModelEntry(
            filename=name, type=kind, display_name=f"{words[0].title()} {words[1].title()} {i}",
            short_name=words[0].title(), source="civitai", trigger_words=(f"{words[2]}_{i % 97}",),
            recommended_weight=0.8, base_model=BASES[i % len(BASES)], tags=tuple(rng.sample(WORDS, 2)),
            description="A benchmark model. " * 5, file_size_bytes=src.stat().st_size, added_at=added,
            civitai_model_id=100000 + i, civitai_version_id=200000 + i, civitai_url=f"https://civitai.com/models/{i}",
            sha256=digest, inspection=found,
        )
    (user_models / ".metadata.json").write_bytes(render(DEFAULT_CHECKPOINT, [e.json_line() for e in entries.values()]))
    return user_models


def reset_volume(user_models: Path, index_bytes: bytes) -> None:
    """Back to the built index, and the files the creates will register waiting under other names."""
    loras = user_models / "loras"
    for path in [*loras.glob("new_*"), *loras.glob("uploaded.*"), *user_models.glob(".metadata.journal.*")]:
        path.unlink()
    (user_models / ".metadata.json").write_bytes(index_bytes)
    template = next(loras.glob("model_*.safetensors"))
    for i in range(CREATE_CALLS):
        os.link(template, loras / f"new_{i:04d}.safetensors.pending")


async def spawn(user_models: Path, models: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str, float]:
    """The registry process, its address, and its start-up time (spawn to "listening") in seconds."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadata_svc", "--listen", "127.0.0.1:0", "--user-models-dir", str(user_models),
        "--models-dir", str(models), "--log-level", "ERROR",
        cwd=REPO, stdout=subprocess.PIPE, env={**os.environ, **env},
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 300)).decode()
    assert "listening on" in line, line
    return proc, line.rsplit(" ", 1)[-1].strip(), time.perf_counter() - t0


@dataclass
class Figures:
    size: int
    store: str
    start_s: float
    noop: list[float]
    listed: list[float]
    created: list[float]
    listed_cold: list[float]  # each right after an UpdateModel, so no filter's matches are kept
    restart_s: float | None = None  # after a SIGKILL (journaled store only)
    upload_s: float | None = None


async def measure(user_models: Path, models: Path, size: int, store: str, env: dict[str, str], *,
                  crash: bool, with_upload: bool) -> Figures:
    import grpc

    from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc

    proc, address, start_s = await spawn(user_models, models, env)
    upload_s = None
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
            for _ in range(20):  # warm up the channel and the server's sort cache
                await stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest())
                await stub.ListModels(registry_pb2.ListModelsRequest(page_size=100, query="ink"))

            async def timed(factory, n: int) -> list[float]:
                out = []
                for i in range(n):
                    t0 = time.perf_counter()
                    await factory(i)
                    out.append((time.perf_counter() - t0) * 1000)
                return out

            noop = await timed(lambda i: stub.GetActiveCheckpoint(registry_pb2.GetActiveCheckpointRequest()), NOOP_CALLS)
            queries = ["style", "ink wash", "portrait", "neon city", "dream"]

            async def list_call(i: int):
                resp = await stub.ListModels(registry_pb2.ListModelsRequest(
                    page_size=100, type=model_pb2.MODEL_TYPE_LORA, query=queries[i % len(queries)]))
                assert len(resp.models) == 100, (queries[i % len(queries)], resp.total_size)
                return resp

            listed = await timed(list_call, LIST_CALLS)

            async def list_after_a_write(i: int) -> float:
                # Any change drops the matches List keeps per filter: this List runs the filters again.
                await stub.UpdateModel(registry_pb2.UpdateModelRequest(model=model_pb2.Model(
                    filename=f"model_{i * 7 % size:05d}.safetensors", description=f"Touched {i}.")))
                t0 = time.perf_counter()
                await list_call(i)
                return (time.perf_counter() - t0) * 1000

            # Not for the old store: each of its writes rewrites the whole index (seconds at 100,000 entries).
            listed_cold = [await list_after_a_write(i) for i in range(COLD_LIST_CALLS if crash else 0)]

            loras = user_models / "loras"

            async def create_call(i: int):
                name = f"new_{i:04d}.safetensors"
                os.rename(loras / f"{name}.pending", loras / name)
                return await stub.CreateModel(registry_pb2.CreateModelRequest(model=model_pb2.Model(
                    filename=name, type=model_pb2.MODEL_TYPE_LORA, display_name=f"New {i}",
                    trigger_words=["fresh"], source=model_pb2.MODEL_SOURCE_CIVITAI)))

            created = await timed(create_call, CREATE_CALLS)
            final = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=1))
            assert final.total_size == size + CREATE_CALLS
            if with_upload:
                upload_s = await upload(stub)
    finally:
        if crash and proc.returncode is None:
            proc.kill()  # every create acknowledged, the journal not compacted yet
        else:
            proc.terminate()
        await proc.wait()
    figures = Figures(size, store, start_s, noop, listed, created, listed_cold, upload_s=upload_s)
    if crash:
        proc, address, figures.restart_s = await spawn(user_models, models, env)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
                final = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=1))
                assert final.total_size == size + CREATE_CALLS + (1 if with_upload else 0)
        finally:
            proc.terminate()
            await proc.wait()
    return figures


async def run(root: Path) -> None:
    sizes = SIZES[:1] if os.environ.get("MODELMGR_BENCH_REGISTRY_QUICK") == "1" else SIZES
    results: list[Figures] = []
    parse_ms: dict[int, float] = {}
    upload_s = 0.0
    for size in sizes:
        started = time.perf_counter()
        user_models = build_volume(root / f"v{size}", size)
        index = user_models / ".metadata.json"
        built = index.read_bytes()
        print(f"built a {size:,}-entry index ({len(built) / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s",
              flush=True)
        parse = []
        for _ in range(3):
            t0 = time.perf_counter()
            json.loads(built)
            parse.append((time.perf_counter() - t0) * 1000)
        parse_ms[size] = statistics.median(parse)
        stores = [("journal", {}), ("old: whole rewrite", OLD_STORE)]
        if os.environ.get("MODELMGR_BENCH_REGISTRY_BASELINE") == "0":
            stores = stores[:1]
        for store, env in stores:
            reset_volume(user_models, built)
            first = size == sizes[0] and store == "journal"
            figures = await measure(user_models, root / "models", size, store, env, crash=store == "journal",
                                    with_upload=first)
            results.append(figures)
            if figures.upload_s is not None:
                upload_s = figures.upload_s
            print(f"  {size:,} entries, {store}: done", flush=True)
        shutil.rmtree(root / f"v{size}", ignore_errors=True)

    def row(label: str, values: list[float], noop_p50: float, parse: float) -> None:
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        print(f"    {label:<40} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms   "
              f"p50 = {p50 / noop_p50:5.1f}x no-op RPC, {p50 / parse:5.3f}x index parse")

    for f in results:
        noop_p50 = pct(f.noop, 0.5)
        print(f"{f.size:,} entries, store {f.store}: start-up {f.start_s:.2f} s"
              + (f", after a SIGKILL {f.restart_s:.2f} s (journal replayed and compacted)" if f.restart_s else "")
              + f"; baselines: no-op RPC p50 {noop_p50:.2f} ms, parsing the index once {parse_ms[f.size]:.0f} ms")
        row(f"ListModels type+query, page of 100 (n={LIST_CALLS})", f.listed, noop_p50, parse_ms[f.size])
        if f.listed_cold:
            row(f"  the same, each after a write (n={COLD_LIST_CALLS})", f.listed_cold, noop_p50, parse_ms[f.size])
        row(f"CreateModel, durable (n={CREATE_CALLS})", f.created, noop_p50, parse_ms[f.size])
    print("side by side (p50 / p99 ms; start-up s):")
    print(f"  {'entries':>8}  {'store':<20} {'start-up':>9} {'List p50':>9} {'List p99':>9} {'cold p50':>9} "
          f"{'cold p99':>9} {'Create p50':>11} {'Create p99':>11}")
    for f in results:
        print(f"  {f.size:>8,}  {f.store:<20} {f.start_s:9.2f} {pct(f.listed, 0.5):9.2f} {pct(f.listed, 0.99):9.2f} "
              f"{pct(f.listed_cold, 0.5):9.2f} {pct(f.listed_cold, 0.99):9.2f} "
              f"{pct(f.created, 0.5):11.2f} {pct(f.created, 0.99):11.2f}")
    print("  (List: 5 queries in turn, the matches of each kept until a change; cold: each List after an UpdateModel)")
    raw_s = raw_write(root / "raw-write.bin")
    print(f"  {'UploadModel, ' + str(UPLOAD_MIB) + ' MiB in 1 MiB chunks':<42} {UPLOAD_MIB / upload_s:7.0f} MiB/s"
          f"   vs writing+fsyncing the same bytes locally {UPLOAD_MIB / raw_s:.0f} MiB/s "
          f"(ratio {raw_s / upload_s:.2f})")
    print("targets at 100,000 entries: Create p50 < 20 ms, List p50 < 20 ms, start-up < 3 s")


def _upload_header() -> bytes:
    """A valid kohya-LoRA safetensors header for UPLOAD_MIB of F16 data."""
    n = UPLOAD_MIB * 1024 * 1024
    header = {"lora_unet_input_blocks_4_1_proj_in.lora_down.weight":
              {"dtype": "F16", "shape": [n // 2], "data_offsets": [0, n]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


async def upload(stub) -> float:
    from modelmanager.v1 import model_pb2, registry_pb2

    block = b"\x01" * (1024 * 1024)

    async def requests():
        yield registry_pb2.UploadModelRequest(header=registry_pb2.UploadModelHeader(
            filename="uploaded.safetensors", type=model_pb2.MODEL_TYPE_LORA))
        yield registry_pb2.UploadModelRequest(chunk=_upload_header())
        for _ in range(UPLOAD_MIB):
            yield registry_pb2.UploadModelRequest(chunk=block)

    t0 = time.perf_counter()
    resp = await stub.UploadModel(requests())
    elapsed = time.perf_counter() - t0
    assert resp.model.file_size_bytes == UPLOAD_MIB * 1024 * 1024 + len(_upload_header())
    return elapsed


def raw_write(path: Path) -> float:
    """Baseline: the same bytes written and fsynced by this process, with a sha256, no gRPC."""
    import hashlib

    block = b"\x01" * (1024 * 1024)
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(UPLOAD_MIB):
            out.write(block)
            digest.update(block)
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.perf_counter() - t0
    path.unlink()
    return elapsed


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    try:
        asyncio.run(run(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
