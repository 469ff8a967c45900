"""The fleet's front: our InferenceService gRPC server (reflection, health, the same contract) whose
jobs run on Ray Serve workers.

Generate, Upscale and LoadCheckpoint go to a worker chosen by checkpoint (Ray Serve model
multiplexing: a worker that holds it, else the least loaded), and their queue, progress and result
messages stream back as the worker's servicer made them. A client that goes away cancels the Ray
call, which cancels the job on the worker. A worker that dies before the job said anything is
replaced by another, silently; one that dies after ends the call UNAVAILABLE / WORKER_LOST. The
outputs RPCs read the outputs folder here (the shared volume the workers save to); GetStatus is
one worker's.

Initial metadata `modelmgr-worker` names the worker that ran the job; trailing metadata
`modelmgr-worker-loads` is its checkpoint loads so far (what tests and benches look at).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from ray import exceptions as ray_errors
from ray.serve import exceptions as serve_errors
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from inference_svc.errors import DOMAIN, NoWorkers, QueueFull, WorkerLost
from inference_svc.fleet import cluster
from inference_svc.fleet.config import FleetSettings
from inference_svc.outputs import OutputStore
from inference_svc.registry_client import RegistryClient
from inference_svc.servicer import InferenceServicer
from modelmanager.v1 import inference_pb2, inference_pb2_grpc, registry_pb2
from service_kit import GrpcServer, ServiceBinding, get_logger
from service_kit.errors import ServiceError

log = get_logger("inference_svc.fleet.front")

Response = TypeVar("Response", bound=Message)

# A worker process or node gone: the actor died, or Ray cannot reach it.
LOST = (ray_errors.RayActorError, ray_errors.ActorUnavailableError, serve_errors.ReplicaUnavailableError)
# Tries for a request whose worker died before it said anything (Ray routes the next try elsewhere).
TRIES = 3


class RelayedError(ServiceError):
    """A worker's error, passed on with its code, reason, metadata and domain."""

    def __init__(self, status: status_pb2.Status):
        info = error_details_pb2.ErrorInfo()
        for detail in status.details:
            if detail.Unpack(info):
                break
        super().__init__(status.message, reason=info.reason or None, metadata=dict(info.metadata),
                         domain=info.domain or None)
        self.code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)


@dataclass
class _OutputsOnly:
    """What the inherited outputs RPCs use of an engine."""

    outputs: OutputStore


class FleetServicer(InferenceServicer):
    def __init__(self, workers: DeploymentHandle[Any], registry: RegistryClient, outputs: OutputStore, *,
                 routing: str = "checkpoint"):
        self.engine = _OutputsOnly(outputs)  # type: ignore[assignment]
        self.workers = workers
        self.registry = registry
        self.routing = routing

    async def Generate(self, request: inference_pb2.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[inference_pb2.GenerateResponse]:
        async for message in self._relay("Generate", request, request.checkpoint, inference_pb2.GenerateResponse,
                                         context):
            yield message

    async def Upscale(self, request: inference_pb2.UpscaleRequest,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[inference_pb2.UpscaleResponse]:
        async for message in self._relay("Upscale", request, request.checkpoint, inference_pb2.UpscaleResponse,
                                         context):
            yield message

    async def LoadCheckpoint(
        self, request: inference_pb2.LoadCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.LoadCheckpointResponse]:
        # Warms the worker that the checkpoint's requests will be routed to.
        async for message in self._relay("LoadCheckpoint", request, request.checkpoint,
                                         inference_pb2.LoadCheckpointResponse, context):
            yield message

    async def GetStatus(self, request: inference_pb2.GetStatusRequest,
                        context: grpc.aio.ServicerContext) -> inference_pb2.GetStatusResponse:
        try:
            kind, payload = await self.workers.options(method_name="call").remote(
                "GetStatus", request.SerializeToString())
        except LOST as exc:
            raise WorkerLost(f"the inference worker answering GetStatus went away: {_short(exc)}") from exc
        except serve_errors.DeploymentUnavailableError as exc:
            raise NoWorkers(f"no inference worker is running: {_short(exc)}") from exc
        if kind == "error":
            raise RelayedError(status_pb2.Status.FromString(payload))
        return inference_pb2.GetStatusResponse.FromString(payload)

    async def _routing_key(self, checkpoint: str) -> str:
        """The checkpoint the job will run on, named as the registry names it: "" (the active one) resolved
        here, so a request naming the active checkpoint and one naming none go to the same worker."""
        if self.routing != "checkpoint":
            return ""
        if checkpoint:
            return checkpoint
        reply = await self.registry.peer.call(self.registry.stub.GetActiveCheckpoint,
                                              registry_pb2.GetActiveCheckpointRequest())
        return str(reply.checkpoint)

    async def _relay(self, method: str, request: Message, checkpoint: str, response: type[Response],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[Response]:
        key = await self._routing_key(checkpoint)
        options: dict[str, Any] = {"method_name": "stream", "stream": True}
        if key:
            options["multiplexed_model_id"] = key
        handle = self.workers.options(**options)
        payload = request.SerializeToString()
        last: BaseException | None = None
        for _ in range(TRIES):
            worker: dict[str, str] = {}
            said_anything = False
            # options(stream=True): the call answers a generator.
            stream = cast(DeploymentResponseGenerator[Any], handle.remote(method, payload))
            finished = False
            try:
                async for kind, body in stream:
                    if kind == "worker":
                        worker = body
                    elif kind == "message":
                        if not said_anything:
                            said_anything = True
                            await context.send_initial_metadata(
                                (("modelmgr-worker", worker.get("id", "")),
                                 ("modelmgr-worker-pid", worker.get("pid", ""))))
                        yield response.FromString(body)
                    elif kind == "error":
                        raise RelayedError(status_pb2.Status.FromString(body))
                    elif kind == "end":
                        context.set_trailing_metadata((("modelmgr-worker-loads", str(body["loads"])),))
                finished = True
                return
            except LOST as exc:
                if said_anything:
                    log.warning("fleet.worker_lost", method=method, worker=worker.get("id"), error=_short(exc))
                    raise WorkerLost(
                        f"the inference worker running this job went away ({_short(exc)}); the job is lost, "
                        "send it again: another worker takes it",
                        metadata={"worker": worker.get("id", ""), "checkpoint": key},
                    ) from exc
                last = exc  # it never reached the worker's queue: Ray sends the next try to another one
            except serve_errors.BackPressureError as exc:
                raise QueueFull(f"every inference worker is full: {_short(exc)}") from exc
            except serve_errors.DeploymentUnavailableError as exc:
                raise NoWorkers(f"no inference worker is running: {_short(exc)}") from exc
            finally:
                # Also when the client went away (CancelledError / GeneratorExit): the job stops there.
                if not finished:
                    stream.cancel()
        raise NoWorkers(f"the inference workers went away before taking the job ({_short(last)})")


def _short(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0][:200] if exc is not None and str(exc).strip() else type(exc).__name__


async def create_front(settings: FleetSettings, workers: DeploymentHandle[Any] | None = None) -> GrpcServer:
    """The front's server, not started; deploys the workers first unless given their handle."""
    if workers is None:
        workers = cluster.deploy(settings)
    registry = RegistryClient(
        settings.registry, default_checkpoint_path=settings.default_checkpoint_path,
        model_roots=(settings.user_models_dir, settings.models_dir), timeout_s=settings.registry_timeout_s,
    )
    server = GrpcServer(
        name="inference-fleet",
        listen=settings.listen,
        bindings=[
            ServiceBinding.of(
                inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
                FleetServicer(workers, registry, OutputStore(settings.outputs_path), routing=settings.routing),
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
            )
        ],
        error_domain=DOMAIN,
    )

    async def close() -> None:
        await registry.close()

    server.on_shutdown.append(close)
    return server
