"""Helpers for the registry tests: tiny safetensors files with real key names, stubs, error reasons."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import grpc
import numpy as np
from safetensors.numpy import save_file

from modelmanager.v1 import model_pb2, registry_pb2
from service_kit import errors

LORA = model_pb2.MODEL_TYPE_LORA
CHECKPOINT = model_pb2.MODEL_TYPE_CHECKPOINT


def _t(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float16)


def write_lora(path: Path, *, fmt: str = "kohya", seed: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """A LoRA for SDXL: kohya (`lora_unet_*`, `lora_te1_*`, `lora_te2_*`) or PEFT (`...lora_A/lora_B`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "kohya":
        state = {}
        for name in ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
                     "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
                     "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"):
            state[f"{name}.lora_down.weight"] = _t(4, 16, seed=seed)
            state[f"{name}.lora_up.weight"] = _t(16, 4, seed=seed + 1)
            state[f"{name}.alpha"] = np.array(4.0, dtype=np.float16)
        meta = {"ss_network_module": "networks.lora", "ss_base_model_version": "sdxl_base_v1-0"}
    else:
        state = {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": _t(4, 16, seed=seed),
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": _t(16, 4, seed=seed),
            "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": _t(4, 16, seed=seed),
            "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": _t(16, 4, seed=seed),
        }
        meta = {}
    save_file(state, str(path), metadata={**meta, **(metadata or {})})
    return path


def write_checkpoint(path: Path, *, arch: str = "sdxl", seed: int = 0) -> Path:
    """A single-file LDM checkpoint with SDXL (or SD1.5) key names and tiny shapes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model.diffusion_model.input_blocks.0.0.weight": _t(8, 4, 3, 3, seed=seed),
        "model.diffusion_model.out.2.weight": _t(4, 8, 3, 3, seed=seed),
        "first_stage_model.decoder.conv_in.weight": _t(8, 4, 3, 3, seed=seed),
    }
    if arch == "sdxl":
        state["model.diffusion_model.label_emb.0.0.weight"] = _t(8, 16, seed=seed)
        state["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = _t(16, 8, seed=seed)
        state["conditioner.embedders.1.model.token_embedding.weight"] = _t(16, 8, seed=seed)
        state["conditioner.embedders.1.model.text_projection"] = _t(8, 8, seed=seed)
    else:
        state["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = _t(16, 8, seed=seed)
    save_file(state, str(path), metadata={"modelspec.title": f"tiny-{arch}-{seed}"})
    return path


def write_unknown_safetensors(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"some.random.tensor": _t(4, 4)}, str(path))
    return path


def huge_header_bytes() -> bytes:
    """A file that claims a 1 TiB header."""
    return struct.pack("<Q", 1 << 40) + b"{}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reason(exc: grpc.aio.AioRpcError) -> str:
    info = errors.error_info_of(exc)
    assert info is not None, f"no ErrorInfo on {exc.code()}: {exc.details()}"
    assert info.domain == "registry.modelmanager"
    return info.reason


def create_request(filename: str, kind: int = LORA, **fields) -> registry_pb2.CreateModelRequest:
    return registry_pb2.CreateModelRequest(model=model_pb2.Model(filename=filename, type=kind, **fields))
