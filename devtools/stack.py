"""The whole stack in one command: registry, CivitAI service, inference service and gateway.

    python -m devtools.stack            # `make run`: default ports, ./data/user-models, ./data/models
    python -m devtools.stack --demo     # `make demo`: offline, a local fake CivitAI and tiny models
    python -m devtools.stack --demo --fleet 2   # `make fleet`: inference as 2 Ray Serve workers (127.0.0.1)

Each service runs as its own child process (`python -m <package> ...`), as in a
deployment; their log lines are printed with the service's name in front.
When all answer their health checks, the runner prints what to open.
Ctrl-C or SIGTERM stops the gateway first, then the services, each with
SIGTERM (SIGKILL after a grace period). A child that had to be killed, or that
exited with a non-zero code, is reported, and the runner then exits with 1.

`--demo` keeps its data in `./data/demo` (or `--data-dir`): a tiny SDXL-shaped
checkpoint is placed on the models volume as the default base
(`illustrious-xl/Illustrious-XL-v0.1.safetensors`), a local fake CivitAI
(devtools.fake_civitai) serves a few tiny LoRAs and a checkpoint built with
devtools.tiny_models, and the CivitAI service is pointed at it, so the whole
flow (paste a URL, download, generate) works without internet or GPU.
`--civitai-base-url URL` points the CivitAI service at another CivitAI instead
(a mirror; with --demo, a fake CivitAI that a test drives: none is started here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service_kit.config import (
    DEFAULT_CHECKPOINT_FILE,
    DEFAULT_CIVITAI,
    DEFAULT_GATEWAY,
    DEFAULT_INFERENCE,
    DEFAULT_REGISTRY,
)

GRACE_SECONDS = 10.0
READY_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


@dataclass
class StackConfig:
    data_dir: Path = Path("data")
    registry: str = DEFAULT_REGISTRY
    civitai: str = DEFAULT_CIVITAI
    inference: str = DEFAULT_INFERENCE
    gateway: str = DEFAULT_GATEWAY
    demo: bool = False
    # The CivitAI the CivitAI service talks to: --civitai-base-url, or (--demo) where the fake one listens.
    civitai_base_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    log_format: str = "console"
    # > 0: the inference service runs as a fleet front with this many Ray Serve workers (inference_svc.fleet).
    fleet: int = 0

    @property
    def user_models_dir(self) -> Path:
        return self.data_dir / "user-models"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def commands(self) -> list[tuple[str, list[str]]]:
        py = sys.executable
        vols = ["--user-models-dir", str(self.user_models_dir), "--models-dir", str(self.models_dir)]
        civitai = [py, "-m", "civitai_svc", "--listen", self.civitai, "--registry", self.registry,
                   "--user-models-dir", str(self.user_models_dir)]
        gateway = [py, "-m", "gateway", "--listen", self.gateway, "--registry", self.registry,
                   "--civitai", self.civitai, "--inference", self.inference]
        if self.civitai_base_url:
            civitai += ["--base-url", self.civitai_base_url]
            gateway += ["--civitai-base-url", self.civitai_base_url]  # the image proxy fetches from it too
        return [
            # The registry identifies imported files through the CivitAI service (wherever it listens here).
            ("registry", [py, "-m", "metadata_svc", "--listen", self.registry, *vols, "--civitai", self.civitai]),
            ("civitai", civitai),
            ("inference", [py, "-m", "inference_svc.fleet" if self.fleet else "inference_svc", "--listen",
                           self.inference, "--registry", self.registry, *vols,
                           *(["--workers", str(self.fleet)] if self.fleet else [])]),
            ("gateway", gateway),
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("MODELMGR_LOG_FORMAT", self.log_format)
        env["PYTHONUNBUFFERED"] = "1"
        if self.civitai_base_url:
            env["CIVITAI_BASE_URL"] = self.civitai_base_url
        if self.demo:
            env.setdefault("MODELMGR_INFERENCE_DEVICE", "cpu")
            env.setdefault("MODELMGR_UI_IMAGE_SIZE", "256")
            env.setdefault("MODELMGR_UI_STEPS", "8")
        env.update(self.extra_env)
        return env


class Stack:
    """Starts the four children, waits until they are healthy, stops them in reverse order."""

    def __init__(self, config: StackConfig, *, quiet: bool = False, grace: float = GRACE_SECONDS) -> None:
        self.config = config
        self.quiet = quiet
        self.grace = grace
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._pumps: list[asyncio.Task[None]] = []
        self.fake_civitai: Any = None

    async def start(self) -> None:
        self.config.user_models_dir.mkdir(parents=True, exist_ok=True)
        self.config.models_dir.mkdir(parents=True, exist_ok=True)
        env = self.config.env()
        for name, cmd in self.config.commands():
            proc = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # our signal handling decides when children stop
            )
            self.procs[name] = proc
            self._pumps.append(asyncio.create_task(self._pump(name, proc)))
            if name != "gateway":
                await self._wait_grpc(name, getattr(self.config, name))
        await self._wait_http(self.config.gateway)

    async def _pump(self, name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        width = len("inference")
        async for line in proc.stdout:
            if not self.quiet:
                sys.stdout.write(f"{name:<{width}} | {line.decode(errors='replace')}")
                sys.stdout.flush()

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.returncode is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} during start-up (see its log above)")

    async def _wait_grpc(self, name: str, address: str) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + READY_TIMEOUT
        async with grpc.aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive(name)
                try:
                    resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become healthy at {address}")
                await asyncio.sleep(0.2)

    async def _wait_http(self, address: str) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                self._check_alive("gateway")
                try:
                    resp = await client.get(f"http://{address}/docs")
                    if resp.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the gateway did not answer at http://{address}")
                await asyncio.sleep(0.2)

    async def wait_any_exit(self) -> str:
        waits = {asyncio.create_task(p.wait()): n for n, p in self.procs.items()}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        return waits[next(iter(done))]

    async def stop(self) -> list[str]:
        """Stop the children in reverse start order (SIGTERM, SIGKILL after `grace` seconds).

        Prints how each one ended and returns the problems: a child that had to be killed,
        or that exited with a non-zero code (before or during the stop). Empty: all stopped cleanly."""
        problems: list[str] = []
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            killed = False
            if proc.returncode is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    await asyncio.wait_for(proc.wait(), self.grace)
                except TimeoutError:
                    killed = True
                    proc.kill()
                    await proc.wait()
            if killed:
                problems.append(f"{name} did not stop within {self.grace:g} s of SIGTERM: killed")
            elif proc.returncode is not None and proc.returncode < 0:
                problems.append(f"{name} ended by signal {signal_name(-proc.returncode)} (exit code {proc.returncode})")
            elif proc.returncode != 0:
                problems.append(f"{name} exited with code {proc.returncode}")
            else:
                print(f"{name} stopped (exit code 0)", flush=True)
        for problem in problems:
            print(f"stack: {problem}", file=sys.stderr, flush=True)
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self.fake_civitai is not None:
            self.fake_civitai.close()
            self.fake_civitai = None
        return problems


# ---------------------------------------------------------------- demo data

DEMO_BASE = DEFAULT_CHECKPOINT_FILE


def prepare_demo_files(data_dir: Path) -> dict[str, Path]:
    """Tiny models that really load and generate on a CPU: the default base checkpoint on the models
    volume, plus the files the fake CivitAI serves."""
    from devtools import tiny_models

    base = data_dir / "models" / DEMO_BASE
    if not base.exists():
        base.parent.mkdir(parents=True, exist_ok=True)
        tiny_models.write_tiny_checkpoint(base, seed=0)
    fixtures = data_dir / "fake-civitai"
    fixtures.mkdir(parents=True, exist_ok=True)
    files = {
        "watercolor": fixtures / "soft_watercolor_illu_v1.safetensors",
        "detail": fixtures / "detail_tweaker_xl.safetensors",
        "checkpoint": fixtures / "dreamForgeXl_tiny_v20.safetensors",
    }
    if not files["watercolor"].exists():
        tiny_models.write_tiny_lora(files["watercolor"], seed=1)
    if not files["detail"].exists():
        tiny_models.write_tiny_lora(files["detail"], seed=2, format="peft")
    if not files["checkpoint"].exists():
        tiny_models.write_tiny_checkpoint(files["checkpoint"], seed=3)
    return files


def start_fake_civitai(files: dict[str, Path]) -> tuple[Any, list[str]]:
    """devtools.fake_civitai serving the demo files (in background threads of this process);
    returns it and the references a user can paste."""
    from devtools.fake_civitai import FakeCivitai

    fake = FakeCivitai()
    made = [
        fake.add_lora(name="Soft Watercolor Style [Illustrious]", path=files["watercolor"],
                      trained_words=["wtrclr style", "watercolor"], filename=files["watercolor"].name,
                      model_id=1234567, version_id=2345678),
        fake.add_lora(name="Detail Tweaker XL", path=files["detail"], civitai_type="LoCon",
                      trained_words=["detailed"], base_model="SDXL 1.0", tags=("detail", "tool"),
                      filename=files["detail"].name, model_id=1234568, version_id=2345679),
        fake.add_checkpoint(name="DreamForge XL (tiny)", path=files["checkpoint"], filename=files["checkpoint"].name,
                            model_id=456789, version_id=1567890),
    ]
    examples = [f"{m.url}    ({m.name})" for m in made]
    examples.append(str(made[1].model_id) + "    (a bare model id works too)")
    return fake, examples


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="offline, with a local fake CivitAI and tiny models")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data folder (default: ./data, or ./data/demo with --demo)")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help="registry listen address")
    parser.add_argument("--civitai", default=DEFAULT_CIVITAI, help="CivitAI service listen address")
    parser.add_argument("--inference", default=DEFAULT_INFERENCE, help="inference service listen address")
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY, help="gateway listen address")
    parser.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    parser.add_argument("--civitai-base-url", default=None, metavar="URL",
                        help="the CivitAI the CivitAI service talks to (default: civitai.com, or with --demo a "
                             "local fake CivitAI started here): a mirror, or a fake CivitAI that you control")
    parser.add_argument("--log-format", default="console", choices=["console", "json"])
    parser.add_argument("--fleet", type=int, default=0, metavar="N",
                        help="run inference as N Ray Serve workers behind a gRPC front, on a Ray cluster started "
                             "on 127.0.0.1 (needs the fleet extra: pip install -e '.[fleet]')")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> StackConfig:
    data_dir = args.data_dir or (Path("data/demo") if args.demo else Path("data"))
    cfg = StackConfig(data_dir=data_dir, registry=args.registry, civitai=args.civitai, inference=args.inference,
                      gateway=args.gateway, demo=args.demo, log_format=args.log_format,
                      civitai_base_url=args.civitai_base_url, fleet=args.fleet)
    if args.free_ports:
        for name in ("registry", "civitai", "inference", "gateway"):
            setattr(cfg, name, f"127.0.0.1:{free_port()}")
    return cfg


def cli_flags(cfg: StackConfig) -> str:
    """The modelmgr flags needed for this stack's addresses (none for the defaults)."""
    flags = ""
    for name, default in (("registry", DEFAULT_REGISTRY), ("civitai", DEFAULT_CIVITAI),
                          ("inference", DEFAULT_INFERENCE)):
        if getattr(cfg, name) != default:
            flags += f" --{name} {getattr(cfg, name)}"
    return flags


def banner(cfg: StackConfig, examples: Sequence[str]) -> str:
    url = f"http://{cfg.gateway}"
    lines = [
        "",
        "=" * 72,
        f"  Model Manager is up{' (demo: offline, fake CivitAI, tiny models)' if cfg.demo else ''}",
        f"  Web UI:    {url}/",
        f"  API docs:  {url}/docs",
        f"  CLI:       modelmgr{cli_flags(cfg)} list   (modelmgr --help for more)",
        f"  Services:  registry {cfg.registry} · civitai {cfg.civitai} · inference {cfg.inference}",
        f"  Data:      {cfg.data_dir}/user-models, {cfg.data_dir}/models",
    ]
    if cfg.civitai_base_url:
        lines.append(f"  CivitAI:   {cfg.civitai_base_url}")
    if cfg.fleet:
        lines.append(f"  Fleet:     inference is a front for {cfg.fleet} Ray Serve workers (local Ray cluster)")
    base = cfg.models_dir / DEFAULT_CHECKPOINT_FILE
    if not base.exists():
        lines.append(f"  Note: no base checkpoint at {base}: put Illustrious-XL there, or install a")
        lines.append("        checkpoint from CivitAI and make it active, before generating.")
    if examples:
        lines.append("  Paste one of these in Model Manager → Download from CivitAI:")
        lines.extend(f"     {e}" for e in examples)
    lines += ["  Ctrl-C stops everything.", "=" * 72, ""]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    stack = Stack(cfg)
    examples: list[str] = []
    if cfg.demo:
        print(f"demo: preparing tiny models in {cfg.data_dir} …", flush=True)
        files = await asyncio.to_thread(prepare_demo_files, cfg.data_dir)
        if cfg.civitai_base_url is None:  # else the given CivitAI serves what it serves
            stack.fake_civitai, examples = start_fake_civitai(files)
            cfg.civitai_base_url = stack.fake_civitai.base_url
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    code = 0
    try:
        starting = asyncio.create_task(stack.start())
        stopper = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop_requested.is_set():  # Ctrl-C during start-up: stop what has started
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        else:
            starting.result()
            print(banner(cfg, examples), flush=True)
            exited = asyncio.create_task(stack.wait_any_exit())
            await asyncio.wait({exited, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                name = exited.result()
                print(f"\n{name} exited with code {stack.procs[name].returncode}; stopping the rest", flush=True)
                code = 1
            else:
                exited.cancel()
        stopper.cancel()
    except RuntimeError as exc:
        print(f"\nstack: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        print("stopping: gateway, inference, civitai, registry …", flush=True)
        if await stack.stop():
            print("stopped, not cleanly (see above).", flush=True)
            code = 1
        else:
            print("all stopped.", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
