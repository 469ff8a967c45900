"""The commands and their arguments.

    modelmgr download https://civitai.com/models/929497
    modelmgr list [--type lora|checkpoint|embedding|vae|upscaler] [--query TEXT]
    modelmgr active
    modelmgr set-active NAME
    modelmgr generate "a castle" --lora detailer:0.8 [--vae NAME] -o castle.png
    modelmgr upscale in.png -o out.png [--upscaler NAME] [--scale F] [--tile-padding N] [--mask-blur N]
        [--seams-fix band|half-tile] [--region "x,y,w,h:prompt"]...
    modelmgr downloads | modelmgr cancel JOB_ID
    modelmgr import ~/stable-diffusion-webui/models/Lora [--copy|--link] [--no-identify]
    modelmgr roots [add PATH [--write-back] | remove ID] | modelmgr imports | modelmgr cancel-import JOB_ID
    modelmgr refresh NAME... [--force]
    modelmgr outputs [--limit N] | modelmgr outputs get ID -o FILE | modelmgr outputs delete ID
    modelmgr updates [--download [--delete-old]] [--all]
    modelmgr duplicates | modelmgr du [--biggest N]

Addresses come from flags or the same `MODELMGR_*_ADDR` variables as the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from modelmanager.v1 import civitai_pb2, inference_pb2, model_pb2, registry_pb2
from modelmgr import maintenance, outputs, updates, upscale
from modelmgr.output import (
    console,
    downloads_table,
    err_console,
    import_state_name,
    import_summary,
    imports_table,
    models_table,
    print_error,
    roots_table,
    state_name,
)
from modelmgr.progress import ImportProgress, download_bar, import_bars, load_bar
from modelmgr.services import Services
from modelmgr.upscale import image_job, parse_lora
from service_kit import configure_logging
from service_kit.config import (
    DEFAULT_CHECKPOINT,
    DEFAULT_CIVITAI,
    DEFAULT_INFERENCE,
    DEFAULT_REGISTRY,
    add_setting,
)
from service_kit.errors import ServiceError
from service_kit.peer import PeerUnavailable, paged

# StartDownload asks CivitAI for the model before it answers.
START_DOWNLOAD_DEADLINE = 120.0
MODEL_TYPES = {"": model_pb2.MODEL_TYPE_UNSPECIFIED, "lora": model_pb2.MODEL_TYPE_LORA,
               "checkpoint": model_pb2.MODEL_TYPE_CHECKPOINT, "embedding": model_pb2.MODEL_TYPE_EMBEDDING,
               "vae": model_pb2.MODEL_TYPE_VAE, "upscaler": model_pb2.MODEL_TYPE_UPSCALER}
# A refresh asks CivitAI about every name given, 100 hashes a call.
REFRESH_DEADLINE = 600.0
IMPORT_DONE = (registry_pb2.IMPORT_STATE_SUCCEEDED, registry_pb2.IMPORT_STATE_FAILED,
               registry_pb2.IMPORT_STATE_CANCELLED)
# What Ctrl-C leaves behind, by command (the jobs live in the services, not in this process).
INTERRUPTED = {
    "import": "interrupted: the import keeps running in the registry (`modelmgr imports` shows it, "
              "`modelmgr cancel-import JOB_ID` stops it)",
}
INTERRUPTED_DEFAULT = "interrupted (a download keeps running in the CivitAI service)"


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
    p.add_argument("--type", default="", choices=[t for t in MODEL_TYPES if t])
    p.add_argument("--query", default="", help="free text over names, tags and trigger words")
    p.add_argument("--root", default="", metavar="ID", help='only this library root ("volume": the volume\'s own)')
    p.add_argument("--folder", default="", help="only this folder of a root, and below it")

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
    p.add_argument("--vae", default="", metavar="NAME", help="a VAE entry; default: the checkpoint's default")

    upscale.add_parser(sub)

    sub.add_parser("downloads", help="download jobs, newest first")
    p = sub.add_parser("cancel", help="cancel a download job")
    p.add_argument("job_id")

    p = sub.add_parser("import", help="import a library folder (in place by default), with progress and a summary",
                       description="Scan PATH (a folder the registry can read, under one of its --library-allow "
                       "folders), register what it can load, hash everything and identify it on CivitAI. Exits "
                       "non-zero only when the import itself fails; files skipped are listed with their reason.")
    p.add_argument("path", help="the folder, as the registry sees it")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--copy", dest="mode", action="store_const", const=registry_pb2.IMPORT_MODE_COPY,
                      help="copy the files into the volume")
    mode.add_argument("--link", dest="mode", action="store_const", const=registry_pb2.IMPORT_MODE_LINK,
                      help="hard-link the files into the volume (a copy across file systems)")
    p.set_defaults(mode=registry_pb2.IMPORT_MODE_IN_PLACE)
    p.add_argument("--no-identify", action="store_true", help="skip the CivitAI lookup")
    p.add_argument("--write-back", action="store_true",
                   help="write A1111-style <stem>.json and previews next to the files (a new root)")
    p.add_argument("--force-identify", action="store_true",
                   help="ask CivitAI again about files it did not know, even within a day")
    p.add_argument("--detach", action="store_true", help="start the job and return (it keeps running)")

    p = sub.add_parser("roots", help="library roots (list; add PATH; remove ID)")
    roots = p.add_subparsers(dest="roots_command")
    r = roots.add_parser("add", help="add a library root (no scan: `modelmgr import PATH` scans)")
    r.add_argument("path")
    r.add_argument("--write-back", action="store_true", help="write A1111-style sidecars next to the files")
    r = roots.add_parser("remove", help="remove a root and its entries; its files stay")
    r.add_argument("root_id")

    sub.add_parser("imports", help="import jobs, newest first")
    p = sub.add_parser("cancel-import", help="cancel an import job")
    p.add_argument("job_id")

    p = sub.add_parser("refresh", help="look models up on CivitAI again (fields you edited are kept)")
    p.add_argument("names", nargs="+", metavar="NAME", help="model filenames")
    p.add_argument("--force", action="store_true", help="ask again even about files CivitAI did not know")

    outputs.add_parser(sub)
    updates.add_parser(sub)
    maintenance.add_parsers(sub)
    return parser


def server_path(path: str) -> str:
    """PATH made absolute against this shell's directory, as the registry wants it (links left as they
    are: the registry decides what a link may reach)."""
    return os.path.abspath(os.path.expanduser(path))


async def cmd_download(s: Services, args: argparse.Namespace) -> int:
    req = civitai_pb2.StartDownloadRequest(reference=args.reference, file_id=args.file_id, token=args.token)
    job = (await s.civitai.call(s.civitai_stub.StartDownload, req, deadline=START_DOWNLOAD_DEADLINE)).job
    console.print(f"job [bold]{job.id}[/]: {job.name or job.reference}")
    if args.detach:
        return 0
    with download_bar(console) as progress:
        task = progress.add_task(job.name or args.reference, total=job.total_bytes or None)
        call = s.civitai_stub.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=job.id))
        async for msg in s.civitai.stream(call):
            job = msg.job
            progress.update(task, completed=job.bytes_done, total=job.total_bytes or None,
                            description=f"{job.name or args.reference} [dim]({state_name(job.state)})[/]")
    if job.state == civitai_pb2.DOWNLOAD_STATE_SUCCEEDED:
        how = "already installed as" if job.already_installed else "installed as"
        console.print(f"[green]✓[/] {how} [bold]{job.filename or job.model.filename}[/]")
        return 0
    reason = job.error.message or civitai_pb2.DownloadState.Name(job.state)
    err_console.print(f"[red]✗[/] download {civitai_pb2.DownloadState.Name(job.state).lower()}: {reason}")
    return 1


async def cmd_list(s: Services, args: argparse.Namespace) -> int:
    req = registry_pb2.ListModelsRequest(page_size=500, type=MODEL_TYPES[args.type], query=args.query,
                                         root_id=args.root, folder=args.folder)
    models = [m async for m in paged(lambda r: s.registry.call(s.registry_stub.ListModels, r), req, "models")]
    console.print(models_table(models))
    console.print(f"{len(models)} model(s)")
    return 0


async def cmd_active(s: Services, _: argparse.Namespace) -> int:
    resp = await s.registry.call(s.registry_stub.GetActiveCheckpoint, registry_pb2.GetActiveCheckpointRequest())
    present = "" if resp.file_present else " [red](file missing)[/]"
    console.print(f"[bold]{resp.checkpoint}[/] → {resp.path}{present}")
    return 0


async def cmd_set_active(s: Services, args: argparse.Namespace) -> int:
    req = registry_pb2.SetActiveCheckpointRequest(checkpoint=args.checkpoint)
    resp = await s.registry.call(s.registry_stub.SetActiveCheckpoint, req)
    console.print(f"active checkpoint: [bold]{resp.checkpoint}[/] → {resp.path}")
    if args.no_load:
        return 0
    r: Any = None
    with load_bar(console) as progress:
        task = progress.add_task("loading", total=1.0)
        call = s.inference_stub.LoadCheckpoint(inference_pb2.LoadCheckpointRequest(checkpoint=args.checkpoint))
        async for msg in s.inference.stream(call):
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


async def cmd_generate(s: Services, args: argparse.Namespace) -> int:
    req = inference_pb2.GenerateRequest(
        prompt=args.prompt, negative_prompt=args.negative, loras=[parse_lora(spec) for spec in args.lora],
        width=args.width, height=args.height, steps=args.steps, scheduler=args.scheduler, checkpoint=args.checkpoint,
        vae=args.vae,
    )
    if args.guidance is not None:
        req.guidance_scale = args.guidance
    if args.seed is not None:
        req.seed = args.seed
    result = await image_job(s, s.inference_stub.Generate(req), args.output)
    if result is None:
        return 1
    console.print(f"  final prompt: {result.final_prompt}")
    if result.vae or result.embeddings:
        vae = result.vae or "the checkpoint's own"
        console.print(f"  VAE: {escape(vae)} · embeddings: {escape(', '.join(result.embeddings) or '—')}")
    return 0


async def cmd_downloads(s: Services, _: argparse.Namespace) -> int:
    resp = await s.civitai.call(s.civitai_stub.ListDownloads, civitai_pb2.ListDownloadsRequest(page_size=100))
    console.print(downloads_table(resp.jobs))
    return 0


async def cmd_cancel(s: Services, args: argparse.Namespace) -> int:
    req = civitai_pb2.CancelDownloadRequest(job_id=args.job_id)
    resp = await s.civitai.call(s.civitai_stub.CancelDownload, req)
    console.print(f"{resp.job.id}: {civitai_pb2.DownloadState.Name(resp.job.state).lower()}")
    return 0


async def cmd_import(s: Services, args: argparse.Namespace) -> int:
    req = registry_pb2.StartImportRequest(path=server_path(args.path), mode=args.mode, no_identify=args.no_identify,
                                          write_back=args.write_back, force_identify=args.force_identify)
    job = (await s.registry.call(s.registry_stub.StartImport, req)).job
    console.print(f"import job [bold]{job.id}[/]: {escape(job.path)} (root {job.root_id})")
    if args.detach:
        return 0
    with import_bars(console) as progress:
        bars = ImportProgress(progress, no_identify=args.no_identify)
        bars.update(job)
        call = s.registry_stub.WatchImport(registry_pb2.WatchImportRequest(id=job.id))
        async for msg in s.registry.stream(call):
            job = msg.job
            bars.update(job)
    if job.state not in IMPORT_DONE:  # the watch ended early: ask once more
        job = (await s.registry.call(s.registry_stub.GetImport, registry_pb2.GetImportRequest(id=job.id))).job
    state = import_state_name(job.state)
    if job.state == registry_pb2.IMPORT_STATE_SUCCEEDED:
        console.print(f"[green]✓[/] import {state}: {escape(job.path)}")
    elif job.state == registry_pb2.IMPORT_STATE_CANCELLED:
        console.print(f"[yellow]■[/] import {state}: {escape(job.path)} (what it did so far stays)")
    else:
        why = f"{job.error_reason}: {job.error}" if job.error_reason else job.error or state
        err_console.print(f"[red]✗[/] import {state}: {escape(why)}")
    for line in import_summary(job):
        console.print(line)
    # Skipped files and files CivitAI does not know are results, not failures; a cancel is someone's choice.
    return 0 if job.state in (registry_pb2.IMPORT_STATE_SUCCEEDED, registry_pb2.IMPORT_STATE_CANCELLED) else 1


async def cmd_roots(s: Services, args: argparse.Namespace) -> int:
    if args.roots_command == "add":
        req = registry_pb2.AddLibraryRootRequest(path=server_path(args.path), write_back=args.write_back)
        root = (await s.registry.call(s.registry_stub.AddLibraryRoot, req)).root
        console.print(f"root [bold]{root.id}[/]: {escape(root.path)} (scan it with `modelmgr import`)")
        return 0
    if args.roots_command == "remove":
        req_rm = registry_pb2.RemoveLibraryRootRequest(id=args.root_id)
        resp = await s.registry.call(s.registry_stub.RemoveLibraryRoot, req_rm)
        entries = "entry" if resp.removed_models == 1 else "entries"
        console.print(f"removed root {resp.root.id} ({escape(resp.root.path)}) and its {resp.removed_models} "
                      f"{entries}; its files are untouched")
        return 0
    resp_ls = await s.registry.call(s.registry_stub.ListLibraryRoots, registry_pb2.ListLibraryRootsRequest())
    console.print(roots_table(resp_ls.roots))
    return 0


async def cmd_imports(s: Services, _: argparse.Namespace) -> int:
    resp = await s.registry.call(s.registry_stub.ListImports, registry_pb2.ListImportsRequest())
    console.print(imports_table(resp.jobs))
    return 0


async def cmd_cancel_import(s: Services, args: argparse.Namespace) -> int:
    resp = await s.registry.call(s.registry_stub.CancelImport, registry_pb2.CancelImportRequest(id=args.job_id))
    console.print(f"{resp.job.id}: {import_state_name(resp.job.state)}")
    return 0


async def cmd_refresh(s: Services, args: argparse.Namespace) -> int:
    req = registry_pb2.RefreshFromCivitaiRequest(filenames=args.names, force=args.force)
    resp = await s.registry.call(s.registry_stub.RefreshFromCivitai, req, deadline=REFRESH_DEADLINE)
    console.print(models_table(resp.models))
    console.print(f"{len(resp.models)} model(s) refreshed")
    return 0


COMMANDS: dict[str, Callable[[Services, argparse.Namespace], Awaitable[int]]] = {
    "download": cmd_download, "list": cmd_list, "active": cmd_active, "set-active": cmd_set_active,
    "generate": cmd_generate, "upscale": upscale.cmd_upscale, "downloads": cmd_downloads, "cancel": cmd_cancel, "import": cmd_import,
    "roots": cmd_roots, "imports": cmd_imports, "cancel-import": cmd_cancel_import, "refresh": cmd_refresh,
    "outputs": outputs.cmd_outputs, "updates": updates.cmd_updates,
    "duplicates": maintenance.cmd_duplicates, "du": maintenance.cmd_du,
}


async def run(args: argparse.Namespace) -> int:
    services = Services(registry=args.registry, civitai=args.civitai, inference=args.inference)
    try:
        return await COMMANDS[args.command](services, args)
    except ServiceError as err:
        print_error(err, services.address(err.service) if isinstance(err, PeerUnavailable) else "")
        return 1
    finally:
        await services.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The CLI prints its own error lines; the peers' log lines would only repeat them.
    configure_logging("modelmgr", level="ERROR", json=False)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED.get(args.command, INTERRUPTED_DEFAULT))
        return 130


if __name__ == "__main__":
    sys.exit(main())
