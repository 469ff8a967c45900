"""`modelmgr updates [--download] [--delete-old] [--all]`: newer versions of installed CivitAI models.

The check is the CivitAI service's CheckUpdates (bulk, 100 models a CivitAI call). With --download each
update that is neither ignored nor early access is installed by StartDownload with `replaces` (the old
entry's edits are carried over; --delete-old deletes it once the new one is in), all jobs at once, each
with its own bar.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable
from typing import Any

from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from modelmanager.v1 import civitai_pb2
from modelmgr.output import console, err_console, state_name
from modelmgr.progress import download_bar
from modelmgr.services import Services
from service_kit.errors import ServiceError

# A check of a large library asks CivitAI one page of 100 at a time; StartDownload asks CivitAI too.
CHECK_DEADLINE = 300.0
START_DEADLINE = 120.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("updates", help="newer versions of installed CivitAI models (and install them)")
    p.add_argument("--download", action="store_true",
                   help="install every update that is not ignored or in early access, edits carried over")
    p.add_argument("--delete-old", action="store_true", help="with --download: delete each old version once "
                   "its update is installed (a failed update keeps it)")
    p.add_argument("--all", action="store_true", help="list every checked model, not only those with an update")
    p.add_argument("--token", default="", help="CivitAI token for the check and the downloads")


def _date(ts: Any) -> str:
    return ts.ToDatetime().date().isoformat() if ts.seconds else ""


def updates_table(updates: Iterable[civitai_pb2.ModelUpdate]) -> Table:
    table = Table("filename", "installed", "latest", "base", "published", "early access", "ignored")
    for u in updates:
        if not u.checked:
            latest = "[dim]not checked[/]"
        elif u.update_available:
            latest = f"[bold]{escape(u.latest_version_name)}[/] ({u.latest_version_id})"
        else:
            latest = "[dim]up to date[/]"
        early = ("until " + _date(u.early_access_deadline) if u.early_access_deadline.seconds else "yes") \
            if u.early_access else ""
        table.add_row(escape(u.filename), f"{escape(u.installed_version_name)} ({u.installed_version_id})", latest,
                      escape(u.latest_base_model), _date(u.latest_published_at), early, "yes" if u.ignored else "")
    return table


async def cmd_updates(s: Services, args: argparse.Namespace) -> int:
    reply = await s.civitai.call(s.civitai_stub.CheckUpdates, civitai_pb2.CheckUpdatesRequest(token=args.token),
                                 deadline=CHECK_DEADLINE)
    updates = list(reply.updates)
    available = [u for u in updates if u.update_available]
    shown = updates if args.all else available
    if shown:
        console.print(updates_table(shown))
    unchecked = sum(1 for u in updates if not u.checked)
    ignored = sum(1 for u in available if u.ignored)
    early = sum(1 for u in available if u.early_access)
    console.print(f"{len(updates)} model(s) checked: {len(available)} update(s) ({ignored} ignored, "
                  f"{early} in early access), {unchecked} not found on CivitAI")
    if not args.download:
        return 0
    wanted = [u for u in available if not u.ignored and not u.early_access]
    if not wanted:
        console.print("nothing to download")
        return 0
    return await _download(s, args, wanted)


async def _download(s: Services, args: argparse.Namespace, wanted: list[civitai_pb2.ModelUpdate]) -> int:
    jobs = []
    failed = 0
    for u in wanted:
        req = civitai_pb2.StartDownloadRequest(reference=f"v:{u.latest_version_id}", token=args.token,
                                               replaces=u.filename, delete_replaced=args.delete_old)
        try:
            jobs.append((await s.civitai.call(s.civitai_stub.StartDownload, req, deadline=START_DEADLINE)).job)
        except ServiceError as err:  # one refused update must not stop the others
            failed += 1
            err_console.print(f"[red]✗[/] {escape(u.filename)}: {err.code.name} / {err.reason}: {escape(err.message)}")
    with download_bar(console) as progress:
        finals = await asyncio.gather(*(_watch(s, progress, job) for job in jobs))
    for job in finals:
        if job.state != civitai_pb2.DOWNLOAD_STATE_SUCCEEDED:
            failed += 1
            why = job.error.message or state_name(job.state)
            err_console.print(f"[red]✗[/] {escape(job.replaces)}: update {state_name(job.state)}: {escape(why)} "
                              "(the installed version is kept)")
            continue
        what = "deleted" if job.replaced_deleted else "kept"
        carried = f", carried {', '.join(job.carried_fields)}" if job.carried_fields else ""
        console.print(f"[green]✓[/] {escape(job.replaces)} → [bold]{escape(job.filename or job.model.filename)}[/] "
                      f"(old {what}{carried})")
        if job.replace_note:
            console.print(f"  [yellow]note:[/] {escape(job.replace_note)}")
    return 1 if failed else 0


async def _watch(s: Services, progress: Progress, job: civitai_pb2.DownloadJob) -> civitai_pb2.DownloadJob:
    label = escape(job.name or job.reference)
    task = progress.add_task(label, total=job.total_bytes or None)
    call = s.civitai_stub.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=job.id))
    async for msg in s.civitai.stream(call):
        job = msg.job
        progress.update(task, completed=job.bytes_done, total=job.total_bytes or None,
                        description=f"{label} [dim]({state_name(job.state)})[/]")
    return job
