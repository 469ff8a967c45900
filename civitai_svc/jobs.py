"""Download jobs: a registry of jobs that outlive their callers, watchable, cancellable, bounded.

A job is an asyncio task owned by the `JobManager`, not by the RPC that
started it, so a client may disconnect and watch again later. A semaphore
bounds how many run at once (the rest wait QUEUED). Each change of a job bumps
an event that Watch streams wait on; progress is throttled by the downloader,
so watchers see a few updates per second, not one per chunk.

With a journal, jobs survive a restart of the service: every change of state
(not progress ticks) is recorded, an entry goes once its job has ended, and
`shutdown()` stops jobs as *interrupted* (QUEUED again, partial files kept)
rather than cancelled; `restore()` runs them again under their old id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from civitai_svc import errors as E
from modelmanager.v1 import civitai_pb2, model_pb2
from service_kit import errors
from service_kit.logs import get_logger

log = get_logger("civitai_svc.jobs")

State = civitai_pb2.DownloadState
TERMINAL = frozenset({State.DOWNLOAD_STATE_SUCCEEDED, State.DOWNLOAD_STATE_FAILED, State.DOWNLOAD_STATE_CANCELLED})


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class Job:
    """One download; `proto` is its public state, `plan` what the runner needs (never shown)."""

    def __init__(self, proto: civitai_pb2.DownloadJob, plan: Any) -> None:
        self.proto = proto
        self.plan = plan
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        # For the speed estimate: (monotonic time, bytes) at the last sample.
        self._sample = (time.monotonic(), 0)
        self.cancel_requested = False
        # Stopped by the service's shutdown, not by a user: the runner keeps the partial file.
        self.interrupted = False
        # Called after each update() (state, name), never for progress ticks: the journal's hook.
        self.on_update: Callable[[Job], None] | None = None
        # What this job fetches (installer.file_keys): a second start of the same file joins this job.
        self.keys: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.proto.id

    @property
    def finished(self) -> bool:
        return self.proto.state in TERMINAL

    def snapshot(self) -> civitai_pb2.DownloadJob:
        copy = civitai_pb2.DownloadJob()
        copy.CopyFrom(self.proto)
        return copy

    def _notify(self) -> None:
        self.proto.update_time.CopyFrom(_now())
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def update(self, **fields: Any) -> None:
        for key, value in fields.items():
            if isinstance(value, model_pb2.Model):
                getattr(self.proto, key).CopyFrom(value)
            else:
                setattr(self.proto, key, value)
        self._notify()
        if self.on_update is not None:
            self.on_update(self)

    def progress(self, done: int, total: int, transferred: int, resumes: int) -> None:
        now = time.monotonic()
        then, before = self._sample
        if now - then >= 0.5 or done < before:
            speed = (done - before) / (now - then) if done >= before and now > then else 0.0
            # Smooth the rate so the ETA does not jump with every block.
            previous = self.proto.bytes_per_second
            self.proto.bytes_per_second = speed if previous <= 0 else 0.7 * speed + 0.3 * previous
            self._sample = (now, done)
        self.proto.bytes_done = done
        self.proto.total_bytes = total or self.proto.total_bytes  # keep CivitAI's estimate until exact
        self.proto.bytes_transferred = transferred
        self.proto.resume_count = resumes
        speed, total = self.proto.bytes_per_second, self.proto.total_bytes
        self.proto.eta_seconds = max(0.0, (total - done) / speed) if total and speed > 0 else -1.0
        self._notify()

    def fail(self, error: errors.ServiceError) -> None:
        self.proto.error.CopyFrom(error.to_status_proto(E.DOMAIN))
        self.update(state=State.DOWNLOAD_STATE_FAILED, bytes_per_second=0.0, eta_seconds=-1.0)

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next change of this job."""
        return self._changed


Runner = Callable[[Job], Awaitable[None]]


class Journal(Protocol):
    """Where unfinished jobs are kept across restarts (job_journal.JobJournal)."""

    def save(self, job: Job) -> None: ...

    async def delete(self, job_id: str) -> None: ...

    async def close(self) -> None: ...


class JobManager:
    """Creates, runs, lists and cancels jobs; `runner(job)` does the work and updates the job."""

    def __init__(
        self, runner: Runner, *, max_concurrent: int = 2, max_finished: int = 200, journal: Journal | None = None
    ) -> None:
        self._runner = runner
        self._slots = asyncio.Semaphore(max(1, max_concurrent))
        self._jobs: dict[str, Job] = {}
        self._max_finished = max_finished
        self._journal = journal

    def active_with(self, keys: Iterable[str]) -> Job | None:
        """The queued or running job (not being cancelled) that fetches what one of `keys` names."""
        wanted = set(keys)
        for job in self._jobs.values():
            if not job.finished and not job.cancel_requested and job.keys & wanted:
                return job
        return None

    def create(self, proto: civitai_pb2.DownloadJob, plan: Any, keys: Iterable[str] = ()) -> Job:
        """A new job, or the unfinished one that already fetches one of `keys`: the same file is
        downloaded once however often it is started (checked and added with no await between)."""
        running = self.active_with(keys)
        if running is not None:
            log.info("download.joined", job_id=running.id)
            return running
        proto.id = uuid.uuid4().hex
        proto.state = State.DOWNLOAD_STATE_QUEUED
        proto.eta_seconds = -1.0
        proto.create_time.CopyFrom(_now())
        proto.update_time.CopyFrom(proto.create_time)
        return self._start(Job(proto, plan), keys)

    def restore(self, proto: civitai_pb2.DownloadJob, plan: Any, keys: Iterable[str] = ()) -> Job:
        """A job the journal kept across a restart: same id and figures, QUEUED again, run again."""
        proto.state = State.DOWNLOAD_STATE_QUEUED
        proto.bytes_per_second = 0.0
        proto.eta_seconds = -1.0
        proto.ClearField("error")
        proto.update_time.CopyFrom(_now())
        log.info("download.restored", job_id=proto.id, bytes_done=proto.bytes_done, total_bytes=proto.total_bytes)
        return self._start(Job(proto, plan), keys)

    def _start(self, job: Job, keys: Iterable[str]) -> Job:
        job.keys = frozenset(keys)
        self._jobs[job.id] = job
        job.on_update = self._persist
        self._persist(job)
        job.task = asyncio.create_task(self._run(job), name=f"download-{job.id}")
        self._prune()
        return job

    def _persist(self, job: Job) -> None:
        # An ended job's entry goes in _run, once the runner has dealt with its files.
        if self._journal is not None and job.plan is not None and not job.finished:
            self._journal.save(job)

    def add_finished(self, proto: civitai_pb2.DownloadJob) -> Job:
        """A job that was done before it started (the file was already installed)."""
        proto.id = uuid.uuid4().hex
        proto.create_time.CopyFrom(_now())
        proto.update_time.CopyFrom(proto.create_time)
        job = Job(proto, None)
        self._jobs[job.id] = job
        self._prune()
        return job

    async def _run(self, job: Job) -> None:
        try:
            async with self._slots:
                if job.cancel_requested:
                    raise asyncio.CancelledError
                job.update(state=State.DOWNLOAD_STATE_RUNNING)
                await self._runner(job)
        except asyncio.CancelledError:
            if job.interrupted:  # the journal keeps it (saved by this update): the next start resumes it
                job.update(state=State.DOWNLOAD_STATE_QUEUED, bytes_per_second=0.0, eta_seconds=-1.0)
                log.info("download.interrupted", job_id=job.id, bytes_done=job.proto.bytes_done)
            else:
                job.update(state=State.DOWNLOAD_STATE_CANCELLED, bytes_per_second=0.0, eta_seconds=-1.0)
                log.info("download.cancelled", job_id=job.id)
        except errors.ServiceError as exc:
            log.warning("download.failed", job_id=job.id, code=exc.code.name, reason=exc.reason, error=exc.message)
            job.fail(exc)
        except Exception:
            log.exception("download.crashed", job_id=job.id)
            job.fail(E.DownloadCrashed("the download failed unexpectedly; see the server log"))
        finally:
            if job.finished and self._journal is not None:
                await self._journal.delete(job.id)  # so a cancel returns with the entry gone too
            job.plan = None  # drop the token and buffers with the plan

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise E.JobNotFound(f"no download job {job_id!r}", metadata={"job_id": job_id})
        return job

    def list(self, *, active_only: bool = False) -> list[Job]:
        jobs = [j for j in self._jobs.values() if not (active_only and j.finished)]
        return sorted(jobs, key=lambda j: (j.proto.create_time.seconds, j.proto.create_time.nanos), reverse=True)

    async def cancel(self, job_id: str) -> Job:
        """Cancel and wait until its partial file is gone. A finished job is returned as it is."""
        job = self.get(job_id)
        if job.finished or job.task is None:
            return job
        job.cancel_requested = True
        job.task.cancel()
        await asyncio.wait([job.task])
        return job

    async def watch(self, job_id: str) -> AsyncIterator[civitai_pb2.DownloadJob]:
        job = self.get(job_id)
        while True:
            changed = job.changed  # taken before the snapshot, so no change is missed
            snapshot = job.snapshot()
            yield snapshot
            if snapshot.state in TERMINAL:  # the job may have finished while we were suspended
                return
            await changed.wait()

    async def shutdown(self) -> None:
        """Stop unfinished jobs before the process exits, as interrupted: with a journal, their partial
        files and entries stay and the next start resumes them (without one, they are cancelled)."""
        tasks = []
        for job in self._jobs.values():
            if job.task is not None and not job.task.done():
                job.interrupted = self._journal is not None
                job.task.cancel()
                tasks.append(job.task)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        if self._journal is not None:
            await self._journal.close()

    def _prune(self) -> None:
        finished = [j for j in self.list() if j.finished]
        for job in finished[self._max_finished :]:
            self._jobs.pop(job.id, None)
