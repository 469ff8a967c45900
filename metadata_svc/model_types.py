"""Embeddings, VAEs and upscalers (issue 14): what a file's tensors say it is, and reading the tensors of
the pickle files (.pt/.pth) these ship as, safely.

- Embedding: an SDXL textual inversion holds `clip_l` and `clip_g` (one vector set per text encoder).
  SD 1.x ones hold one 768-wide set (`emb_params`, or A1111's `string_to_param.*`); SD 2.x 1024-wide.
- VAE: only encoder/decoder tensors (`encoder.`, `decoder.`, `quant_conv.`, `post_quant_conv.`), diffusers
  names (`down_blocks`) or LDM ones (`down.0.block`), maybe under `first_stage_model.` (a VAE extracted
  from a checkpoint). SDXL's and SD 1.x's VAE are the same architecture with the same shapes, so the
  tensors cannot tell them apart: the header metadata (`modelspec.architecture`, `ss_base_model_version`)
  decides when it says; otherwise the VAE's architecture is "unknown" and it is accepted (decision: a
  VAE that does not say is not refused, since most fp16-fix SDXL VAEs carry no metadata).
- Upscaler: any architecture spandrel's ModelLoader recognises in the state dict (ESRGAN, Real-ESRGAN,
  SwinIR, ...); this needs the tensors, so only files up to MAX_UPSCALER_BYTES are tried.

Pickles are read only with `torch.load(weights_only=True)`: torch's restricted unpickler, which builds
tensors, dicts, lists and plain values and refuses every other global, so nothing in the file runs.
A pickle it refuses is UnsafePickle; the file is never unpickled in full.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from metadata_svc.errors import UnsafePickle
from metadata_svc.models import EMBEDDING, VAE

# The largest upscalers (HAT-L, DAT) are ~170 MB; a file over this is not loaded to try spandrel on it.
MAX_UPSCALER_BYTES = 512 * 1024 * 1024
# Pickle files read to classify them (embeddings are KB, VAEs ~330 MB, upscalers up to ~170 MB).
MAX_PICKLE_BYTES = 1024 * 1024 * 1024
VAE_FORMAT_KEY = "registry.vae_format"
EMBEDDING_VECTORS_KEY = "registry.embedding_vectors"

_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_LDM_VAE_PREFIX = "first_stage_model."
_TI_WIDTH_ARCH = {768: "sd15", 1024: "sd2"}


def classify_keys(keys: list[str], shapes: Mapping[str, list[int]],
                  metadata: Mapping[str, Any]) -> tuple[str, str, dict[str, str]] | None:
    """(detected type, architecture, derived facts) for an embedding or VAE key set, else None."""
    if "clip_l" in keys and "clip_g" in keys:
        vectors = shapes.get("clip_l", [])
        return EMBEDDING, "sdxl", {EMBEDDING_VECTORS_KEY: str(vectors[0])} if len(vectors) == 2 else {}
    single = [k for k in keys if k == "emb_params" or k.startswith("string_to_param.")]
    if single and len(keys) == len(single):
        shape = shapes.get(single[0], [])
        width = shape[-1] if shape else 0
        return EMBEDDING, _TI_WIDTH_ARCH.get(width, "unknown"), {}
    bare = [k.removeprefix(_LDM_VAE_PREFIX) for k in keys]
    if (bare and all(k.startswith(_VAE_PARTS) for k in bare)
            and any(k.startswith("encoder.") for k in bare) and any(k.startswith("decoder.") for k in bare)):
        diffusers = any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in bare)
        return VAE, _vae_architecture(metadata), {VAE_FORMAT_KEY: "diffusers" if diffusers else "ldm"}
    return None


def _vae_architecture(metadata: Mapping[str, Any]) -> str:
    spec = str(metadata.get("modelspec.architecture", "")).lower()
    base = str(metadata.get("ss_base_model_version", "")).lower()
    if "xl" in spec or "xl" in base:
        return "sdxl"
    if spec.startswith("stable-diffusion-v1") or base.startswith(("sd_v1", "sd_1", "v1")):
        return "sd15"
    if spec.startswith("stable-diffusion-v2") or base.startswith(("sd_v2", "sd_2", "v2")):
        return "sd2"
    return "unknown"


def what_it_is(detected: str, arch: str) -> str:
    """For a TYPE_MISMATCH message: "an SD 1.x embedding", "an SDXL VAE"..."""
    base = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}.get(arch)
    label = label_of(detected)
    return f"an {base} {label}" if base else article(label)


def label_of(kind: str) -> str:
    return {"vae": "VAE", "lora": "LoRA"}.get(kind, kind)


def article(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


# --------------------------------------------------------------------------- tensors of a file


def load_pickle(source: Path | IO[bytes], name: str) -> Any:
    """The object in a torch pickle (zip or legacy), through the weights-only unpickler only."""
    import pickle

    import torch

    try:
        mmap = isinstance(source, Path) and zipfile.is_zipfile(source)
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, zipfile.BadZipFile, ImportError) as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        why = re.search(r"(Unsupported (?:global|operand)[^\n.]*|Unsupported class[^\n.]*)", text)
        first = why.group(1) if why else (text.strip().splitlines() or [type(exc).__name__])[0]
        first = first[:300]
        raise UnsafePickle(f"{name}: torch's weights-only unpickler refused this pickle ({first}); it is never "
                           "unpickled in full, since that can run code. Use a .safetensors file",
                           metadata={"filename": name}) from None


def state_dict_of(obj: Any) -> dict[str, Any]:
    """A flat {dotted name: tensor} view of a loaded pickle: A1111 embeddings keep their vectors under
    `string_to_param: {"*": tensor}`, BasicSR upscalers under `params_ema` or `params`."""
    import torch

    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, Mapping) and depth < 4:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item, depth + 1)

    if isinstance(obj, Mapping):
        for wrapper in ("params_ema", "params", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    walk("", obj, 0)
    return flat


def pseudo_header(state: Mapping[str, Any]) -> dict[str, Any]:
    """A safetensors-like header of a state dict (names and shapes), for inspection.classify."""
    header: dict[str, Any] = {}
    for key, tensor in state.items():
        header[key] = {"dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape),
                       "data_offsets": [0, 0]}
    return header


def upscaler_of(state: Mapping[str, Any]) -> tuple[str, int] | None:
    """(spandrel's architecture id, e.g. "ESRGAN", and the scale) when spandrel recognises `state`."""
    if not state:
        return None
    from service_kit import spandrel_loader

    try:
        descriptor = spandrel_loader.load_descriptor(dict(state))
    except Exception:  # spandrel raises anything (KeyError, shape errors) for a state dict it does not know
        return None
    if not isinstance(descriptor, spandrel_loader.ImageModelDescriptor):
        return None  # a restoration model of another kind (inpainting...): not an upscaler
    return str(descriptor.architecture.id), int(descriptor.scale)


def safetensors_state(data: bytes) -> dict[str, Any]:
    from safetensors.torch import load

    return load(data)

