"""The CivitAI service through the wire: a real registry, the service, the fake CivitAI, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest_asyncio
from civitai_helpers import TOKEN, Stack

from civitai_svc.app import create_server
from civitai_svc.config import CivitaiSettings
from devtools.fake_civitai import FakeCivitai
from modelmanager.v1 import civitai_pb2_grpc, registry_pb2_grpc
from service_kit import insecure_channel


@pytest_asyncio.fixture
async def stack_factory(volumes) -> AsyncIterator[Callable]:
    from metadata_svc.app import create_server as create_registry
    from metadata_svc.config import RegistrySettings

    user_models, models = volumes
    made: list[Stack] = []

    async def make(token: str | None = TOKEN, fake_token: str | None = TOKEN, **overrides) -> Stack:
        fake = FakeCivitai(token=fake_token)
        registry_server = await create_registry(
            RegistrySettings(listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)
        )
        await registry_server.start()
        settings = CivitaiSettings(
            listen="127.0.0.1:0",
            registry=registry_server.address,
            user_models_dir=user_models,
            base_url=fake.base_url,
            token=token,
            retry_attempts=2,
            retry_backoff_base=0.001,
            retry_after_max=0.02,
            disk_reserve_bytes=0,
        )
        return await serve(replace(settings, **overrides), fake, registry_server)

    async def serve(settings: CivitaiSettings, fake: FakeCivitai, registry_server) -> Stack:
        server = await create_server(settings)
        await server.start()
        channel = insecure_channel(server.address)
        registry_channel = insecure_channel(registry_server.address)
        stack = Stack(fake, civitai_pb2_grpc.CivitaiServiceStub(channel),
                      registry_pb2_grpc.ModelRegistryServiceStub(registry_channel), user_models, settings, server,
                      registry_server, [channel, registry_channel],
                      _restart=lambda old: serve(old.settings, old.fake, old.registry_server))
        made.append(stack)
        return stack

    yield make
    for stack in made:
        for channel in stack._closers:
            await channel.close()
        await stack.server.stop(0)
    for stack in made:  # a restarted stack shares these with the first one (stopping twice is a no-op)
        await stack.registry_server.stop(0)
    for fake in {id(s.fake): s.fake for s in made}.values():
        await asyncio.to_thread(fake.close)


@pytest_asyncio.fixture
async def stack(stack_factory) -> Stack:
    return await stack_factory()

