"""The inference service as a fleet: N workers under Ray Serve behind one gRPC front (issue 16).

Modules: config (FleetSettings: the inference settings plus the fleet's), deployment (a worker:
the engine in a Ray Serve replica), cluster (join or start Ray, deploy the workers), front (our
InferenceService server relaying to the workers, routed by checkpoint), app (`python -m
inference_svc.fleet`). Workers read model files from the shared volume (the registry's paths) or,
without it, fetch them by sha256 into a node-local cache (inference_svc.node_cache; docs/scaling.md).

Needs the `fleet` extra (`pip install -e '.[fleet]'`: ray[serve]); nothing else in the project
imports this package. docs/scaling.md says how it deploys.
"""
