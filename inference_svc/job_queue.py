"""One GPU job at a time: a FIFO queue, a single worker thread, events streamed back to each caller.

A job's work is a plain function run in the worker thread (never on the event
loop). It reports through its `JobContext` (progress events, cancellation
checks); those events cross to the event loop with `call_soon_threadsafe`.
Waiting jobs hear their queue position whenever it changes. A caller that
goes away cancels its job: a waiting job leaves the queue, a running job
stops at its next step (its step callback raises).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from inference_svc.errors import QueueFull
from service_kit import get_logger

log = get_logger("inference_svc.job_queue")


@dataclass(frozen=True)
class Queued:
    position: int


@dataclass(frozen=True)
class Progress:
    stage: str
    step: int = 0
    total_steps: int = 0
    tile: int = 0
    total_tiles: int = 0
    fraction: float = 0.0


@dataclass(frozen=True)
class Done:
    result: Any


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Queued | Progress | Done | Failed


class JobContext:
    """What a running job's work function sees: its id, progress reporting, cancellation."""

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop):
        self.job_id = job.id
        self._job = job
        self._loop = loop
        self.queued_seconds = 0.0

    def progress(self, stage: str, **fields: Any) -> None:
        self._loop.call_soon_threadsafe(self._job.events.put_nowait, Progress(stage, **fields))

    def cancelled(self) -> bool:
        return self._job.cancel_event.is_set()


@dataclass(eq=False)
class Job:
    kind: str
    work: Callable[[JobContext], Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)
    finished: bool = False
    last_position: int = -1

    async def stream(self) -> AsyncIterator[Event]:
        """Events until Done or Failed (inclusive)."""
        while True:
            event = await self.events.get()
            yield event
            if isinstance(event, Done | Failed):
                return


class JobQueue:
    def __init__(self, max_queue: int = 16):
        self.max_queue = max_queue
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference-worker")
        self._worker: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting, not counting the running one."""
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return self._running is not None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="inference-job-worker")

    async def close(self) -> None:
        for job in list(self._waiting):
            self.cancel(job)
        if self._running is not None:
            self._running.cancel_event.set()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, kind: str, work: Callable[[JobContext], Any]) -> Job:
        """Enqueue; QUEUE_FULL when `max_queue` jobs already wait."""
        self.start()
        if len(self._waiting) >= self.max_queue:
            raise QueueFull(
                f"{len(self._waiting)} jobs are waiting already; try again later",
                metadata={"max_queue": self.max_queue},
            )
        job = Job(kind=kind, work=work)
        self._waiting.append(job)
        self._tell(job, self._position(job))
        self._wakeup.set()
        return job

    def cancel(self, job: Job) -> None:
        """The caller went away: drop a waiting job, or make a running one stop at its next step."""
        job.cancel_event.set()
        if job in self._waiting:
            self._waiting.remove(job)
            self._announce_positions()
            log.info("job.cancelled_waiting", job_id=job.id, kind=job.kind)

    def _position(self, job: Job) -> int:
        # Jobs ahead of this one, the running one included; 0 means it is starting.
        return self._waiting.index(job) + (1 if self._running is not None else 0)

    @staticmethod
    def _tell(job: Job, position: int) -> None:
        if job.last_position != position:
            job.last_position = position
            job.events.put_nowait(Queued(position))

    def _announce_positions(self) -> None:
        for job in self._waiting:
            self._tell(job, self._position(job))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            job = self._waiting.popleft()
            self._running = job
            self._announce_positions()
            self._tell(job, 0)
            context = JobContext(job, loop)
            context.queued_seconds = time.perf_counter() - job.submitted
            try:
                result = await loop.run_in_executor(self._executor, job.work, context)
                job.events.put_nowait(Done(result))
            except asyncio.CancelledError:
                job.events.put_nowait(Failed(RuntimeError("service shutting down")))
                raise
            except BaseException as exc:  # passed on to the caller, who maps it to a status
                job.events.put_nowait(Failed(exc))
            finally:
                job.finished = True
                self._running = None
