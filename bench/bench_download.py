"""CivitAI download figures: the service end to end against `curl -o FILE URL && sha256sum FILE`.

    python -m bench download            (MODELMGR_BENCH_DOWNLOAD_MIB=1024 by default)

* download: StartDownload of a 1 GiB checkpoint through gRPC (metadata, 307 to the storage
  server, streaming to a .part file with sha256 in the same pass, verify, move into
  checkpoints/) until the file is verified and in place, and until it is registered in a
  real registry; against curl from the same storage URL plus sha256sum of its file.
  Ratio = service / baseline (target: at most 0.7).
* cut: the same download with the connection dropped half-way; reports how many bytes were
  received twice (the service resumes with Range from the last byte it has).

The fake CivitAI runs in its own process (sendfile), so it does not share a GIL with the
service; the registry and the service run in this process, as they would in one pod each.
Runs are interleaved (baseline, service, baseline, service...) and the best of each is kept.
Every temp file is removed at the end.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

RUNS = 3
TOKEN = "bench-token-0123456789"


def _fake_process(path: str, conn) -> None:  # type: ignore[no-untyped-def]
    """Child: serve the file; answer commands from the parent over a pipe."""
    from devtools.fake_civitai import FakeCivitai

    fake = FakeCivitai(token=TOKEN)
    model = fake.add_checkpoint(name="Bench XL", path=Path(path), filename="benchXl_v10.safetensors")
    conn.send((fake.base_url, model.model_id, model.version_id, model.file_id, model.sha256, model.size))
    while True:
        command, *args = conn.recv()
        if command == "drop":
            fake.drop_connection(model.file_id, args[0])
            conn.send(True)
        elif command == "served":
            conn.send(fake.bytes_served(model.file_id))
        elif command == "close":
            fake.close()
            conn.send(True)
            return


def _storage_url(base_url: str, version_id: int, file_id: int) -> str:
    reply = httpx.get(f"{base_url}/api/download/models/{version_id}", params={"fileId": file_id},
                      headers={"Authorization": f"Bearer {TOKEN}", "User-Agent": "bench"})
    assert reply.status_code == 307, reply.status_code
    return reply.headers["location"]


def _baseline(url: str, out: Path, sha: str) -> float:
    os.sync()
    started = time.perf_counter()
    result = subprocess.run(f"curl -s -o {out} '{url}' && sha256sum {out}", shell=True, check=True,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert result.stdout.split()[0] == sha, "curl baseline hash mismatch"
    out.unlink()
    return elapsed


async def _service_runs(base_url: str, model_url_ref: str, size: int, work: Path, conn, baseline) -> dict:  # type: ignore[no-untyped-def]
    from civitai_svc.app import create_server
    from civitai_svc.config import CivitaiSettings
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings
    from modelmanager.v1 import civitai_pb2 as S
    from modelmanager.v1 import civitai_pb2_grpc, registry_pb2, registry_pb2_grpc
    from service_kit import insecure_channel

    user_models, models = work / "user-models", work / "models"
    user_models.mkdir()
    models.mkdir()
    registry = await create_registry(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models,
                                                      models_dir=models))
    await registry.start()
    server = await create_server(CivitaiSettings(listen="127.0.0.1:0", registry=registry.address,
                                                 user_models_dir=user_models, base_url=base_url, token=TOKEN,
                                                 disk_reserve_bytes=0, retry_backoff_base=0.05))
    await server.start()
    channel, reg_channel = insecure_channel(server.address), insecure_channel(registry.address)
    civitai = civitai_pb2_grpc.CivitaiServiceStub(channel)
    reg = registry_pb2_grpc.ModelRegistryServiceStub(reg_channel)

    async def one() -> tuple[float, float, S.DownloadJob]:
        os.sync()
        started = time.perf_counter()
        placed = 0.0
        reply = await civitai.StartDownload(S.StartDownloadRequest(reference=model_url_ref), timeout=60)
        job = reply.job
        seen: dict[str, float] = {"started": time.perf_counter() - started}
        async for update in civitai.WatchDownload(S.WatchDownloadRequest(job_id=job.id), timeout=600):
            job = update.job
            state = S.DownloadState.Name(job.state).removeprefix("DOWNLOAD_STATE_").lower()
            seen.setdefault(state, time.perf_counter() - started)
            if job.state == S.DOWNLOAD_STATE_REGISTERING and not placed:
                placed = time.perf_counter() - started
        total = time.perf_counter() - started
        print("    states at: " + ", ".join(f"{k} {v:.2f}s" for k, v in seen.items()), flush=True)
        assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
        assert job.model.sha256 and job.bytes_done == size
        await reg.DeleteModel(registry_pb2.DeleteModelRequest(filename=job.model.filename), timeout=60)
        return placed or total, total, job

    try:
        yield_runs, baselines = [], []
        for i in range(RUNS):  # interleaved: baseline, service, baseline, service
            baselines.append(await asyncio.to_thread(baseline))
            print(f"  run {i + 1}: curl -o + sha256sum {baselines[-1]:.2f} s", flush=True)
            yield_runs.append(await one())
            print(f"  run {i + 1}: service verified and in place {yield_runs[-1][0]:.2f} s, "
                  f"registered {yield_runs[-1][1]:.2f} s", flush=True)
        conn.send(("served",))
        served_before = conn.recv()
        conn.send(("drop", size // 2))
        conn.recv()
        _, _, cut_job = await one()
        conn.send(("served",))
        served_after = conn.recv()
        return {
            "runs": yield_runs,
            "baselines": baselines,
            "cut_resumes": cut_job.resume_count,
            "cut_refetched_service": cut_job.bytes_transferred - size,
            "cut_refetched_server": served_after - served_before - size,
        }
    finally:
        await channel.close()
        await reg_channel.close()
        await server.stop(0)
        await registry.stop(0)


def main() -> None:
    from devtools.model_files import write_safetensors

    mib = int(os.environ.get("MODELMGR_BENCH_DOWNLOAD_MIB", "1024"))
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = None
    try:
        source = write_safetensors(work / "source.safetensors", "checkpoint", mib * 1024 * 1024, seed=7)
        proc = ctx.Process(target=_fake_process, args=(str(source), child), daemon=True)
        proc.start()
        base_url, model_id, version_id, file_id, sha, size = parent.recv()
        print(f"file: {size / 2**20:.0f} MiB, fake CivitAI at {base_url} (separate process, sendfile)", flush=True)
        reference = f"https://civitai.com/models/{model_id}?modelVersionId={version_id}"

        def baseline() -> float:
            return _baseline(_storage_url(base_url, version_id, file_id), work / "curl.bin", sha)

        (work / "service").mkdir()
        extra = asyncio.run(_service_runs(base_url, reference, size, work / "service", parent, baseline))
        service_placed = [placed for placed, _, _ in extra["runs"]]
        service_total = [total for _, total, _ in extra["runs"]]
        base = min(extra["baselines"])
        best_placed, best_total = min(service_placed), min(service_total)
        print(f"baseline (curl -o FILE URL && sha256sum FILE), best of {RUNS}: {base:.2f} s "
              f"({size / base / 2**20:.0f} MiB/s); median {statistics.median(extra['baselines']):.2f} s")
        print(f"service, downloaded + sha256-verified + moved into place, best: {best_placed:.2f} s "
              f"({size / best_placed / 2**20:.0f} MiB/s)  ratio {best_placed / base:.2f}  (target <= 0.70); "
              f"median ratio {statistics.median(service_placed) / statistics.median(extra['baselines']):.2f}")
        print(f"service, ... + registered in the registry (StartDownload -> SUCCEEDED), best: {best_total:.2f} s  "
              f"ratio {best_total / base:.2f}")
        print(f"cut at {size // 2} bytes: {extra['cut_resumes']} resume(s); bytes received twice: "
              f"{extra['cut_refetched_service']} (service count), {extra['cut_refetched_server']} (server count)")
    finally:
        if proc is not None and proc.is_alive():
            try:
                parent.send(("close",))
                parent.recv()
            except (EOFError, OSError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
