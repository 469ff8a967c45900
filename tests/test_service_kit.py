"""The shared server plumbing, through the wire: reflection, health, error mapping, request ids."""

from __future__ import annotations

import asyncio
import io
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelmanager.v1 import inference_pb2, inference_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, configure_logging, errors, insecure_channel
from service_kit.logs import get_logger, redact_text, register_secret, request_id_var


class _Probe(inference_pb2_grpc.InferenceServiceServicer):
    """A tiny servicer that exercises each error path of the interceptor."""

    seen_request_ids: list[str | None]

    def __init__(self) -> None:
        self.seen_request_ids = []

    async def ListSchedulers(self, request, context):
        self.seen_request_ids.append(request_id_var.get())
        return inference_pb2.ListSchedulersResponse(schedulers=["euler"])

    async def GetStatus(self, request, context):
        raise errors.NotFound("no checkpoint 'x'", reason="CHECKPOINT_NOT_FOUND", metadata={"checkpoint": "x"})

    async def Generate(self, request, context):
        yield inference_pb2.GenerateResponse(queued=inference_pb2.JobQueued(job_id="j", position=1))
        raise RuntimeError("secret internals")


@pytest.fixture
async def probe_server():
    probe = _Probe()
    server = GrpcServer(
        name="probe",
        listen="127.0.0.1:0",
        bindings=[
            ServiceBinding.of(
                inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
                probe,
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
            )
        ],
        error_domain="probe.modelmanager",
    )
    await server.start()
    yield server, probe
    await server.stop(0)


async def test_reflection_lists_services(probe_server):
    server, _ = probe_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests():
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="modelmanager.v1.InferenceService")

        responses = [r async for r in stub.ServerReflectionInfo(requests())]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"modelmanager.v1.InferenceService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert responses[1].file_descriptor_response.file_descriptor_proto


async def test_health_serving_then_not_serving_on_shutdown(probe_server):
    server, _ = probe_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "modelmanager.v1.InferenceService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stop = asyncio.create_task(server.stop(grace=1))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stop


async def test_an_idle_stream_outlives_the_clients_keepalive_pings(monkeypatch):
    from service_kit import server as server_module
    from service_kit.client import CHANNEL_OPTIONS

    # The real policy scaled down so the stream idles seconds, not minutes: the client pings every
    # second (30 s in CHANNEL_OPTIONS), the server allows one every 100 ms (10 s). A server that kept
    # gRPC's default (one per 5 minutes) hangs up after the third ping.
    monkeypatch.setattr(server_module, "MIN_PING_INTERVAL_MS", 100)
    server = GrpcServer(name="idle", listen="127.0.0.1:0", bindings=[], error_domain="probe.modelmanager")
    await server.start()
    options = [(k, v) for k, v in CHANNEL_OPTIONS if k != "grpc.keepalive_time_ms"] + [("grpc.keepalive_time_ms", 1000)]
    try:
        async with grpc.aio.insecure_channel(server.address, options=options) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            await asyncio.sleep(5)  # five pings without data
            stop = asyncio.create_task(server.stop(grace=1))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            await stop
    finally:
        await server.stop(0)


async def test_domain_error_carries_error_info(probe_server):
    server, _ = probe_server
    async with insecure_channel(server.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetStatus(inference_pb2.GetStatusRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = errors.error_info_of(caught.value)
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "CHECKPOINT_NOT_FOUND",
        "probe.modelmanager",
        {"checkpoint": "x"},
    )
    rebuilt = errors.from_rpc_error(caught.value)
    assert isinstance(rebuilt, errors.NotFound) and rebuilt.reason == "CHECKPOINT_NOT_FOUND"


async def test_an_rpc_the_server_does_not_implement_is_unimplemented_not_internal(probe_server):
    # _Probe leaves ListOutputs to the generated base, which raises NotImplementedError: callers built from newer
    # protos than the server must read UNIMPLEMENTED ("not here"), not INTERNAL ("broken").
    server, _ = probe_server
    async with insecure_channel(server.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListOutputs(inference_pb2.ListOutputsRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert errors.error_info_of(caught.value).reason == "UNIMPLEMENTED"


async def test_unexpected_exception_is_internal_without_leaking(probe_server):
    server, _ = probe_server
    async with insecure_channel(server.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        call = stub.Generate(inference_pb2.GenerateRequest(prompt="x"), timeout=5)
        first = await call.read()
        assert first.queued.position == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret internals" not in (caught.value.details() or "")
    assert errors.error_info_of(caught.value).reason == "INTERNAL"


async def test_request_id_travels_as_metadata(probe_server):
    server, probe = probe_server
    async with insecure_channel(server.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        token = request_id_var.set("rid-123")
        try:
            await stub.ListSchedulers(inference_pb2.ListSchedulersRequest(), timeout=5)
        finally:
            request_id_var.reset(token)
        await stub.ListSchedulers(inference_pb2.ListSchedulersRequest(), timeout=5)
    assert probe.seen_request_ids[0] == "rid-123"
    assert probe.seen_request_ids[1] and probe.seen_request_ids[1] != "rid-123"


async def test_the_access_log_line_carries_the_request_id_from_metadata(probe_server):
    server, _ = probe_server
    stream = io.StringIO()
    configure_logging("t", stream=stream)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:  # plain: no request id of its own
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            await stub.ListSchedulers(inference_pb2.ListSchedulersRequest(), metadata=(("x-request-id", "rid-log"),),
                                      timeout=5)
            await stub.ListSchedulers(inference_pb2.ListSchedulersRequest(), timeout=5)
    finally:
        configure_logging("tests", level="WARNING")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    rpcs = [line for line in lines if line["event"] == "rpc"]
    assert [line["method"].rsplit("/", 1)[-1] for line in rpcs] == ["ListSchedulers", "ListSchedulers"]
    assert rpcs[0]["request_id"] == "rid-log" and rpcs[0]["code"] == "OK"
    assert rpcs[1]["request_id"] and rpcs[1]["request_id"] != "rid-log"  # made when none was sent


def test_logs_are_json_and_never_carry_secrets():
    stream = io.StringIO()
    configure_logging("t", stream=stream, secrets=["sekrit-token-value"])
    try:
        get_logger().info(
            "download",
            url="https://civitai.com/api/download/models/1?token=abcdef123",
            authorization="Bearer sekrit-token-value",
            note="header was sekrit-token-value",
        )
    finally:
        configure_logging("tests", level="WARNING")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert "sekrit-token-value" not in stream.getvalue()
    assert "abcdef123" not in stream.getvalue()
    assert line["event"] == "download" and line["authorization"] == "[REDACTED]"
    register_secret("another-secret")
    assert redact_text("x another-secret y") == "x [REDACTED] y"
