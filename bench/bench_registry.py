"""Registry figures on a 10,000-entry index: List (filtered query, page of 100) and durable Create.

    python -m bench registry

The registry runs as its own process (`python -m metadata_svc`) over a temp
volume whose index is built directly with 10,000 entries (files are hard
links to one small LoRA, so every entry's file exists). Each figure is timed
through gRPC from this process, sequentially, and shown as p50/p99 with its
ratio to two baselines measured in the same run: a near no-op RPC
(GetActiveCheckpoint) and parsing the index file once (what any reader of
the durable copy pays).
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENTRIES = 10_000
LIST_CALLS = 300
CREATE_CALLS = 200
UPLOAD_MIB = 256
NOOP_CALLS = 300
WORDS = ["ink", "wash", "style", "detail", "anime", "portrait", "light", "shadow", "forest", "city", "neon", "retro",
         "water", "color", "sketch", "paint", "glow", "soft", "sharp", "dream"]
BASES = ["Illustrious", "SDXL 1.0", "Pony", "NoobAI"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_volume(root: Path) -> Path:
    """A user-models volume with ENTRIES entries (90% LoRAs) and their files."""
    from devtools.model_files import write_safetensors
    from metadata_svc.index_store import render
    from metadata_svc.inspection import inspect_file
    from metadata_svc.models import ModelEntry, now_iso
    from metadata_svc.volume import sha256_of
    from service_kit.config import DEFAULT_CHECKPOINT

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
    for i in range(ENTRIES):
        kind = "checkpoint" if i % 10 == 9 else "lora"
        name = f"model_{i:05d}.safetensors"
        src, found, digest = facts[kind]
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
    for i in range(CREATE_CALLS):
        os.link(lora_src, loras / f"new_{i:04d}.safetensors.pending")
    return user_models


async def run(root: Path) -> None:
    import grpc

    from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc

    started = time.perf_counter()
    user_models = build_volume(root)
    index = user_models / ".metadata.json"
    print(f"built a {ENTRIES}-entry index ({index.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadata_svc", "--listen", "127.0.0.1:0", "--user-models-dir", str(user_models),
        "--models-dir", str(root / "models"), "--log-level", "WARNING",
        cwd=REPO, stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        address = line.rsplit(" ", 1)[-1].strip()
        print(f"registry up in {time.perf_counter() - started:.1f} s since start of build, at {address}")
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

            loras = user_models / "loras"

            async def create_call(i: int):
                name = f"new_{i:04d}.safetensors"
                os.rename(loras / f"{name}.pending", loras / name)
                return await stub.CreateModel(registry_pb2.CreateModelRequest(model=model_pb2.Model(
                    filename=name, type=model_pb2.MODEL_TYPE_LORA, display_name=f"New {i}",
                    trigger_words=["fresh"], source=model_pb2.MODEL_SOURCE_CIVITAI)))

            created = await timed(create_call, CREATE_CALLS)
            final = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=1))
            assert final.total_size == ENTRIES + CREATE_CALLS
            upload_s = await upload(stub)
    finally:
        proc.terminate()
        await proc.wait()

    parse = []
    for _ in range(5):
        t0 = time.perf_counter()
        json.loads(index.read_bytes())
        parse.append((time.perf_counter() - t0) * 1000)
    parse_ms = statistics.median(parse)
    noop_p50 = pct(noop, 0.5)

    def row(label: str, values: list[float]) -> None:
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        print(f"  {label:<42} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms   "
              f"p50 = {p50 / noop_p50:5.1f}x no-op RPC, {p50 / parse_ms:5.2f}x index parse")

    print(f"baselines: no-op RPC (GetActiveCheckpoint) p50 {noop_p50:.2f} ms p99 {pct(noop, 0.99):.2f} ms; "
          f"parsing the {ENTRIES}-entry index once {parse_ms:.1f} ms")
    row(f"ListModels type+query, page of 100 (n={LIST_CALLS})", listed)
    row(f"CreateModel, durable (n={CREATE_CALLS})", created)
    raw_s = raw_write(root / "raw-write.bin")
    print(f"  {'UploadModel, ' + str(UPLOAD_MIB) + ' MiB in 1 MiB chunks':<42} {UPLOAD_MIB / upload_s:7.0f} MiB/s"
          f"   vs writing+fsyncing the same bytes locally {UPLOAD_MIB / raw_s:.0f} MiB/s "
          f"(ratio {raw_s / upload_s:.2f})")
    print("targets: List p50 < 20 ms, Create p50 < 50 ms")


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
