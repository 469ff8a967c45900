"""How sizes and model types read to a person; shared by the web UI and the `modelmgr` command line."""

from __future__ import annotations

from modelmanager.v1 import model_pb2

__all__ = ["TYPE_NAMES", "human_size", "type_name"]

# Every model type as the UI and the CLI name it.
TYPE_NAMES = {
    model_pb2.MODEL_TYPE_LORA: "LoRA",
    model_pb2.MODEL_TYPE_CHECKPOINT: "Checkpoint",
    model_pb2.MODEL_TYPE_EMBEDDING: "Embedding",
    model_pb2.MODEL_TYPE_VAE: "VAE",
    model_pb2.MODEL_TYPE_UPSCALER: "Upscaler",
}


def human_size(n: int | float) -> str:
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def type_name(t: int) -> str:
    return TYPE_NAMES.get(t, "?")
