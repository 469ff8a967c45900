"""The inference service's registry client against a real gRPC registry stand-in on 127.0.0.1.

A registry that does not answer is REGISTRY_UNAVAILABLE; the registry's own answers, UNAVAILABLE
ones included, pass on with their reason (not turned into "registry down").
"""

from __future__ import annotations

import grpc
import pytest

from inference_svc.registry_client import RegistryClient
from modelmanager.v1 import registry_pb2, registry_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, errors


class _FailingRegistry(registry_pb2_grpc.ModelRegistryServiceServicer):
    async def GetActiveCheckpoint(self, request, context):
        raise errors.Unavailable("the index could not be written", reason="INDEX_WRITE_FAILED",
                                 metadata={"path": "index.sqlite"})


@pytest.fixture
async def failing_registry():
    server = GrpcServer(
        name="registry",
        listen="127.0.0.1:0",
        bindings=[ServiceBinding.of(registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"],
                                    _FailingRegistry(), registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server)],
        error_domain="registry.modelmanager",
    )
    await server.start()
    yield server.address
    await server.stop(0)


def _client(address: str, tmp_path) -> RegistryClient:
    return RegistryClient(address, default_checkpoint_path=tmp_path / "default.safetensors", model_roots=[tmp_path])


async def test_the_registrys_own_unavailable_passes_through(failing_registry, tmp_path):
    client = _client(failing_registry, tmp_path)
    try:
        with pytest.raises(errors.Unavailable) as caught:
            await client.checkpoint()
    finally:
        await client.close()
    err = caught.value
    assert (err.reason, err.domain, err.metadata) == (
        "INDEX_WRITE_FAILED", "registry.modelmanager", {"path": "index.sqlite"})


async def test_a_registry_that_is_down_is_registry_unavailable_naming_the_service(tmp_path):
    client = _client("127.0.0.1:1", tmp_path)
    try:
        with pytest.raises(errors.Unavailable) as caught:
            await client.checkpoint()
    finally:
        await client.close()
    err = caught.value
    assert (err.code, err.reason, err.metadata) == (
        grpc.StatusCode.UNAVAILABLE, "REGISTRY_UNAVAILABLE", {"service": "registry"})
    assert "127.0.0.1" not in err.message
