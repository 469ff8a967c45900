"""A download that would not fit is refused at StartDownload, before a byte is fetched, from the size
CivitAI lists; the message names what is missing in human units."""

from __future__ import annotations

import shutil

import grpc
import pytest
from civitai_helpers import status_of

from modelmanager.v1 import civitai_pb2
from service_kit.display import human_size

GiB = 1 << 30


async def test_a_file_bigger_than_the_free_space_is_refused_before_it_starts(stack):
    free = shutil.disk_usage(stack.user_models).free
    size = free + 5 * GiB  # the fake lists this size; it has no bytes to serve
    big = stack.fake.register_hash("ab" * 32, size=size, name="Huge checkpoint", civitai_type="Checkpoint")
    stack.fake.reset_counters()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.StartDownload(civitai_pb2.StartDownloadRequest(reference=big.url), timeout=30)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and info.reason == "INSUFFICIENT_DISK_SPACE"
    missing = int(info.metadata["missing_bytes"])
    # CivitAI lists sizes in KB (rounded); the free space moves a little with the rest of the machine.
    assert abs(missing - 5 * GiB) < GiB // 4
    details = exc.value.details()
    assert f"{human_size(missing)} missing" in details and "checkpoints/" in details
    assert str(stack.user_models) not in details  # never a server path
    assert stack.fake.calls("download") == 0
    assert not (await stack.civitai.ListDownloads(civitai_pb2.ListDownloadsRequest(), timeout=10)).jobs
    assert stack.files() == []


async def test_the_reserve_kept_free_counts(stack_factory):
    stack = await stack_factory(disk_reserve_bytes=1 << 50)
    lora = stack.fake.add_lora()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.StartDownload(civitai_pb2.StartDownloadRequest(reference=lora.url), timeout=30)
    code, info = status_of(exc.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.reason == "INSUFFICIENT_DISK_SPACE" and "kept free" in exc.value.details()
    assert int(info.metadata["reserve_bytes"]) == 1 << 50 and int(info.metadata["missing_bytes"]) > 0
