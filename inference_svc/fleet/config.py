"""Settings of the fleet front: every inference setting (the workers get them) plus how the fleet runs."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from inference_svc.config import GIB, InferenceSettings
from service_kit.config import setting

MODEL_SOURCES = ("auto", "volume", "registry")


@dataclass(frozen=True)
class ModelFiles:
    """Where a worker reads model files from; decided on the worker's own node (`fetches`)."""

    source: str
    cache_dir: Path
    cache_bytes: int

    def fetches(self, user_models_dir: Path) -> bool:
        """Whether to fetch by sha256 into the node cache rather than read the registry's paths."""
        return self.source == "registry" or (self.source == "auto" and not user_models_dir.is_dir())


@dataclass
class FleetSettings(InferenceSettings):
    CLI_PROG: ClassVar[str] = "python -m inference_svc.fleet"
    CLI_DESCRIPTION: ClassVar[str] = "SDXL inference as a fleet of Ray Serve workers behind one gRPC front"

    # "" starts a Ray cluster on this machine (127.0.0.1, `workers` CPU slots); "auto" or ray://host:port
    # joins an existing one (KubeRay's head service, `ray start --head`).
    ray_address: str = setting("", help="Ray cluster to join ('' starts a local one; 'auto', ray://host:10001)",
                               env="MODELMGR_FLEET_RAY_ADDRESS")
    # Fixed number of workers; with max_workers > workers, Ray Serve autoscales between the two.
    workers: int = setting(2, help="inference workers (Ray Serve replicas); the minimum when autoscaling",
                           env="MODELMGR_FLEET_WORKERS", positive=True)
    max_workers: int = setting(0, help="autoscale up to this many workers (0: no autoscaling)",
                               env="MODELMGR_FLEET_MAX_WORKERS", minimum=0)
    # Per worker: its Ray resources. One GPU per worker on GPU nodes; CPUs only for the demo.
    worker_cpus: float = setting(1.0, help="CPUs reserved per worker", env="MODELMGR_FLEET_WORKER_CPUS", minimum=0)
    worker_gpus: float = setting(0.0, help="GPUs per worker (1 on GPU nodes)", env="MODELMGR_FLEET_WORKER_GPUS",
                                 minimum=0)
    # The checkpoints a worker is routed for at once (Ray's multiplexed-model LRU): match what its device
    # budget holds, so routing and the worker's own cache agree on what is warm.
    checkpoints_per_worker: int = setting(1, help="checkpoints each worker is routed for at once",
                                          env="MODELMGR_FLEET_CHECKPOINTS_PER_WORKER", positive=True)
    # Jobs a worker holds at once (running + in its own queue). Beyond it a request waits in Ray's router and
    # may go to a worker that has to load its checkpoint: small keeps hot checkpoints from piling on one
    # worker, large keeps them warm (bench/bench_fleet_sim.py: 4 is a good middle).
    worker_max_ongoing: int = setting(4, help="jobs a worker holds at once; more wait in Ray's router",
                                      env="MODELMGR_FLEET_WORKER_MAX_ONGOING", positive=True)
    # "checkpoint": Ray Serve model multiplexing keyed by the resolved checkpoint; "any": the least loaded
    # worker whatever it holds (the baseline the bench compares against).
    routing: str = setting("checkpoint", help="checkpoint (affinity by model multiplexing) or any",
                           env="MODELMGR_FLEET_ROUTING")
    app_name: str = setting("inference", help="Ray Serve application name", env="MODELMGR_FLEET_APP")
    # "volume": the registry's paths (the shared volume is mounted on every node); "registry": each file
    # fetched by sha256 (ReadModelFile) into a node-local cache; "auto": registry on a node where the
    # user-models folder is not there. The default checkpoint is read from the local models dir either way.
    model_source: str = setting("auto", help="auto, volume (shared volume) or registry (node cache)",
                                env="MODELMGR_FLEET_MODEL_SOURCE")
    # Per node, on local disk (NVMe emptyDir/hostPath): each worker takes a slot of its own under it.
    node_cache_dir: Path = setting(Path(tempfile.gettempdir()) / "modelmgr-node-cache",
                                   help="node-local cache of model files fetched from the registry",
                                   env="MODELMGR_FLEET_NODE_CACHE_DIR")
    node_cache_bytes: int = setting(100 * GIB, help="bytes of model files each worker's node cache keeps",
                                    env="MODELMGR_FLEET_NODE_CACHE_BYTES", positive=True)

    def __post_init__(self) -> None:
        if self.routing not in ("checkpoint", "any"):
            raise ValueError(f"routing: {self.routing!r} is neither 'checkpoint' nor 'any'")
        if self.model_source not in MODEL_SOURCES:
            raise ValueError(f"model_source: {self.model_source!r} is not one of {', '.join(MODEL_SOURCES)}")

    def model_files(self) -> ModelFiles:
        return ModelFiles(self.model_source, self.node_cache_dir, self.node_cache_bytes)

    def worker_settings(self) -> InferenceSettings:
        """What each worker is built from: the inference settings alone (no fleet fields)."""
        return InferenceSettings(**{f.name: getattr(self, f.name) for f in fields(InferenceSettings)})


def from_args(argv: Sequence[str] | None = None) -> FleetSettings:
    return FleetSettings.from_args(argv)
