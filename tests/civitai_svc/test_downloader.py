"""The downloader alone against the fake CivitAI: resume at any cut point, hash in the same pass."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civitai_svc import errors as E
from civitai_svc.api_client import CivitaiApi, RetryPolicy
from civitai_svc.downloader import Downloader
from devtools.fake_civitai import FakeCivitai

DATA = random.Random(5).randbytes(700_001)


@pytest.fixture(scope="module")
def served():
    with FakeCivitai() as fake:
        model = fake.add_lora(data=DATA)
        yield fake, model


async def _fetch(fake, model, part: Path, block_size: int):  # type: ignore[no-untyped-def]
    api = CivitaiApi(fake.base_url, retry=RetryPolicy(attempts=1, backoff_base=0.001))
    try:
        progress: list[tuple[int, int, int, int]] = []
        result = await Downloader(api, block_size=block_size, max_resumes=3).fetch(
            version_id=model.version_id, file_id=model.file_id, part=part, on_progress=lambda *a: progress.append(a))
        return result, progress
    finally:
        await api.aclose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(DATA) - 1), times=st.integers(min_value=0, max_value=3),
       block_size=st.sampled_from([1024, 65536, 1 << 20]))
def test_any_cut_resumes_to_the_exact_bytes(served, tmp_path, cut, times, block_size):
    fake, model = served
    fake.reset_counters()
    fake.clear_failures()  # a drop an earlier example did not use up must not leak into this one
    if times:
        fake.drop_connection(model.file_id, cut, times=times)
    part = tmp_path / f"x-{cut}-{times}-{block_size}.part"
    result, progress = asyncio.run(_fetch(fake, model, part, block_size))
    assert part.read_bytes() == DATA
    assert result.sha256 == hashlib.sha256(DATA).hexdigest() == model.sha256
    assert result.size == len(DATA)
    assert (result.resumes >= 1 if times else result.resumes == 0) and result.resumes <= times
    assert result.bytes_transferred == len(DATA) == fake.bytes_served(model.file_id)  # nothing fetched twice
    assert progress[-1][0] == len(DATA) and all(a[0] <= b[0] for a, b in itertools.pairwise(progress))
    part.unlink()


async def test_a_storage_that_keeps_failing_gives_up_as_unavailable(served, tmp_path):
    fake, model = served
    fake.fail("storage", 503, times=50, key=model.file_id)
    try:
        with pytest.raises(E.CivitaiUnavailable) as exc:
            await _fetch(fake, model, tmp_path / "x.part", 65536)
        assert "503" in exc.value.message
    finally:
        fake.clear_failures()


async def test_continue_part_hashes_the_kept_bytes_and_fetches_only_the_rest(served, tmp_path):
    fake, model = served
    fake.reset_counters()
    kept = 300_123
    part = tmp_path / "kept.part"
    part.write_bytes(DATA[:kept])
    api = CivitaiApi(fake.base_url, retry=RetryPolicy(attempts=1, backoff_base=0.001))
    try:
        result = await Downloader(api, block_size=65536).fetch(
            version_id=model.version_id, file_id=model.file_id, part=part, continue_part=True,
            transferred_before=kept, resumes_before=2)
    finally:
        await api.aclose()
    assert part.read_bytes() == DATA and result.sha256 == model.sha256
    assert fake.bytes_served(model.file_id) == len(DATA) - kept  # nothing fetched twice
    assert result.bytes_transferred == len(DATA) and result.resumes == 3
    assert fake.storage_requests()[0].headers["range"] == f"bytes={kept}-"


async def test_a_cancelled_transfer_keeps_every_byte_it_received(served, tmp_path):
    fake, model = served
    fake.reset_counters()
    stop_at = 400_001  # several blocks and a partly filled one
    fake.stall(model.file_id, stop_at)
    part = tmp_path / "stopped.part"
    api = CivitaiApi(fake.base_url, retry=RetryPolicy(attempts=1, backoff_base=0.001))
    done = asyncio.Event()

    def progress(received: int, *_: int) -> None:
        if received == stop_at:
            done.set()

    try:
        downloader = Downloader(api, block_size=65536, progress_interval=0.05)
        task = asyncio.create_task(downloader.fetch(
            version_id=model.version_id, file_id=model.file_id, part=part, on_progress=progress))
        await asyncio.wait_for(done.wait(), timeout=60)  # the stall's last bytes show up in progress too
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert part.read_bytes() == DATA[:stop_at]  # the length is what was written, not the reserved size
        result = await downloader.fetch(version_id=model.version_id, file_id=model.file_id, part=part,
                                        continue_part=True)
    finally:
        await api.aclose()
    assert part.read_bytes() == DATA and result.sha256 == model.sha256
    assert fake.bytes_served(model.file_id) == len(DATA)  # 0 bytes fetched twice
