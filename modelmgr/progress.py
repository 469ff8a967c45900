"""The rich progress bars of the streaming commands (download, load, generate, import)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from modelmanager.v1 import registry_pb2
from service_kit.display import human_size


def download_bar(console: Console) -> Progress:
    """Bytes done of the file, speed and time left."""
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def load_bar(console: Console) -> Progress:
    """The fraction of a checkpoint load, in per cent."""
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    console=console)


def steps_bar(console: Console) -> Progress:
    """Denoising steps done of the total."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console)


def import_bars(console: Console) -> Progress:
    """One row per phase of an import (scan, hash, identify), each with its own counts in `detail`."""
    return Progress(TextColumn("{task.description:<9}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                    TimeElapsedColumn(), console=console)


# The phases in the order an import goes through them (ImportState's numbers follow it).
_PHASES = (
    ("scan", registry_pb2.IMPORT_STATE_SCANNING),
    ("hash", registry_pb2.IMPORT_STATE_HASHING),
    ("identify", registry_pb2.IMPORT_STATE_IDENTIFYING),
)


class ImportProgress:
    """Drives import_bars from the job's successive states (WatchImport)."""

    def __init__(self, progress: Progress, *, no_identify: bool) -> None:
        self.progress = progress
        self.no_identify = no_identify
        self.tasks = {name: progress.add_task(name, total=None, detail="waiting") for name, _ in _PHASES}

    def update(self, job: registry_pb2.ImportJob) -> None:
        succeeded = job.state == registry_pb2.IMPORT_STATE_SUCCEEDED
        for name, state in _PHASES:
            # A phase is over once the job is past it; a failed or cancelled job leaves its bars as they were.
            done = succeeded or (state < job.state < registry_pb2.IMPORT_STATE_SUCCEEDED)
            started = done or job.state == state
            if started:
                self._show(name, job, done)

    def _show(self, name: str, job: registry_pb2.ImportJob, done: bool) -> None:
        task = self.tasks[name]
        if name == "scan":
            detail = f"{job.files_seen} files, {job.models_found} models"
            total = job.files_seen if done else None
            self.progress.update(task, completed=job.files_seen, total=total, detail=detail)
        elif name == "hash":
            if job.files_to_hash == 0 and done:
                self.progress.update(task, completed=1, total=1, detail="nothing to hash (unchanged)")
                return
            detail = (f"{job.files_hashed}/{job.files_to_hash} files, "
                      f"{human_size(job.bytes_hashed)}/{human_size(job.bytes_to_hash)}")
            self.progress.update(task, completed=job.bytes_hashed, total=job.bytes_to_hash or None, detail=detail)
        else:
            if self.no_identify:
                self.progress.update(task, completed=1, total=1, detail="skipped (--no-identify)")
                return
            detail = f"{job.identified} identified, {job.not_on_civitai} not on CivitAI"
            if job.identify_failed:
                detail += f", {job.identify_failed} failed"
            # ImportJob gives no count of files to identify: the bar fills when the phase ends.
            self.progress.update(task, completed=1 if done else 0, total=1 if done else None, detail=detail)
