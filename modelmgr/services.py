"""The three services the command line calls, each a service_kit Peer with its stub."""

from __future__ import annotations

import asyncio

from modelmanager.v1 import civitai_pb2_grpc, inference_pb2_grpc, registry_pb2_grpc
from service_kit import insecure_channel
from service_kit.peer import Peer

# An operator waits longer than a web request would: the registry may be hashing, CivitAI slow.
CALL_DEADLINE = 60.0


class Services:
    def __init__(self, *, registry: str, civitai: str, inference: str, deadline: float = CALL_DEADLINE) -> None:
        self.registry = Peer("registry", insecure_channel(registry), address=registry, deadline=deadline)
        self.civitai = Peer("civitai", insecure_channel(civitai), address=civitai, deadline=deadline)
        self.inference = Peer("inference", insecure_channel(inference), address=inference, deadline=deadline)
        self.registry_stub = registry_pb2_grpc.ModelRegistryServiceStub(self.registry.channel)
        self.civitai_stub = civitai_pb2_grpc.CivitaiServiceStub(self.civitai.channel)
        self.inference_stub = inference_pb2_grpc.InferenceServiceStub(self.inference.channel)

    def address(self, service: str) -> str:
        peer: Peer = getattr(self, service)
        return peer.address

    async def close(self) -> None:
        await asyncio.gather(self.registry.close(), self.civitai.close(), self.inference.close())
