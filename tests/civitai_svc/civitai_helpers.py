"""Helpers of the civitai_svc tests: the Stack of servers and status checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from civitai_svc.config import CivitaiSettings
from devtools.fake_civitai import FakeCivitai
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc, registry_pb2, registry_pb2_grpc
from service_kit import GrpcServer

TOKEN = "civitai-test-token-5f1e9a7c"
TERMINAL = {
    civitai_pb2.DOWNLOAD_STATE_SUCCEEDED,
    civitai_pb2.DOWNLOAD_STATE_FAILED,
    civitai_pb2.DOWNLOAD_STATE_CANCELLED,
}


@dataclass
class Stack:
    fake: FakeCivitai
    civitai: civitai_pb2_grpc.CivitaiServiceStub
    registry: registry_pb2_grpc.ModelRegistryServiceStub
    user_models: Path
    settings: CivitaiSettings
    server: GrpcServer
    registry_server: GrpcServer
    _closers: list = field(default_factory=list)
    _restart: Callable[[Stack], Awaitable[Stack]] | None = None

    async def restarted(self) -> Stack:
        """A new CivitAI service on the same volume, registry and fake (stop this one first)."""
        assert self._restart is not None
        return await self._restart(self)

    async def download(self, reference: str, **kwargs) -> civitai_pb2.DownloadJob:
        """Start a download and watch it to the end; returns the final job."""
        started = await self.civitai.StartDownload(civitai_pb2.StartDownloadRequest(reference=reference, **kwargs), timeout=30)
        return await self.wait(started.job.id)

    async def wait(self, job_id: str, seen: list | None = None) -> civitai_pb2.DownloadJob:
        last = None
        async for reply in self.civitai.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=job_id), timeout=60):
            last = reply.job
            if seen is not None:
                seen.append(reply.job)
        assert last is not None and last.state in TERMINAL
        return last

    async def models(self):
        reply = await self.registry.ListModels(registry_pb2.ListModelsRequest(page_size=1000), timeout=10)
        return list(reply.models)

    def files(self) -> list[str]:
        """Every file under the volume's model folders, relative names (part files included)."""
        return sorted(str(p.relative_to(self.user_models)) for d in ("loras", "checkpoints")
                      if (self.user_models / d).exists() for p in (self.user_models / d).iterdir())


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until `check()` holds (for what a background thread or another process finishes)."""
    for _ in range(3000):  # a guard against hanging, not a timing assertion
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def status_of(exc: grpc.aio.AioRpcError):
    from service_kit.errors import error_info_of

    return exc.code(), error_info_of(exc)
