"""service_kit.peer against a real grpc.aio server on 127.0.0.1: the failure rule, paging, wait-for-ready."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, errors, insecure_channel
from service_kit.peer import Peer, PeerUnavailable, paged, unavailable_reason

MODELS = [f"m{i}.safetensors" for i in range(7)]


class _Registry(registry_pb2_grpc.ModelRegistryServiceServicer):
    """Pages MODELS by page_size; GetModel answers the registry's own UNAVAILABLE; GetActiveCheckpoint hangs."""

    def __init__(self) -> None:
        self.page_requests: list[registry_pb2.ListModelsRequest] = []

    async def ListModels(self, request, context):
        self.page_requests.append(request)
        if request.query == "same token":  # a broken peer that would page forever
            return registry_pb2.ListModelsResponse(next_page_token="again")
        start = int(request.page_token or 0)
        end = start + request.page_size
        return registry_pb2.ListModelsResponse(
            models=[model_pb2.Model(filename=f) for f in MODELS[start:end]],
            next_page_token=str(end) if end < len(MODELS) else "",
        )

    async def GetModel(self, request, context):
        raise errors.Unavailable("the index could not be written", reason="INDEX_WRITE_FAILED",
                                 metadata={"path": "index.sqlite"})

    async def GetActiveCheckpoint(self, request, context):
        await asyncio.Event().wait()


def _server(listen: str = "127.0.0.1:0") -> tuple[GrpcServer, _Registry]:
    servicer = _Registry()
    server = GrpcServer(
        name="registry-probe",
        listen=listen,
        bindings=[ServiceBinding.of(registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"], servicer,
                                    registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server)],
        error_domain="registry.modelmanager",
    )
    return server, servicer


@pytest.fixture
async def registry():
    server, servicer = _server()
    await server.start()
    peer = Peer("registry", insecure_channel(server.address), address=server.address)
    yield peer, registry_pb2_grpc.ModelRegistryServiceStub(peer.channel), servicer
    await peer.close()
    await server.stop(0)


async def test_a_peer_that_is_down_is_peer_unavailable_naming_the_service():
    peer = Peer("registry", insecure_channel("127.0.0.1:1"), address="127.0.0.1:1")
    try:
        stub = registry_pb2_grpc.ModelRegistryServiceStub(peer.channel)
        with pytest.raises(PeerUnavailable) as caught:
            await peer.call(stub.GetModel, registry_pb2.GetModelRequest(filename="x"))
    finally:
        await peer.close()
    err = caught.value
    assert isinstance(err, errors.Unavailable)
    assert (err.code, err.reason, err.metadata) == (
        grpc.StatusCode.UNAVAILABLE, "REGISTRY_UNAVAILABLE", {"service": "registry"})
    assert "127.0.0.1" not in err.message and not err.timed_out


async def test_a_peer_that_does_not_answer_in_time_is_peer_unavailable(registry):
    peer, stub, _ = registry
    with pytest.raises(PeerUnavailable) as caught:
        await peer.call(stub.GetActiveCheckpoint, registry_pb2.GetActiveCheckpointRequest(), deadline=0.2)
    assert caught.value.reason == "REGISTRY_UNAVAILABLE" and caught.value.timed_out


async def test_the_peers_own_unavailable_passes_through_unchanged(registry):
    peer, stub, _ = registry
    with pytest.raises(errors.ServiceError) as caught:
        await peer.call(stub.GetModel, registry_pb2.GetModelRequest(filename="x"))
    err = caught.value
    assert not isinstance(err, PeerUnavailable)
    assert isinstance(err, errors.Unavailable)
    assert (err.code, err.reason, err.domain, err.metadata, err.message) == (
        grpc.StatusCode.UNAVAILABLE, "INDEX_WRITE_FAILED", "registry.modelmanager", {"path": "index.sqlite"},
        "the index could not be written")


async def test_paged_follows_next_page_token_over_several_pages(registry):
    peer, stub, servicer = registry
    request = registry_pb2.ListModelsRequest(page_size=3, query="keep me")
    got = [m.filename async for m in paged(lambda r: peer.call(stub.ListModels, r), request, "models")]
    assert got == MODELS
    assert [r.page_token for r in servicer.page_requests] == ["", "3", "6"]
    assert all(r.page_size == 3 and r.query == "keep me" for r in servicer.page_requests)
    assert request.page_token == ""  # the caller's request is not changed


async def test_wait_for_ready_succeeds_when_the_peer_starts_late():
    # Find a free port, then leave it closed until the call is waiting on it.
    probe, _ = _server()
    await probe.start()
    address = probe.address
    await probe.stop(0)

    peer = Peer("registry", insecure_channel(address), address=address)
    stub = registry_pb2_grpc.ModelRegistryServiceStub(peer.channel)
    server, _ = _server(address)
    try:
        call = asyncio.ensure_future(
            peer.call(stub.ListModels, registry_pb2.ListModelsRequest(page_size=100), deadline=120,
                      wait_for_ready=True))
        await asyncio.sleep(0.3)
        assert not call.done()  # waiting for the peer, not failed
        await server.start()
        reply = await call
        assert [m.filename for m in reply.models] == MODELS
    finally:
        await peer.close()
        await server.stop(0)


async def test_paged_stops_on_a_peer_that_repeats_its_page_token(registry):
    peer, stub, servicer = registry
    request = registry_pb2.ListModelsRequest(page_size=3, query="same token")
    with pytest.raises(errors.Internal):
        [m async for m in paged(lambda r: peer.call(stub.ListModels, r), request, "models")]
    assert len(servicer.page_requests) == 2


def test_the_services_document_the_reason_the_peer_gives():
    # civitai.proto and inference.proto list UNAVAILABLE / REGISTRY_UNAVAILABLE; their errors modules
    # keep the class that documents it (tests/test_error_reasons.py), service_kit.peer raises it.
    from civitai_svc import errors as civitai_errors
    from inference_svc import errors as inference_errors

    for cls in (civitai_errors.RegistryUnavailable, inference_errors.RegistryUnavailable):
        assert issubclass(cls, errors.Unavailable) and cls.default_reason == unavailable_reason("registry")
