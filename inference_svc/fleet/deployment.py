"""One fleet worker: a Ray Serve replica that runs the inference engine, the same composition as
`python -m inference_svc` (inference_svc.app.create_engine) and the same servicer, without a gRPC
server of its own. The front (inference_svc.fleet.front) calls it through a deployment handle.

Between front and worker, requests travel as serialized protobuf messages and come back as
envelopes, `(kind, payload)`:

    ("worker", {"id", "pid", "node"})   who took the request (before anything else)
    ("message", bytes)                  one response message of the RPC
    ("error", bytes)                    a google.rpc.Status: the RPC failed with this code and ErrorInfo
    ("end", {"loads": n})               the worker's checkpoint loads from disk so far (for the benches)

so errors keep their code, reason and metadata across Ray, which would otherwise turn them into
a RayTaskError with a traceback.

Routing: a request for checkpoint X comes with multiplexed_model_id=X. The multiplexed "loader"
below only records X (Ray then reports to its routers that this replica holds X); the checkpoint
itself is loaded by the job, through the engine's own cache, with its progress streamed like on a
single service. checkpoints_per_worker bounds both: keep it at what the device budget holds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray import serve

from inference_svc.app import create_engine
from inference_svc.config import InferenceSettings
from inference_svc.errors import DOMAIN
from inference_svc.fleet.config import ModelFiles
from inference_svc.servicer import InferenceServicer
from modelmanager.v1 import inference_pb2
from service_kit import configure_logging, get_logger
from service_kit.errors import Internal, ServiceError

log = get_logger("inference_svc.fleet.worker")

# The RPCs a worker runs, by name: their request type.
STREAMING = {
    "Generate": inference_pb2.GenerateRequest,
    "Upscale": inference_pb2.UpscaleRequest,
    "LoadCheckpoint": inference_pb2.LoadCheckpointRequest,
}
UNARY = {"GetStatus": inference_pb2.GetStatusRequest}

Envelope = tuple[str, Any]


def _status_bytes(exc: BaseException) -> bytes:
    if not isinstance(exc, ServiceError):
        log.exception("worker.unexpected_error", error=repr(exc)[:300])
        exc = Internal(f"inference worker: {type(exc).__name__}: {str(exc)[:300]}")
    return exc.to_status_proto(DOMAIN).SerializeToString()


class InferenceWorker:
    def __init__(self, settings: InferenceSettings, checkpoints_per_worker: int, model_files: ModelFiles | None = None):
        configure_logging("inference-worker", level=settings.log_level, json=settings.log_format == "json")
        self.engine, self._close = create_engine(settings)
        self.servicer = InferenceServicer(self.engine)
        # Decided here, on the worker's node: is the shared volume mounted?
        self.node_cache = None
        if model_files is not None and model_files.fetches(settings.user_models_dir):
            self.node_cache = self.engine.registry.use_node_cache(model_files.cache_dir, model_files.cache_bytes)
            log.info("worker.node_cache", folder=str(self.node_cache.folder), max_bytes=model_files.cache_bytes)

        async def hold(checkpoint: str) -> str:
            return checkpoint

        # Wrapped per instance (a plain function: Ray keeps its LRU on the object it decorates).
        self._hold = serve.multiplexed(max_num_models_per_replica=checkpoints_per_worker)(hold)

    @property
    def disk_loads(self) -> int:
        """Checkpoint loads that read a file: fresh builds and in-place swaps."""
        return self.engine.cache.loads + self.engine.cache.swaps

    def node_cache_stats(self) -> dict[str, int]:
        """The node cache's fetches (empty when this worker reads the shared volume); for tests and benches."""
        return dataclasses.asdict(self.node_cache.stats) if self.node_cache is not None else {}

    def identity(self) -> dict[str, str]:
        context = serve.get_replica_context()
        return {"id": context.replica_id.unique_id, "pid": str(os.getpid()),
                "node": ray.get_runtime_context().get_node_id()}

    async def stream(self, method: str, request: bytes) -> AsyncIterator[Envelope]:
        checkpoint = serve.get_multiplexed_model_id()
        if checkpoint:
            await self._hold(checkpoint)
        yield ("worker", self.identity())
        message = STREAMING[method].FromString(request)
        try:
            # A cancelled call (the front's client went away) raises CancelledError here: the servicer's
            # own `finally` cancels the job, as on a single service.
            async for response in getattr(self.servicer, method)(message, None):
                yield ("message", response.SerializeToString())
        except Exception as exc:
            yield ("error", _status_bytes(exc))
        yield ("end", {"loads": self.disk_loads})

    async def call(self, method: str, request: bytes) -> Envelope:
        try:
            response = await getattr(self.servicer, method)(UNARY[method].FromString(request), None)
        except Exception as exc:
            return ("error", _status_bytes(exc))
        return ("message", response.SerializeToString())

    async def __del__(self) -> None:
        # Ray Serve awaits an async __del__ when it stops a replica gracefully.
        await self._close()
