"""Import jobs: each import runs as a task of the registry, not of the RPC that started it (it outlives its
client), and can be watched, listed and cancelled like a download.

A job's fields change only on the event loop; the hashing thread reports progress through
`loop.call_soon_threadsafe`. Watchers wait on a per-job version counter, so a slow watcher skips
intermediate states but always sees the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from metadata_svc.errors import ImportInProgress, ImportNotFound
from metadata_svc.models import SkippedFile
from service_kit import errors, get_logger

log = get_logger("metadata_svc.registry")

_SEQ = itertools.count()
KEEP_FINISHED = 100  # finished jobs kept for Get/List; older ones are forgotten
MAX_SKIPPED = 1000  # skipped files listed on a job (the count goes on)


def _now() -> str:
    """Now, to the microsecond: a rescan takes milliseconds, and created_at/finished_at are how long it took."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class ImportState(StrEnum):
    QUEUED = "queued"
    SCANNING = "scanning"
    HASHING = "hashing"
    IDENTIFYING = "identifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = (ImportState.SUCCEEDED, ImportState.FAILED, ImportState.CANCELLED)


class ImportMode(StrEnum):
    IN_PLACE = "in_place"
    LINK = "link"
    COPY = "copy"


@dataclass
class ImportJob:
    id: str
    root_id: str  # "" for a link/copy import into the volume
    path: Path  # the folder imported (real)
    mode: ImportMode
    no_identify: bool = False
    force_identify: bool = False
    state: ImportState = ImportState.QUEUED
    files_seen: int = 0
    models_found: int = 0
    registered: int = 0
    already_known: int = 0
    missing: int = 0
    files_hashed: int = 0
    files_to_hash: int = 0
    bytes_hashed: int = 0
    bytes_to_hash: int = 0
    identified: int = 0
    not_on_civitai: int = 0
    identify_failed: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    skipped_count: int = 0
    error: str = ""
    error_reason: str = ""
    identify_note: str = ""
    created_at: str = field(default_factory=_now)
    finished_at: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    new_keys: set[str] = field(default_factory=set)  # entries this job created
    seq: int = field(default_factory=lambda: next(_SEQ))
    version: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _notifying: bool = False  # a notify task is pending: later touches ride on it

    @property
    def done(self) -> bool:
        return self.state in FINAL

    def skip(self, path: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(SkippedFile(path, reason))

    def touch(self) -> None:
        """Tell watchers the job changed (call on the event loop). Touches before the watchers are woken
        share one wake-up: they read the job as it is then."""
        self.version += 1
        if self._notifying:
            return
        condition = self._changed

        async def notify() -> None:
            self._notifying = False
            async with condition:
                condition.notify_all()

        with contextlib.suppress(RuntimeError):  # no running loop: nobody can be watching
            asyncio.get_running_loop().create_task(notify())
            self._notifying = True

    async def wait_change(self, seen: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.version != seen)


class Cancelled(Exception):
    """The job's cancel flag was seen between two steps."""


Work = Callable[[ImportJob], Awaitable[None]]


class ImportJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, ImportJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running_for(self, key: Path) -> ImportJob | None:
        return next((j for j in self._jobs.values() if not j.done and j.path == key), None)

    def start(self, job: ImportJob, work: Work) -> ImportJob:
        other = self.running_for(job.path)
        if other is not None:
            raise ImportInProgress(f"an import of this folder is running (job {other.id})",
                                   metadata={"job_id": other.id})
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.get_running_loop().create_task(self._run(job, work), name=f"import-{job.id}")
        self._forget_old()
        return job

    async def _run(self, job: ImportJob, work: Work) -> None:
        try:
            await work(job)
            job.state = ImportState.CANCELLED if job.cancel.is_set() else ImportState.SUCCEEDED
        except Cancelled:
            job.state = ImportState.CANCELLED
        except asyncio.CancelledError:
            job.state = ImportState.CANCELLED
            raise
        except errors.ServiceError as exc:
            job.state, job.error, job.error_reason = ImportState.FAILED, exc.message, exc.reason
        except Exception as exc:  # the job fails, the registry goes on
            log.exception("import.failed", job_id=job.id)
            job.state, job.error, job.error_reason = ImportState.FAILED, f"{type(exc).__name__}: {exc}", "INTERNAL"
        finally:
            job.finished_at = _now()
            job.touch()
            self._tasks.pop(job.id, None)
            log.info("import.finished", job_id=job.id, state=job.state.value, registered=job.registered,
                     known=job.already_known, missing=job.missing, skipped=job.skipped_count)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.done]
        for job in sorted(finished, key=lambda j: j.seq)[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def get(self, job_id: str) -> ImportJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise ImportNotFound(f"no import job {job_id!r}", metadata={"job_id": job_id[:64]})
        return job

    def list(self) -> list[ImportJob]:
        return sorted(self._jobs.values(), key=lambda j: j.seq, reverse=True)

    def cancel(self, job_id: str) -> ImportJob:
        job = self.get(job_id)
        if not job.done:
            job.cancel.set()  # the hashing threads and the steps between files see it
            job.touch()
        return job

    async def watch(self, job_id: str) -> AsyncIterator[ImportJob]:
        """The job now, then after each change, until it has ended (its last state included)."""
        job = self.get(job_id)
        while True:
            seen, done = job.version, job.done  # as yielded: the job may end while the watcher reads it
            yield job
            if done:
                return
            await job.wait_change(seen)

    async def wait(self, job_id: str) -> ImportJob:
        async for job in self.watch(job_id):
            if job.done:
                return job
        return self.get(job_id)

    async def close(self) -> None:
        for job in self._jobs.values():
            job.cancel.set()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def new_job_id() -> str:
    return "imp_" + secrets.token_hex(6)
