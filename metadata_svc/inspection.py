"""Reads a safetensors header and says what the file is: a LoRA (kohya or PEFT) or a checkpoint (SDXL or not).

Detection is by tensor names (and a few shapes), never by file size: tests use
tiny SDXL-shaped models with real key names and small dimensions.

File layout: 8 bytes little-endian header length N, N bytes of JSON
`{name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}`, then data.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metadata_svc.errors import InvalidSafetensors, TypeMismatch
from metadata_svc.models import CHECKPOINT, LORA, Inspection

# The safetensors library refuses headers over 100 MB; real ones are a few MB at most.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Only these header metadata keys are copied into the index (short ones): the index is rewritten
# on every change, and kohya headers carry dozens of keys, some of them (tag frequencies,
# embedded configs) tens of kilobytes long.
KEPT_METADATA_KEYS = frozenset({
    "ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_output_name",
    "ss_sd_model_name", "ss_resolution", "ss_training_comment", "ss_v2",
})
KEPT_METADATA_PREFIXES = ("modelspec.",)
MAX_METADATA_VALUE_CHARS = 256
MAX_METADATA_KEYS = 24

_KOHYA_PREFIXES = ("lora_unet_", "lora_te1_", "lora_te2_", "lora_te_", "lora_transformer_")
_PEFT_MARKERS = (".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.", ".lora_down.", ".lora_up.", ".lora_linear_layer.")


def read_header(path: Path, name: str | None = None) -> dict[str, Any]:
    """The parsed header, or InvalidSafetensors naming what is wrong; errors call the file `name`
    (an upload's .part file is the user's filename to them)."""
    name = name or path.name
    meta = {"filename": name}
    with path.open("rb") as fh:
        size = path.stat().st_size
        raw_len = fh.read(8)
        if len(raw_len) < 8:
            raise InvalidSafetensors(f"{name}: too short to be a safetensors file ({size} bytes)", metadata=meta)
        (length,) = struct.unpack("<Q", raw_len)
        check_header_length(length, size, name)
        raw = fh.read(length)
    return parse_header(raw, name, data_size=size - 8 - length)


def check_header_length(length: int, file_size: int | None, name: str) -> None:
    meta = {"filename": name, "header_bytes": length}
    if length > MAX_HEADER_BYTES:
        raise InvalidSafetensors(f"{name}: safetensors header of {length} bytes is absurdly large "
                                 f"(limit {MAX_HEADER_BYTES})", metadata=meta)
    if length < 2:
        raise InvalidSafetensors(f"{name}: safetensors header is empty", metadata=meta)
    if file_size is not None and 8 + length > file_size:
        raise InvalidSafetensors(f"{name}: safetensors header length {length} runs past the end of the file "
                                 f"({file_size} bytes)", metadata=meta)


def parse_header(raw: bytes, name: str, *, data_size: int | None) -> dict[str, Any]:
    meta = {"filename": name}
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidSafetensors(f"{name}: safetensors header is not valid JSON ({exc})", metadata=meta) from None
    if not isinstance(header, dict):
        raise InvalidSafetensors(f"{name}: safetensors header is not a JSON object", metadata=meta)
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict):
                raise InvalidSafetensors(f"{name}: __metadata__ is not an object", metadata=meta)
            continue
        if not (isinstance(info, dict) and isinstance(info.get("dtype"), str) and isinstance(info.get("shape"), list)
                and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2):
            raise InvalidSafetensors(f"{name}: tensor {key!r} has no dtype/shape/data_offsets", metadata=meta)
        start, end = info["data_offsets"]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise InvalidSafetensors(f"{name}: tensor {key!r} has bad data_offsets", metadata=meta)
        if data_size is not None and end > data_size:
            raise InvalidSafetensors(f"{name}: tensor {key!r} ends past the end of the file", metadata=meta)
    return header


def classify(header: Mapping[str, Any]) -> Inspection:
    keys = [k for k in header if k != "__metadata__"]
    metadata = header.get("__metadata__") or {}
    kept = {
        str(k): str(v)
        for k, v in metadata.items()
        if (k in KEPT_METADATA_KEYS or str(k).startswith(KEPT_METADATA_PREFIXES))
        and len(str(v)) <= MAX_METADATA_VALUE_CHARS
    }
    kept = dict(list(kept.items())[:MAX_METADATA_KEYS])
    detected, arch, lora_format = "unknown", "unknown", ""

    kohya = any(k.startswith(_KOHYA_PREFIXES) for k in keys)
    peft = not kohya and any(any(m in k for m in _PEFT_MARKERS) for k in keys)
    if kohya or peft:
        detected, lora_format = LORA, "kohya" if kohya else "peft"
        second_te = any(k.startswith(("lora_te2_", "text_encoder_2.", "lora_unet_input_blocks_", "lora_unet_output_blocks_"))
                        for k in keys)
        base = str(metadata.get("ss_base_model_version", "")).lower()
        if "sdxl" in base or "xl" in base or second_te:
            arch = "sdxl"
        elif base.startswith(("sd_v1", "sd_1", "v1")):
            arch = "sd15"
    elif any(k.startswith("model.diffusion_model.") for k in keys):
        detected = CHECKPOINT
        if any(k.startswith("conditioner.embedders.1.") for k in keys):
            # SDXL's second text encoder (OpenCLIP bigG); SD1.x has cond_stage_model instead.
            arch = "sdxl"
        elif any(k.startswith("cond_stage_model.") for k in keys):
            proj = header.get("cond_stage_model.model.text_projection")
            arch = "sd2" if proj is not None else "sd15"
        # Inpainting / instruct models take more than 4 latent input channels.
        conv_in = header.get("model.diffusion_model.input_blocks.0.0.weight")
        if isinstance(conv_in, dict) and len(conv_in.get("shape", [])) == 4 and conv_in["shape"][1] not in (4,):
            kept.setdefault("registry.unet_in_channels", str(conv_in["shape"][1]))
    return Inspection(
        format="safetensors",
        detected_type=detected,
        architecture=arch,
        lora_format=lora_format,
        tensor_count=len(keys),
        header_metadata=kept,
    )


def inspect_file(path: Path, name: str | None = None) -> Inspection:
    return classify(read_header(path, name))


def check_claim(inspection: Inspection, claimed: str, filename: str) -> None:
    """Refuse a file whose header contradicts the claimed type, or a checkpoint that is not SDXL."""
    meta = {"filename": filename, "claimed_type": claimed, "detected_type": inspection.detected_type,
            "architecture": inspection.architecture}
    if inspection.format != "safetensors":
        return  # pickle files are never opened, so there is nothing to check
    if inspection.detected_type == "unknown":
        raise TypeMismatch(f"{filename}: the safetensors header shows neither LoRA nor checkpoint tensors "
                           f"(claimed {claimed})", metadata=meta)
    if inspection.detected_type != claimed:
        raise TypeMismatch(f"{filename}: claimed to be a {claimed} but its header is a {inspection.detected_type}'s",
                           metadata=meta)
    if claimed == CHECKPOINT and inspection.architecture != "sdxl":
        raise TypeMismatch(f"{filename}: a {inspection.architecture} checkpoint, not SDXL "
                           "(no second text encoder, conditioner.embedders.1.*)", metadata=meta)


def pickle_inspection() -> Inspection:
    return Inspection(format="pickle", detected_type="unknown", architecture="unknown")
