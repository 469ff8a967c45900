"""Inference service: SDXL checkpoints (single-file or diffusers folders), LoRAs, generate and upscale over gRPC.

Modules, one concept each: config (settings), app (composition root),
servicer (gRPC mapping), validation (request checks), engine (job bodies),
job_queue (one GPU job at a time), checkpoint_loader / checkpoint_cache
(loading and the memory-bounded cache), checkpoint_shapes (the header's
shape check), lora_manager (adapters), pipelines
(text to image), upscaler (tiles + feathered blend), images (PNG in/out),
registry_client, device (dtype, attention, memory), assets (shipped configs),
ldm_convert (diffusers -> single-file layout, for tests and benches), errors.
"""

import os

# Everything the loader needs ships with the project: never reach for the hub. Set before
# diffusers / transformers / huggingface_hub are imported, since they read it at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
