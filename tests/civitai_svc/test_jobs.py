"""JobManager's joining of jobs that fetch the same file (the wire tests cannot order two calls' awaits)."""

from __future__ import annotations

import asyncio

from civitai_svc.jobs import JobManager, State
from modelmanager.v1 import civitai_pb2


async def test_create_joins_an_unfinished_job_with_a_shared_key_and_only_that():
    release = asyncio.Event()

    async def runner(job) -> None:  # type: ignore[no-untyped-def]
        await release.wait()
        job.update(state=State.DOWNLOAD_STATE_SUCCEEDED)

    jobs = JobManager(runner, max_concurrent=4)
    first = jobs.create(civitai_pb2.DownloadJob(), object(), {"file:1:2", "sha256:ab"})
    assert jobs.create(civitai_pb2.DownloadJob(), object(), {"sha256:ab"}) is first
    assert jobs.create(civitai_pb2.DownloadJob(), object(), {"file:1:2"}) is first
    other = jobs.create(civitai_pb2.DownloadJob(), object(), {"file:1:3"})
    assert other is not first
    assert jobs.create(civitai_pb2.DownloadJob(), object()) is not first  # no keys, no joining
    cancelled = asyncio.ensure_future(jobs.cancel(other.id))
    await asyncio.sleep(0)  # the cancel has been asked for; a job being cancelled is not joined
    assert jobs.create(civitai_pb2.DownloadJob(), object(), {"file:1:3"}) is not other
    await cancelled
    release.set()
    await asyncio.wait([first.task])
    assert first.finished and jobs.create(civitai_pb2.DownloadJob(), object(), {"file:1:2"}) is not first
    await jobs.shutdown()
