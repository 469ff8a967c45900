"""Update check of a 2,000-model library: upstream calls and time of CheckUpdates.

    python -m bench updates

A real registry and CivitAI service (gRPC on 127.0.0.1, in this process's event loop) over a temp volume
whose index holds 2,000 installed CivitAI LoRAs (devtools.update_library; every third has a newer version),
against the fake CivitAI (its own threads). Figures: the `/models?ids=` calls one check makes (target:
<= 20), and the check's time p50/max over a few runs, with its ratio to a baseline measured in the same
run: the same 20 `/models?ids=` pages fetched straight from the API client (what CivitAI's side costs).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

MODELS = 2_000
RUNS = 5
TARGET_CALLS = 20


async def run(root: Path) -> None:
    from civitai_svc.api_client import MODELS_BATCH, CivitaiApi
    from civitai_svc.app import create_server
    from civitai_svc.config import CivitaiSettings
    from devtools.fake_civitai import FakeCivitai
    from devtools.update_library import seed_library
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings
    from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc
    from service_kit import configure_logging, insecure_channel

    configure_logging("bench", level="ERROR", json=True)
    user_models, models = root / "user-models", root / "models"
    user_models.mkdir()
    models.mkdir()
    fake = FakeCivitai()
    try:
        started = time.perf_counter()
        installed = seed_library(user_models, fake, MODELS)
        print(f"library: {MODELS} installed CivitAI models ({sum(1 for m in installed if m.latest_version_id)} with "
              f"an update), built in {time.perf_counter() - started:.1f} s")
        registry = await create_registry(RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models,
                                                          models_dir=models))
        await registry.start()
        server = await create_server(CivitaiSettings(listen="127.0.0.1:0", registry=registry.address,
                                                     user_models_dir=user_models, base_url=fake.base_url))
        await server.start()
        channel = insecure_channel(server.address)
        stub = civitai_pb2_grpc.CivitaiServiceStub(channel)
        try:
            times, calls = [], []
            for _ in range(RUNS):
                fake.reset_counters()
                t0 = time.perf_counter()
                reply = await stub.CheckUpdates(civitai_pb2.CheckUpdatesRequest(), timeout=600)
                times.append(time.perf_counter() - t0)
                calls.append(fake.calls("models-ids"))
                assert len(reply.updates) == MODELS and all(u.checked for u in reply.updates)
            found = sum(1 for u in reply.updates if u.update_available)

            api = CivitaiApi(fake.base_url)
            ids = list(dict.fromkeys(m.model_id for m in installed))
            base = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                for i in range(0, len(ids), MODELS_BATCH):
                    await api.models_by_ids(ids[i : i + MODELS_BATCH], fresh=True)
                base.append(time.perf_counter() - t0)
            await api.aclose()
        finally:
            await channel.close()
            await server.stop(0)
            await registry.stop(0)
    finally:
        fake.close()
    p50, p50_base = statistics.median(times), statistics.median(base)
    verdict = "ok" if max(calls) <= TARGET_CALLS else "OVER TARGET"
    print(f"upstream calls per check: {max(calls)} (target <= {TARGET_CALLS}: {verdict}); {found} updates found")
    print(f"CheckUpdates of {MODELS} models: p50 {p50 * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
          f"({RUNS} runs)")
    print(f"baseline, the same {len(ids) // MODELS_BATCH + bool(len(ids) % MODELS_BATCH)} pages straight from the "
          f"API client: p50 {p50_base * 1000:.0f} ms; ratio {p50 / p50_base:.2f}x")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-updates-"))
    try:
        asyncio.run(run(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
