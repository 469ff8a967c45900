"""`modelmgr`: the operators' command line, with progress bars.

It talks gRPC straight to the services (not the gateway's HTTP API): an
operator is on the services' network anyway, the streams (download, load,
generate) arrive as typed messages with no SSE parsing, and it keeps working
when the gateway is down or not deployed. Addresses come from flags or the same
`MODELMGR_*_ADDR` variables as the gateway.

    modelmgr download https://civitai.com/models/929497
    modelmgr list [--type lora|checkpoint] [--query TEXT]
    modelmgr active
    modelmgr set-active NAME
    modelmgr generate "a castle" --lora detailer:0.8 -o castle.png
    modelmgr downloads | modelmgr cancel JOB_ID
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.errors import ApiError
from gateway.text import human_size, type_name
from gateway.upload import model_type
from modelmanager.v1 import civitai_pb2, inference_pb2, model_pb2, registry_pb2
from service_kit.config import (
    DEFAULT_CHECKPOINT,
    DEFAULT_CIVITAI,
    DEFAULT_INFERENCE,
    DEFAULT_REGISTRY,
    add_setting,
)

console = Console()
err_console = Console(stderr=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelmgr", description="Model manager command line (talks gRPC).")
    add_setting(parser, "--registry", "MODELMGR_REGISTRY_ADDR", DEFAULT_REGISTRY, "registry service address")
    add_setting(parser, "--civitai", "MODELMGR_CIVITAI_ADDR", DEFAULT_CIVITAI, "CivitAI service address")
    add_setting(parser, "--inference", "MODELMGR_INFERENCE_ADDR", DEFAULT_INFERENCE, "inference service address")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="install a model from CivitAI (URL, id, AIR) with a progress bar")
    p.add_argument("reference")
    p.add_argument("--file-id", type=int, default=0, help="a specific file of the version")
    p.add_argument("--token", default="", help="CivitAI token for this download (default: the service's)")
    p.add_argument("--detach", action="store_true", help="start the job and return (it keeps running)")

    p = sub.add_parser("list", help="installed models")
    p.add_argument("--type", default="", help="lora or checkpoint")
    p.add_argument("--query", default="", help="free text over names, tags and trigger words")

    sub.add_parser("active", help="the active checkpoint")

    p = sub.add_parser("set-active", help="set the active checkpoint and load it, with progress")
    p.add_argument("checkpoint", help=f'"{DEFAULT_CHECKPOINT}" or an installed checkpoint filename')
    p.add_argument("--no-load", action="store_true", help="only set it; the next job loads it")

    p = sub.add_parser("generate", help="text to image, with a progress bar")
    p.add_argument("prompt")
    p.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]",
                   help="LoRA by filename, display or short name; weight defaults to its recommended one")
    p.add_argument("-o", "--output", type=Path, default=Path("out.png"))
    p.add_argument("--negative", default="")
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--scheduler", default="")
    p.add_argument("--checkpoint", default="", help="override the active checkpoint for this job")

    sub.add_parser("downloads", help="download jobs, newest first")
    p = sub.add_parser("cancel", help="cancel a download job")
    p.add_argument("job_id")
    return parser


def parse_lora(spec: str) -> model_pb2.LoraSelection:
    name, sep, weight = spec.rpartition(":")
    if sep and name:
        try:
            return model_pb2.LoraSelection(name=name, weight=float(weight))
        except ValueError:
            pass
    return model_pb2.LoraSelection(name=spec)


async def cmd_download(c: ServiceClients, args: argparse.Namespace) -> int:
    req = civitai_pb2.StartDownloadRequest(reference=args.reference, file_id=args.file_id, token=args.token)
    job = (await c.unary("civitai", c.civitai.StartDownload, req, deadline=120)).job
    console.print(f"job [bold]{job.id}[/]: {job.name or job.reference}")
    if args.detach:
        return 0
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job.name or args.reference, total=job.total_bytes or None)
        call = c.civitai.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=job.id))
        async for msg in c.stream("civitai", call):
            job = msg.job
            state = civitai_pb2.DownloadState.Name(job.state).removeprefix("DOWNLOAD_STATE_").lower()
            progress.update(task, completed=job.bytes_done, total=job.total_bytes or None,
                            description=f"{job.name or args.reference} [dim]({state})[/]")
    if job.state == civitai_pb2.DOWNLOAD_STATE_SUCCEEDED:
        how = "already installed as" if job.already_installed else "installed as"
        console.print(f"[green]✓[/] {how} [bold]{job.filename or job.model.filename}[/]")
        return 0
    reason = job.error.message or civitai_pb2.DownloadState.Name(job.state)
    err_console.print(f"[red]✗[/] download {civitai_pb2.DownloadState.Name(job.state).lower()}: {reason}")
    return 1


async def cmd_list(c: ServiceClients, args: argparse.Namespace) -> int:
    table = Table("filename", "type", "name", "base", "trigger words", "weight", "size")
    token, count = "", 0
    while True:
        req = registry_pb2.ListModelsRequest(page_size=500, page_token=token, type=model_type(args.type),
                                             query=args.query)
        resp = await c.unary("registry", c.registry.ListModels, req)
        for m in resp.models:
            table.add_row(m.filename, type_name(m.type), m.display_name, m.base_model, ", ".join(m.trigger_words),
                          f"{m.recommended_weight:g}", human_size(m.file_size_bytes))
            count += 1
        token = resp.next_page_token
        if not token:
            break
    console.print(table)
    console.print(f"{count} model(s)")
    return 0


async def cmd_active(c: ServiceClients, _: argparse.Namespace) -> int:
    resp = await c.unary("registry", c.registry.GetActiveCheckpoint, registry_pb2.GetActiveCheckpointRequest())
    present = "" if resp.file_present else " [red](file missing)[/]"
    console.print(f"[bold]{resp.checkpoint}[/] → {resp.path}{present}")
    return 0


async def cmd_set_active(c: ServiceClients, args: argparse.Namespace) -> int:
    req = registry_pb2.SetActiveCheckpointRequest(checkpoint=args.checkpoint)
    resp = await c.unary("registry", c.registry.SetActiveCheckpoint, req)
    console.print(f"active checkpoint: [bold]{resp.checkpoint}[/] → {resp.path}")
    if args.no_load:
        return 0
    r: Any = None
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  console=console) as progress:
        task = progress.add_task("loading", total=1.0)
        call = c.inference.LoadCheckpoint(inference_pb2.LoadCheckpointRequest(checkpoint=args.checkpoint))
        async for msg in c.stream("inference", call):
            kind = msg.WhichOneof("event")
            if kind == "queued":
                progress.update(task, description=f"waiting (position {msg.queued.position})")
            elif kind == "progress":
                progress.update(task, completed=msg.progress.fraction, description=msg.progress.stage)
            elif kind == "result":
                progress.update(task, completed=1.0, description="loaded")
                r = msg.result
    if r is None:
        err_console.print("[red]✗[/] the load stream ended without a result")
        return 1
    console.print(f"[green]✓[/] loaded {r.checkpoint} in {r.load_seconds:.1f} s (from {r.loaded_from})")
    return 0


async def cmd_generate(c: ServiceClients, args: argparse.Namespace) -> int:
    req = inference_pb2.GenerateRequest(
        prompt=args.prompt, negative_prompt=args.negative, loras=[parse_lora(s) for s in args.lora],
        width=args.width, height=args.height, steps=args.steps, scheduler=args.scheduler, checkpoint=args.checkpoint,
    )
    if args.guidance is not None:
        req.guidance_scale = args.guidance
    if args.seed is not None:
        req.seed = args.seed
    result: Any = None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("queued", total=None)
        async for msg in c.stream("inference", c.inference.Generate(req)):
            kind = msg.WhichOneof("event")
            if kind == "queued":
                progress.update(task, description=f"queued (position {msg.queued.position})")
            elif kind == "progress":
                p = msg.progress
                progress.update(task, description=p.stage, completed=p.step, total=p.total_steps or None)
            elif kind == "result":
                result = msg.result
    if result is None:
        err_console.print("[red]✗[/] the stream ended without an image")
        return 1
    await asyncio.to_thread(args.output.write_bytes, result.png)
    console.print(f"[green]✓[/] {args.output} ({result.width}×{result.height}, seed {result.seed}, "
                  f"{result.timings.total_seconds:.1f} s)")
    console.print(f"  final prompt: {result.final_prompt}")
    return 0


async def cmd_downloads(c: ServiceClients, _: argparse.Namespace) -> int:
    resp = await c.unary("civitai", c.civitai.ListDownloads, civitai_pb2.ListDownloadsRequest(page_size=100))
    table = Table("job", "name", "state", "done", "file")
    for job in resp.jobs:
        done = f"{job.bytes_done / job.total_bytes * 100:.0f} %" if job.total_bytes else human_size(job.bytes_done)
        table.add_row(job.id, job.name or job.reference,
                      civitai_pb2.DownloadState.Name(job.state).removeprefix("DOWNLOAD_STATE_").lower(),
                      done, job.filename)
    console.print(table)
    return 0


async def cmd_cancel(c: ServiceClients, args: argparse.Namespace) -> int:
    resp = await c.unary("civitai", c.civitai.CancelDownload, civitai_pb2.CancelDownloadRequest(job_id=args.job_id))
    console.print(f"{resp.job.id}: {civitai_pb2.DownloadState.Name(resp.job.state).lower()}")
    return 0


COMMANDS = {"download": cmd_download, "list": cmd_list, "active": cmd_active, "set-active": cmd_set_active,
            "generate": cmd_generate, "downloads": cmd_downloads, "cancel": cmd_cancel}


async def run(args: argparse.Namespace) -> int:
    settings = GatewaySettings(registry=args.registry, civitai=args.civitai, inference=args.inference,
                               rpc_timeout=60.0, ui=False)
    clients = ServiceClients.connect(settings)
    try:
        return await COMMANDS[args.command](clients, args)
    except ApiError as exc:
        reason = f" ({exc.reason})" if exc.reason else ""
        err_console.print(f"[red]error:[/] {exc.message}{reason}")
        return 1
    finally:
        await clients.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        err_console.print("interrupted (a download keeps running in the CivitAI service)")
        return 130
    except grpc.RpcError as exc:  # pragma: no cover - every call goes through ServiceClients
        err_console.print(f"[red]error:[/] {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
