"""Library import figures (issue 12): import, rescan and hashing, each against a baseline of the same run.

    python -m bench library
    python -m bench.bench_library --quick        (or MODELMGR_BENCH_LIBRARY_QUICK=1: 500 files, 64 MiB)

* import: StartImport of an A1111-style library of 2,000 small safetensors files (kohya, PEFT,
  LyCORIS LoRAs and a few SDXL checkpoint key sets, in nested folders, some with A1111 / Civitai
  Helper / Stability Matrix sidecars) into a real registry, with a real CivitAI service over a
  fake CivitAI (its own process) that knows 60% of the files by hash. Times since StartImport:
  until every entry is listed (ListModels of the root, polled), until hashed, until identified;
  the by-hash calls upstream against the fewest possible (one per 100 hashes). Baseline: walking
  and hashing the same files with `find ROOT -type f -print0 | xargs -0 sha256sum`.
* rescan: StartImport of the same, unchanged root, until it ends, against `find ROOT -type f`
  walking it (target <= 3x); the job must have hashed no file (files_hashed == 0) and made no
  upstream call. Two figures: end to end (StartImport until WatchImport says it ended: two RPCs,
  against find's process start-up) and the job in the registry (its created_at to finished_at),
  against find less its start-up (`find` of an empty folder).
* hashing: metadata_svc.file_hashes.hash_files (no cache; with the tensor-data hash the import
  also computes, and without) over a few hundred MB of files in the page cache, against
  `sha256sum` of the same files: throughput ratio, target >= 0.9.

The registry and the CivitAI service run in this process, as in bench_download; every temp file
is removed at the end. Best of RUNS for each baseline and each timed figure but the import (once:
a second import would be a rescan).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RUNS = 3
KNOWN_SHARE = 0.6  # of the model files, known to the fake CivitAI by hash
BY_HASH_BATCH = 100  # CivitAI's by-hash POST takes at most this many hashes
LORA_KINDS = ("kohya", "peft", "loha", "locon")


@dataclass(frozen=True)
class Size:
    files: int
    hash_mib: int
    hash_files: int

    @classmethod
    def chosen(cls, argv: list[str]) -> Size:
        if "--quick" in argv or os.environ.get("MODELMGR_BENCH_LIBRARY_QUICK") == "1":
            return cls(files=500, hash_mib=64, hash_files=8)
        return cls(files=2_000, hash_mib=384, hash_files=12)


@dataclass
class Library:
    root: Path
    models: list[tuple[Path, str]] = field(default_factory=list)  # (file, sha256)
    sidecars: int = 0


def build_library(root: Path, count: int) -> Library:
    """An A1111 models/ folder: Lora/<style>/<sub>/..., Stable-diffusion/...; every file's content unique."""
    from devtools.model_files import write_safetensors

    library = Library(root)
    checkpoints = max(2, count // 100)
    for i in range(count):
        if i < checkpoints:
            path = root / "Stable-diffusion" / ("xl" if i % 2 else "") / f"checkpoint_{i:04d}.safetensors"
            kind, payload = "checkpoint", 0
        else:
            path = root / "Lora" / f"style_{i % 7}" / f"set_{i % 23}" / f"lora_{i:04d}.safetensors"
            kind, payload = LORA_KINDS[i % len(LORA_KINDS)], 2048 + (i % 5) * 1024
        path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(path, kind, payload, seed=i)
        library.models.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
        stem = path.name.removesuffix(".safetensors")
        if i % 10 == 3:  # A1111's extra-networks card
            (path.parent / f"{stem}.json").write_text(json.dumps(
                {"activation text": f"style{i}", "preferred weight": 0.7, "description": "from A1111"}))
            library.sidecars += 1
        elif i % 10 == 6 and i >= count * KNOWN_SHARE:  # Civitai Helper: empty = looked up, not found
            (path.parent / f"{stem}.civitai.info").write_text("")
            library.sidecars += 1
        elif i % 25 == 9:  # Stability Matrix
            (path.parent / f"{stem}.cm-info.json").write_text(json.dumps(
                {"ModelName": f"Matrix {i}", "VersionName": "v1", "TrainedWords": [f"mtx{i}"]}))
            library.sidecars += 1
    return library


def _fake_process(hashes: list[str], conn) -> None:  # type: ignore[no-untyped-def]
    """Child: a fake CivitAI that knows `hashes`; answers call counts over the pipe."""
    from devtools.fake_civitai import FakeCivitai

    fake = FakeCivitai(token=TOKEN)
    for i, sha in enumerate(hashes):
        fake.register_hash(sha, name=f"Known {i}", trained_words=(f"known{i}",))  # with its preview image
    conn.send(fake.base_url)
    while True:
        command = conn.recv()
        if command == "calls":
            conn.send({route: fake.calls(route) for route in ("by-hash", "by-hash-bulk", "models-ids", "image")})
        elif command == "close":
            fake.close()
            conn.send(True)
            return


TOKEN = "bench-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def best_of(runs: int, command: str) -> float:
    """The fastest of `runs` runs of a shell command (its output discarded)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return min(times)


async def _import_and_rescan(library: Library, work: Path, base_url: str, calls) -> dict:  # type: ignore[no-untyped-def]
    from civitai_svc.app import create_server as create_civitai
    from civitai_svc.config import CivitaiSettings
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings
    from modelmanager.v1 import registry_pb2 as R
    from modelmanager.v1 import registry_pb2_grpc
    from service_kit import insecure_channel

    user_models, models = work / "user-models", work / "models"
    user_models.mkdir(parents=True)
    models.mkdir()
    civitai_address = f"127.0.0.1:{_free_port()}"  # the two services name each other
    registry = await create_registry(RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models, library_allow=[str(library.root.parent)],
        civitai=civitai_address))
    await registry.start()
    civitai = await create_civitai(CivitaiSettings(
        listen=civitai_address, registry=registry.address, user_models_dir=user_models, base_url=base_url,
        token=TOKEN, retry_backoff_base=0.05))
    await civitai.start()
    channel = insecure_channel(registry.address)
    stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
    expected = len(library.models)

    async def run_import(request: R.StartImportRequest) -> tuple[R.ImportJob, dict[str, float]]:
        started = time.perf_counter()
        seen: dict[str, float] = {}
        job = (await stub.StartImport(request, timeout=60)).job
        listed = asyncio.Event()

        async def poll_listed(root_id: str) -> None:
            while not listed.is_set():
                page = await stub.ListModels(R.ListModelsRequest(page_size=1, root_id=root_id), timeout=60)
                if page.total_size >= expected:
                    seen["listed"] = time.perf_counter() - started
                    listed.set()
                    return
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll_listed(job.root_id))
        async for update in stub.WatchImport(R.WatchImportRequest(id=job.id), timeout=600):
            job = update.job
            state = R.ImportState.Name(job.state).removeprefix("IMPORT_STATE_").lower()
            seen.setdefault(state, time.perf_counter() - started)
            if job.files_to_hash and job.files_hashed >= job.files_to_hash:
                seen.setdefault("hashed", time.perf_counter() - started)
        seen["ended"] = time.perf_counter() - started
        if not listed.is_set():
            await asyncio.wait_for(poller, 60)
        return job, seen

    try:
        job, seen = await run_import(R.StartImportRequest(path=str(library.root), mode=R.IMPORT_MODE_IN_PLACE))
        assert job.state == R.IMPORT_STATE_SUCCEEDED, (job.error_reason, job.error)
        after_import = calls()
        rescans = []
        for _ in range(RUNS):
            again, again_seen = await run_import(R.StartImportRequest(root_id=job.root_id))
            assert again.state == R.IMPORT_STATE_SUCCEEDED, (again.error_reason, again.error)
            rescans.append((again_seen["ended"], again))
        after_rescans = calls()
    finally:
        await channel.close()
        await civitai.stop(0)
        await registry.stop(0)
    return {"job": job, "seen": seen, "calls": after_import, "rescans": rescans,
            "rescan_calls": {k: after_rescans[k] - after_import[k] for k in after_import}}


def hashing_figures(folder: Path, size: Size) -> dict[str, float]:
    from devtools.model_files import write_safetensors
    from metadata_svc.file_hashes import DEFAULT_WORKERS, HashRequest, hash_files

    folder.mkdir()
    each = size.hash_mib * 1024 * 1024 // size.hash_files
    paths = [write_safetensors(folder / f"big_{i:02d}.safetensors", "lora", each, seed=i) for i in range(size.hash_files)]
    total = sum(p.stat().st_size for p in paths)
    listing = " ".join(str(p) for p in paths)

    def hasher(tensor_hash: bool, workers: int) -> float:
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            results = hash_files([HashRequest(p, tensor_hash=tensor_hash) for p in paths], workers=workers)
            times.append(time.perf_counter() - started)
            assert all(r.hashes is not None for r in results), [r.detail for r in results if r.hashes is None]
        return min(times)

    best_of(1, f"cat {listing} > /dev/null")  # into the page cache: both sides read from memory
    return {
        "bytes": total,
        "sha256sum": best_of(RUNS, f"sha256sum {listing}"),
        "registry": hasher(True, DEFAULT_WORKERS),  # what an import does: SHA256 and the tensor-data hash
        "registry_sha_only": hasher(False, DEFAULT_WORKERS),
        "registry_one_worker": hasher(True, 1),
        "workers": DEFAULT_WORKERS,
    }


def report_import(library: Library, out: dict, walk_and_hash: float) -> None:
    job, seen = out["job"], out["seen"]
    known = int(len(library.models) * KNOWN_SHARE)
    asked = out["calls"]["by-hash-bulk"] + out["calls"]["by-hash"]
    fewest = math.ceil(len(library.models) / BY_HASH_BATCH)
    n = len(library.models)
    print(f"library: {n} model files ({sum(1 for p, _ in library.models if 'Stable-diffusion' in p.parts)} "
          f"SDXL checkpoint key sets), {library.sidecars} sidecars; fake CivitAI knows {known} by hash")
    print(f"baseline: find ROOT -type f -print0 | xargs -0 sha256sum, best of {RUNS}: {walk_and_hash * 1000:.0f} ms")
    print("  states at: " + ", ".join(f"{k} {v:.2f}s" for k, v in seen.items()))
    for label, key in (("all listed", "listed"), ("all hashed", "hashed"), ("all identified (job ended)", "ended")):
        if key in seen:
            print(f"  import, {label:<28} {seen[key]:7.2f} s   {seen[key] / walk_and_hash:6.1f}x walk+sha256sum")
    print(f"  job: files_seen {job.files_seen}, models_found {job.models_found}, registered {job.registered}, "
          f"hashed {job.files_hashed}/{job.files_to_hash}, identified {job.identified}, "
          f"not_on_civitai {job.not_on_civitai}, identify_failed {job.identify_failed}, skipped {len(job.skipped)}")
    print(f"  upstream by-hash calls: {asked} (bulk {out['calls']['by-hash-bulk']}, single {out['calls']['by-hash']}); "
          f"fewest possible {fewest}; models?ids= {out['calls']['models-ids']}, images {out['calls']['image']}")
    if job.models_found != n or job.identified != known:
        print(f"  NOTE: expected {n} models found and {known} identified")


def job_seconds(job) -> float:  # type: ignore[no-untyped-def]
    """created_at to finished_at of an ImportJob message (the registry keeps microseconds)."""
    return float(job.finished_at.ToNanoseconds() - job.created_at.ToNanoseconds()) / 1e9


def report_rescan(out: dict, walk: float, startup: float) -> None:
    best, job = min(out["rescans"], key=lambda r: r[0])
    in_registry = min(job_seconds(r[1]) for r in out["rescans"])
    hashed = [r[1].files_hashed for r in out["rescans"]]
    walk_only = max(walk - startup, 1e-6)
    print(f"baseline: find ROOT -type f, best of {RUNS}: {walk * 1000:.1f} ms, of which start-up "
          f"(find of an empty folder) {startup * 1000:.1f} ms")
    print(f"  rescan of the unchanged root, best of {RUNS}, end to end:  {best * 1000:5.1f} ms   "
          f"ratio {best / walk:.2f}  (target <= 3)")
    print(f"  rescan of the unchanged root, best of {RUNS}, job in the registry: {in_registry * 1000:5.1f} ms   "
          f"ratio {in_registry / walk_only:.2f} to find without its start-up")
    print(f"  rescans hashed {hashed} files, {[r[1].bytes_hashed for r in out['rescans']]} bytes (expect 0); "
          f"already_known {job.already_known}, registered {job.registered}, missing {job.missing}; "
          f"upstream calls during rescans {out['rescan_calls']}")
    if any(hashed):
        print("  NOTE: a rescan read file content")


def report_hashing(h: dict[str, float]) -> None:
    mib = h["bytes"] / 2**20
    base = h["sha256sum"]
    print(f"baseline: sha256sum of {mib:.0f} MiB, best of {RUNS}: {base:.2f} s ({mib / base:.0f} MiB/s)")
    for label, key in ((f"hash_files, SHA256 + tensor hash, {h['workers']:.0f} workers", "registry"),
                       (f"hash_files, SHA256 only, {h['workers']:.0f} workers", "registry_sha_only"),
                       ("hash_files, SHA256 + tensor hash, 1 worker", "registry_one_worker")):
        print(f"  {label:<46} {mib / h[key]:6.0f} MiB/s   throughput ratio {base / h[key]:.2f}  (target >= 0.9)")


def main(argv: list[str] | None = None) -> None:
    from service_kit import configure_logging

    configure_logging("bench", level="WARNING", json=False)  # the services' per-RPC lines would bury the figures
    size = Size.chosen(sys.argv[1:] if argv is None else argv)
    work = Path(tempfile.mkdtemp(prefix="bench-library-"))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = None
    try:
        started = time.perf_counter()
        library = build_library(work / "a1111" / "models", size.files)
        print(f"built the library in {time.perf_counter() - started:.1f} s", flush=True)
        known = [sha for _, sha in library.models[: int(len(library.models) * KNOWN_SHARE)]]
        proc = ctx.Process(target=_fake_process, args=(known, child), daemon=True)
        proc.start()
        base_url = parent.recv()

        def calls() -> dict[str, int]:
            parent.send("calls")
            return parent.recv()

        root = library.root
        walk_and_hash = best_of(RUNS, f"find {root} -type f -print0 | xargs -0 sha256sum")
        out = asyncio.run(_import_and_rescan(library, work / "service", base_url, calls))
        report_import(library, out, walk_and_hash)
        empty = work / "empty"
        empty.mkdir()
        report_rescan(out, best_of(RUNS, f"find {root} -type f"), best_of(RUNS, f"find {empty} -type f"))
        report_hashing(hashing_figures(work / "hashing", size))
    finally:
        if proc is not None and proc.is_alive():
            try:
                parent.send("close")
                parent.recv()
            except (EOFError, OSError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
