"""Inference service: SDXL checkpoints (single-file or diffusers folders), LoRAs, generate and upscale over gRPC.

Modules, one concept each: config (settings), app (composition root),
servicer (gRPC mapping), validation (request checks), engine (job bodies),
job_queue (one GPU job at a time), checkpoint_loader / checkpoint_cache
(loading and the memory-bounded cache), checkpoint_shapes (the header's
shape check), lora_manager (adapters), pipelines
(text to image), upscaler (tiles + feathered blend), images (PNG in/out),
registry_client, model_paths (a path from the registry must lie on the
volumes), device (dtype, attention, memory), assets (shipped configs),
ldm_convert (diffusers -> single-file layout, for tests and benches), errors.

Checkpoint formats: the loader (`CheckpointLoader.load`) reads single-file
`.safetensors` checkpoints and diffusers folders (model_index.json, unet/,
vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/,
weights as .safetensors). Through the service:

* installed checkpoints (user-models/checkpoints/, named by the registry) are
  single files: the registry indexes regular files only;
* the default checkpoint, "illustrious-xl", may be either: the file
  <models>/illustrious-xl/Illustrious-XL-v0.1.safetensors or, when that file
  is absent, a diffusers folder at <models>/illustrious-xl/ itself (e.g.
  `save_pretrained` output or a hub snapshot copied there). There is no
  --default-checkpoint flag; --models-dir chooses the volume.

To serve another SDXL model that exists only as a diffusers folder, convert it
to one file in the LDM layout CivitAI serves
(`save_file(pipeline_to_ldm(pipe), "model.safetensors")`, with
`inference_svc.ldm_convert.pipeline_to_ldm`) and upload that, or put the
folder in the default checkpoint's place.
"""

import os

# Everything the loader needs ships with the project: never reach for the hub. Set before
# diffusers / transformers / huggingface_hub are imported, since they read it at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
