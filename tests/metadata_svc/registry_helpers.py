"""Helpers for the registry tests: tiny safetensors files with real key names, stubs, error reasons."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc

from devtools import model_files
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit import errors

LORA = model_pb2.MODEL_TYPE_LORA
CHECKPOINT = model_pb2.MODEL_TYPE_CHECKPOINT


def write_lora(path: Path, *, fmt: str = "kohya", seed: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """A LoRA for SDXL: kohya (`lora_unet_*`, `lora_te1_*`, `lora_te2_*`) or PEFT (`...lora_A/lora_B`)."""
    kind = "lora" if fmt == "kohya" else fmt
    meta = {**model_files.default_metadata(kind), **(metadata or {})}
    return model_files.write_safetensors(path, kind, 0, seed, metadata=meta)


def write_checkpoint(path: Path, *, arch: str = "sdxl", seed: int = 0) -> Path:
    """A single-file LDM checkpoint with SDXL (or SD1.5) key names and tiny shapes."""
    return model_files.write_safetensors(path, f"{arch}-checkpoint", 0, seed,
                                         metadata={"modelspec.title": f"tiny-{arch}-{seed}"})


def write_unknown_safetensors(path: Path) -> Path:
    return model_files.write_safetensors(path, "unknown", 0)


def huge_header_bytes() -> bytes:
    """A file that claims a 1 TiB header."""
    return model_files.bad_header_length_bytes(1 << 40)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reason(exc: grpc.aio.AioRpcError) -> str:
    info = errors.error_info_of(exc)
    assert info is not None, f"no ErrorInfo on {exc.code()}: {exc.details()}"
    assert info.domain == "registry.modelmanager"
    return info.reason


def create_request(filename: str, kind: int = LORA, **fields) -> registry_pb2.CreateModelRequest:
    return registry_pb2.CreateModelRequest(model=model_pb2.Model(filename=filename, type=kind, **fields))
