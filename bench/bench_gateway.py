"""Gateway overhead: registry ListModels through the gateway (HTTP/JSON) against the same call over gRPC,
and the delay from a progress event leaving a service to its arrival in an SSE client.

    python -m bench gateway

Every process is real and separate: the registry (`python -m metadata_svc`), the
gateway (`python -m gateway --no-ui`) and, for the event delay, a small
InferenceService (this module run with `--emit-server`) that streams progress
events stamped with the wall clock when each is sent (in JobProgress.job_id).
The client here reads the same stream twice: straight over gRPC (the baseline)
and through the gateway as SSE. Figures are p50/p99 and the ratio of p50s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIST_MODELS = 50
LIST_CALLS = 300
EVENTS = 200
EVENT_INTERVAL_S = 0.01


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def wait_grpc(address: str, limit_s: float = 120) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + limit_s
    async with grpc.aio.insecure_channel(address) as ch:
        while True:
            try:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def wait_http(url: str, limit_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.2)


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "MODELMGR_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def seed_registry(address: str, count: int, tmp: Path) -> None:
    import grpc

    from devtools.tiny_models import write_tiny_lora
    from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc

    data = write_tiny_lora(tmp / "seed.safetensors", seed=1).read_bytes()
    async with grpc.aio.insecure_channel(address) as ch:
        stub = registry_pb2_grpc.ModelRegistryServiceStub(ch)
        for i in range(count):
            header = registry_pb2.UploadModelHeader(
                filename=f"bench_lora_{i:03d}.safetensors", type=model_pb2.MODEL_TYPE_LORA,
                display_name=f"Bench LoRA {i}", trigger_words=[f"trig{i}", "bench"], recommended_weight=0.8,
                tags=["bench"], base_model="Illustrious")

            async def reqs(header=header):
                yield registry_pb2.UploadModelRequest(header=header)
                yield registry_pb2.UploadModelRequest(chunk=data)

            await stub.UploadModel(reqs())


async def bench_list(tmp: Path) -> dict[str, float]:
    import importlib.util

    import grpc
    import httpx

    from modelmanager.v1 import registry_pb2, registry_pb2_grpc

    if importlib.util.find_spec("metadata_svc") is None:
        raise ModuleNotFoundError("metadata_svc is not installed")
    reg_addr, gw_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    (tmp / "um").mkdir()
    (tmp / "m").mkdir()
    procs = [spawn("metadata_svc", "--listen", reg_addr, "--user-models-dir", str(tmp / "um"),
                   "--models-dir", str(tmp / "m"))]
    try:
        await wait_grpc(reg_addr)
        procs.append(spawn("gateway", "--no-ui", "--listen", gw_addr, "--registry", reg_addr))
        await wait_http(f"http://{gw_addr}/docs")
        await seed_registry(reg_addr, LIST_MODELS, tmp)
        direct, via = [], []
        async with grpc.aio.insecure_channel(reg_addr) as ch, httpx.AsyncClient() as http:
            stub = registry_pb2_grpc.ModelRegistryServiceStub(ch)
            req = registry_pb2.ListModelsRequest(page_size=LIST_MODELS)
            url = f"http://{gw_addr}/api/v1/models?page_size={LIST_MODELS}"
            for _ in range(20):  # warm both paths
                await stub.ListModels(req)
                (await http.get(url)).raise_for_status()
            for _ in range(LIST_CALLS):  # interleaved so drift hits both alike
                t = time.perf_counter()
                resp = await stub.ListModels(req)
                direct.append(time.perf_counter() - t)
                assert len(resp.models) == LIST_MODELS
                t = time.perf_counter()
                r = await http.get(url)
                via.append(time.perf_counter() - t)
                assert len(r.json()["models"]) == LIST_MODELS
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    return {"grpc_p50_ms": pct(direct, .5) * 1e3, "grpc_p99_ms": pct(direct, .99) * 1e3,
            "gateway_p50_ms": pct(via, .5) * 1e3, "gateway_p99_ms": pct(via, .99) * 1e3,
            "ratio_p50": pct(via, .5) / pct(direct, .5)}


# ---------------------------------------------------------------- event delay


async def emit_server(port: int) -> None:
    """An InferenceService whose Generate streams EVENTS progress events stamped with time.time_ns()."""
    from modelmanager.v1 import inference_pb2, inference_pb2_grpc
    from service_kit import GrpcServer, ServiceBinding, run_until_signal

    class Emitter(inference_pb2_grpc.InferenceServiceServicer):
        async def Generate(self, request, context):  # type: ignore[no-untyped-def]
            for step in range(1, request.steps + 1):
                await asyncio.sleep(EVENT_INTERVAL_S)
                yield inference_pb2.GenerateResponse(progress=inference_pb2.JobProgress(
                    job_id=str(time.time_ns()), stage="denoising", step=step, total_steps=request.steps))

    binding = ServiceBinding.of(inference_pb2.DESCRIPTOR.services_by_name["InferenceService"], Emitter(),
                                inference_pb2_grpc.add_InferenceServiceServicer_to_server)
    await run_until_signal(GrpcServer("emitter", f"127.0.0.1:{port}", [binding], "bench"))


async def bench_events() -> dict[str, float]:
    import grpc
    import httpx

    from modelmanager.v1 import inference_pb2, inference_pb2_grpc

    inf_port, gw_addr = free_port(), f"127.0.0.1:{free_port()}"
    procs = [spawn("bench.bench_gateway", "--emit-server", str(inf_port))]
    try:
        await wait_grpc(f"127.0.0.1:{inf_port}")
        procs.append(spawn("gateway", "--no-ui", "--listen", gw_addr, "--inference", f"127.0.0.1:{inf_port}"))
        await wait_http(f"http://{gw_addr}/docs")
        direct: list[float] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{inf_port}") as ch:
            stub = inference_pb2_grpc.InferenceServiceStub(ch)
            async for msg in stub.Generate(inference_pb2.GenerateRequest(steps=EVENTS)):
                direct.append((time.time_ns() - int(msg.progress.job_id)) / 1e6)
        via: list[float] = []
        async with httpx.AsyncClient(timeout=60) as http, \
                http.stream("POST", f"http://{gw_addr}/api/v1/generate", json={"steps": EVENTS}) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data:") and '"stage"' in line:
                    sent = int(json.loads(line[5:])["job_id"])
                    via.append((time.time_ns() - sent) / 1e6)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    skip = 10  # the first events include connection set-up
    direct, via = direct[skip:], via[skip:]
    return {"grpc_p50_ms": statistics.median(direct), "grpc_p99_ms": pct(direct, .99),
            "sse_p50_ms": statistics.median(via), "sse_p99_ms": pct(via, .99),
            "added_p50_ms": statistics.median(via) - statistics.median(direct), "events": len(via)}


def main() -> None:
    async def run() -> None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
        try:
            try:
                lst = await bench_list(tmp)
                print(f"registry ListModels ({LIST_MODELS} models, {LIST_CALLS} calls each, p50 / p99):")
                print(f"  gRPC direct      {lst['grpc_p50_ms']:.2f} / {lst['grpc_p99_ms']:.2f} ms")
                print(f"  via gateway HTTP {lst['gateway_p50_ms']:.2f} / {lst['gateway_p99_ms']:.2f} ms")
                print(f"  ratio of p50s    {lst['ratio_p50']:.2f}x")
            except ModuleNotFoundError as exc:
                print(f"registry ListModels: skipped ({exc})")
            ev = await bench_events()
            print(f"progress event → client delay ({ev['events']} events, p50 / p99):")
            print(f"  gRPC stream      {ev['grpc_p50_ms']:.2f} / {ev['grpc_p99_ms']:.2f} ms")
            print(f"  gateway SSE      {ev['sse_p50_ms']:.2f} / {ev['sse_p99_ms']:.2f} ms")
            print(f"  added by gateway {ev['added_p50_ms']:.2f} ms at p50")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    asyncio.run(run())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--emit-server":
        asyncio.run(emit_server(int(sys.argv[2])))
    else:
        main()
