"""The job queue on its own: one job at a time, positions, limit, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inference_svc.errors import QueueFull
from inference_svc.job_queue import Done, Failed, JobQueue, Progress, Queued


async def events_of(job) -> list:
    return [event async for event in job.stream()]


async def until_running(queue: JobQueue) -> None:
    for _ in range(1000):
        if queue.busy:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the job never started")


async def test_jobs_run_one_at_a_time_in_order_with_positions():
    queue = JobQueue(max_queue=4)
    release = threading.Event()
    running: list[str] = []

    def work(name: str):
        def body(ctx):
            running.append(name)
            if name == "first":
                release.wait(30)
            ctx.progress("denoising", step=1, total_steps=1)
            return name

        return body

    first = queue.submit("test", work("first"))
    await until_running(queue)
    second = queue.submit("test", work("second"))
    third = queue.submit("test", work("third"))
    assert await first.events.get() == Queued(0)
    assert await second.events.get() == Queued(1)
    assert await third.events.get() == Queued(2)
    assert queue.depth == 2
    release.set()
    results = [await events_of(job) for job in (first, second, third)]
    assert running == ["first", "second", "third"]
    assert results[0][-2:] == [Progress("denoising", step=1, total_steps=1), Done("first")]
    assert [e.position for e in results[2] if isinstance(e, Queued)] == [1, 0]
    await queue.close()


async def test_queue_limit_and_cancelling_a_waiting_job():
    queue = JobQueue(max_queue=1)
    release = threading.Event()
    queue.submit("test", lambda ctx: release.wait(30))
    await until_running(queue)
    waiting = queue.submit("test", lambda ctx: "never")
    with pytest.raises(QueueFull):
        queue.submit("test", lambda ctx: "refused")
    queue.cancel(waiting)
    assert queue.depth == 0
    after = queue.submit("test", lambda ctx: "ran")  # room again
    release.set()
    assert (await events_of(after))[-1] == Done("ran")
    await queue.close()


async def test_a_failing_job_reports_its_error_and_the_queue_goes_on():
    queue = JobQueue()

    def boom(ctx):
        raise ValueError("bad")

    failed = await events_of(queue.submit("test", boom))
    assert isinstance(failed[-1], Failed) and isinstance(failed[-1].error, ValueError)
    assert (await events_of(queue.submit("test", lambda ctx: 42)))[-1] == Done(42)
    await queue.close()
