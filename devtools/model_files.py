"""The one writer of safetensors fixture files: real key sets, small data, any size, and broken files.

Every test, bench and the fake CivitAI write their model files through here, so a key set
(what a registry's header inspection sees) is spelt once. Files are valid safetensors
(8-byte little-endian header length, JSON header, data), with deterministic random
float16 weights (finite values) by `seed`, and any `payload_bytes` (a padding tensor,
written in 8 MiB blocks, so a multi-GB file never sits in memory).

Key sets (`KINDS`; name -> TensorSpec)
---------------------------------------
``"lora"`` / ``"kohya"``  kohya SDXL LoRA: `lora_unet_*`, `lora_te1_*`, `lora_te2_*` with
                          `.lora_down.weight`, `.lora_up.weight`, `.alpha`; `ss_*` metadata.
``"kohya-sd15"``          kohya SD 1.5 LoRA: `lora_unet_down_blocks_*`, `lora_te_*`; `ss_base_model_version=sd_v1`.
``"peft"``                PEFT/diffusers LoRA: `unet.*.lora_A.weight` / `lora_B.weight`, `text_encoder_2.*`; no metadata.
``"loha"``                LyCORIS LoHa: `lora_unet_*.hada_w1_a/_b`, `.hada_w2_a/_b`, `.alpha`; `lycoris.kohya` metadata.
``"locon"``               LyCORIS LoCon: linear pairs plus conv pairs (`..._in_layers_2.lora_down.weight` 4-D).
``"checkpoint"`` / ``"sdxl-checkpoint"``  SDXL LDM single file: `model.diffusion_model.*` (with `label_emb`),
                          `conditioner.embedders.0.transformer.*`, `conditioner.embedders.1.model.*`, `first_stage_model.*`.
``"sd15-checkpoint"``     SD 1.5 LDM single file: `model.diffusion_model.*`, `cond_stage_model.transformer.*`.
``"unknown"``             one tensor with a name no tool recognises.
``"sdxl-embedding"``      SDXL textual inversion: `clip_l` (n×768) and `clip_g` (n×1280), n = `vectors=` (2).
``"sd15-embedding"``      SD 1.x textual inversion: `emb_params` (n×768) alone.
``"vae"``                 diffusers-named VAE: `encoder.*`, `decoder.*`, `quant_conv`, `post_quant_conv`
                          (SDXL and SD 1.x VAEs share it; `modelspec.architecture` says which when set).
``"vae-ldm"``             LDM-named VAE as extracted from a checkpoint: `first_stage_model.encoder.*`, ...
``"sd15-vae"``            the "vae" key set with SD 1.x modelspec metadata.
``"esrgan"``              an ESRGAN (old-arch RRDBNet) upscaler that spandrel recognises: `model.0.*`,
                          `model.1.sub.0.RDB1..3.conv1..5.0.*`, ...; 4 filters, 1 block, 2× (about 390 KB:
                          the growth width of 32 channels is fixed by the architecture).

Writing
-------
``make_safetensors(kind="lora", payload_bytes=4096, seed=0, *, metadata=None, keys=None) -> bytes``
``write_safetensors(path, kind="checkpoint", payload_bytes=1 << 20, seed=0, *, metadata=None, keys=None) -> Path``
    `payload_bytes`: the data section is at least this long (0: just the key set). `metadata=None`: the
    kind's usual `__metadata__` (`default_metadata(kind)`); `{}`: none. `keys`: your own key set.
``save_tensors(path, state, metadata=None) -> Path``
    Real torch (or numpy) tensors through the safetensors library (tiny_models' real models).
``write_torch_pickle(path, kind="esrgan", *, wrap=None, extra=None) -> Path``
    A kind's tensors as a `.pt`/`.pth` file by torch.save (A1111 embeddings: `wrap="string_to_param"`;
    BasicSR upscalers: `wrap="params_ema"`): plain tensors and dicts, loadable with weights_only.
``write_malicious_pickle(path, marker, *, torch_zip=True) -> Path``
    A pickle that creates the file `marker` when fully unpickled (a torch zip by default, else raw).
``kohya_metadata(...)``, ``modelspec_metadata(...)``: the `ss_*` and `modelspec.*` header metadata.

Broken files
------------
``frame_header(raw, tail=b"")``: any raw header bytes behind a correct length prefix.
``truncated(data, keep)``: the first `keep` bytes (default: half the header).
``bad_header_length_bytes(claimed=1 << 40)``: a length prefix claiming more than the file holds.
``non_json_header_bytes()``, ``not_an_object_header_bytes()``, ``too_short_bytes()``.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS", "TensorSpec", "bad_header_length_bytes", "default_metadata", "frame_header", "header_bytes",
    "key_set", "kohya_metadata", "make_safetensors", "modelspec_metadata", "non_json_header_bytes",
    "not_an_object_header_bytes", "save_tensors", "too_short_bytes", "truncated", "write_malicious_pickle",
    "write_safetensors", "write_torch_pickle",
]

_BLOCK = 8 * 1024 * 1024
_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4}
_PACK = {"F16": "<e", "F32": "<f"}
# Clearing bit 6 of every byte keeps each float16's exponent below 16: finite values under 2,
# as trained weights are (random bytes would hold NaNs and infinities).
_FINITE = bytes(b & ~0x40 for b in range(256))


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str = "F16"
    value: float | None = None  # a constant (a LoRA's alpha); None: random weights

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * _DTYPE_BYTES[self.dtype]


KeySet = dict[str, TensorSpec]


# --------------------------------------------------------------------------- key sets

# One attention projection in the UNet and one in each text encoder: what kohya's SDXL trainer names.
_KOHYA_SDXL_MODULES = ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
                       "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
                       "lora_te2_text_model_encoder_layers_0_self_attn_q_proj")
_KOHYA_SD15_MODULES = ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
                       "lora_te_text_model_encoder_layers_0_self_attn_q_proj")


def _pairs(modules: tuple[str, ...], rank: int, width: int) -> KeySet:
    keys: KeySet = {}
    for name in modules:
        keys[f"{name}.lora_down.weight"] = TensorSpec((rank, width))
        keys[f"{name}.lora_up.weight"] = TensorSpec((width, rank))
        keys[f"{name}.alpha"] = TensorSpec((), value=float(rank))
    return keys


def _kohya_sdxl(rank: int = 4, width: int = 16) -> KeySet:
    return _pairs(_KOHYA_SDXL_MODULES, rank, width)


def _kohya_sd15(rank: int = 4, width: int = 16) -> KeySet:
    return _pairs(_KOHYA_SD15_MODULES, rank, width)


def _peft(rank: int = 4, width: int = 16) -> KeySet:
    keys: KeySet = {}
    for name in ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
                 "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj"):
        keys[f"{name}.lora_A.weight"] = TensorSpec((rank, width))
        keys[f"{name}.lora_B.weight"] = TensorSpec((width, rank))
    return keys


def _loha(rank: int = 4, width: int = 16) -> KeySet:
    keys: KeySet = {}
    for name in _KOHYA_SDXL_MODULES:
        for w in ("w1", "w2"):
            keys[f"{name}.hada_{w}_a"] = TensorSpec((width, rank))
            keys[f"{name}.hada_{w}_b"] = TensorSpec((rank, width))
        keys[f"{name}.alpha"] = TensorSpec((), value=float(rank))
    return keys


def _locon(rank: int = 4, width: int = 16) -> KeySet:
    keys = _kohya_sdxl(rank, width)
    conv = "lora_unet_input_blocks_1_0_in_layers_2"  # a ResNet 3x3 conv: LoCon's addition to LoRA
    keys[f"{conv}.lora_down.weight"] = TensorSpec((rank, 8, 3, 3))
    keys[f"{conv}.lora_up.weight"] = TensorSpec((8, rank, 1, 1))
    keys[f"{conv}.alpha"] = TensorSpec((), value=float(rank))
    return keys


def _ldm_common() -> KeySet:
    return {
        "model.diffusion_model.input_blocks.0.0.weight": TensorSpec((8, 4, 3, 3)),
        "model.diffusion_model.out.2.weight": TensorSpec((4, 8, 3, 3)),
        "first_stage_model.decoder.conv_in.weight": TensorSpec((8, 4, 3, 3)),
        "first_stage_model.encoder.conv_in.weight": TensorSpec((8, 3, 3, 3)),
    }


def _sdxl_checkpoint() -> KeySet:
    return {
        **_ldm_common(),
        "model.diffusion_model.label_emb.0.0.weight": TensorSpec((8, 16)),  # SDXL's size conditioning
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": TensorSpec((16, 8)),
        "conditioner.embedders.1.model.token_embedding.weight": TensorSpec((16, 8)),
        "conditioner.embedders.1.model.text_projection": TensorSpec((8, 8)),
    }


def _sd15_checkpoint() -> KeySet:
    return {
        **_ldm_common(),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": TensorSpec((16, 8)),
    }


def _unknown() -> KeySet:
    return {"some.random.tensor": TensorSpec((4, 4))}


def _sdxl_embedding(vectors: int = 2) -> KeySet:
    return {"clip_l": TensorSpec((vectors, 768)), "clip_g": TensorSpec((vectors, 1280))}


def _sd15_embedding(vectors: int = 2) -> KeySet:
    return {"emb_params": TensorSpec((vectors, 768))}


def _vae(prefix: str = "", ldm: bool = False) -> KeySet:
    down, up = ("down.0.block.0", "up.0.block.0") if ldm else ("down_blocks.0.resnets.0", "up_blocks.0.resnets.0")
    return {f"{prefix}{name}": spec for name, spec in {
        "encoder.conv_in.weight": TensorSpec((8, 3, 3, 3)),
        f"encoder.{down}.conv1.weight": TensorSpec((8, 8, 3, 3)),
        "encoder.conv_out.weight": TensorSpec((8, 8, 3, 3)),
        "quant_conv.weight": TensorSpec((8, 8, 1, 1)),
        "post_quant_conv.weight": TensorSpec((4, 4, 1, 1)),
        "decoder.conv_in.weight": TensorSpec((8, 4, 3, 3)),
        f"decoder.{up}.conv1.weight": TensorSpec((8, 8, 3, 3)),
        "decoder.conv_out.weight": TensorSpec((3, 8, 3, 3)),
    }.items()}


def _esrgan(filters: int = 4, growth: int = 32) -> KeySet:
    """Old-arch RRDBNet, one RRDB block, 2x: the layout spandrel's ESRGAN architecture reads."""
    keys: KeySet = {"model.0.weight": TensorSpec((filters, 3, 3, 3)), "model.0.bias": TensorSpec((filters,))}
    for rdb in (1, 2, 3):
        for conv in range(1, 6):
            out = filters if conv == 5 else growth
            keys[f"model.1.sub.0.RDB{rdb}.conv{conv}.0.weight"] = TensorSpec((out, filters + (conv - 1) * growth, 3, 3))
            keys[f"model.1.sub.0.RDB{rdb}.conv{conv}.0.bias"] = TensorSpec((out,))
    keys["model.1.sub.1.weight"] = TensorSpec((filters, filters, 3, 3))
    keys["model.1.sub.1.bias"] = TensorSpec((filters,))
    for index, out in ((3, filters), (5, filters), (7, 3)):  # upconv, HR conv, last conv
        keys[f"model.{index}.weight"] = TensorSpec((out, filters, 3, 3))
        keys[f"model.{index}.bias"] = TensorSpec((out,))
    return keys


_KEY_SETS = {
    "lora": _kohya_sdxl, "kohya": _kohya_sdxl, "kohya-sd15": _kohya_sd15, "peft": _peft, "loha": _loha,
    "locon": _locon, "checkpoint": _sdxl_checkpoint, "sdxl-checkpoint": _sdxl_checkpoint,
    "sd15-checkpoint": _sd15_checkpoint, "unknown": _unknown,
    "sdxl-embedding": _sdxl_embedding, "sd15-embedding": _sd15_embedding, "vae": _vae,
    "vae-ldm": lambda: _vae("first_stage_model.", ldm=True), "sd15-vae": _vae, "esrgan": _esrgan,
}
KINDS = tuple(_KEY_SETS)

# The padding tensor that makes a file `payload_bytes` long: a name of the kind's own family.
_BULK = {
    "lora": "lora_unet_output_blocks_0_1_transformer_blocks_0_ff_net_2.lora_down.weight",
    # SD 1.x kohya LoRAs use diffusers block names (SDXL ones the LDM names above): padding must not make
    # an SD 1.5 LoRA look like an SDXL one.
    "lora-sd15": "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_2.lora_down.weight",
    "peft": "unet.up_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.lora_A.weight",
    "checkpoint": "model.diffusion_model.output_blocks.0.0.in_layers.2.weight",
    "unknown": "some.other.tensor",
    "vae": "decoder.mid_block.resnets.0.conv2.weight",
    "vae-ldm": "first_stage_model.decoder.mid.block_1.conv2.weight",
}
_FAMILY = {"lora": "lora", "kohya": "lora", "kohya-sd15": "lora-sd15", "loha": "lora", "locon": "lora", "peft": "peft",
           "checkpoint": "checkpoint", "sdxl-checkpoint": "checkpoint", "sd15-checkpoint": "checkpoint",
           "unknown": "unknown", "vae": "vae", "sd15-vae": "vae", "vae-ldm": "vae-ldm",
           "sdxl-embedding": "exact", "sd15-embedding": "exact", "esrgan": "exact"}


def key_set(kind: str, **shape: int) -> KeySet:
    """The tensor names and shapes of `kind` (LoRA kinds take rank= and width=)."""
    try:
        return _KEY_SETS[kind](**shape)
    except KeyError:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})") from None


# --------------------------------------------------------------------------- header metadata


def kohya_metadata(*, rank: int | None = None, base: str = "sdxl_base_v1-0", module: str = "networks.lora",
                   output_name: str | None = None, **extra: str) -> dict[str, str]:
    """`ss_*` keys as kohya's sd-scripts write them."""
    meta = {"ss_network_module": module, "ss_base_model_version": base}
    if rank is not None:
        meta.update(ss_network_dim=str(rank), ss_network_alpha=str(rank))
    if output_name is not None:
        meta["ss_output_name"] = output_name
    return {**meta, **extra}


def modelspec_metadata(title: str | None = None, architecture: str = "stable-diffusion-xl-v1-base",
                       **extra: str) -> dict[str, str]:
    """`modelspec.*` keys (Stability's model metadata spec)."""
    meta = {"modelspec.architecture": architecture}
    if title is not None:
        meta["modelspec.title"] = title
    return {**meta, **{f"modelspec.{k}": v for k, v in extra.items()}}


def default_metadata(kind: str) -> dict[str, str]:
    """The `__metadata__` a file of this kind usually carries."""
    if kind in ("lora", "kohya"):
        return kohya_metadata()
    if kind == "kohya-sd15":
        return kohya_metadata(base="sd_v1")
    if kind in ("loha", "locon"):
        return kohya_metadata(module="lycoris.kohya", ss_network_args=json.dumps({"algo": kind}))
    if kind in ("checkpoint", "sdxl-checkpoint"):
        return modelspec_metadata()
    if kind == "sd15-checkpoint":
        return modelspec_metadata(architecture="stable-diffusion-v1")
    if kind == "sd15-vae":
        return modelspec_metadata(architecture="stable-diffusion-v1/vae")
    key_set(kind)  # raises for an unknown kind
    return {}


# --------------------------------------------------------------------------- encoding


def frame_header(raw: bytes, tail: bytes = b"") -> bytes:
    """Raw header bytes behind their 8-byte little-endian length (any bytes: for broken headers too)."""
    return struct.pack("<Q", len(raw)) + raw + tail


def _layout(kind: str, payload_bytes: int, keys: KeySet | None) -> KeySet:
    layout = dict(keys if keys is not None else key_set(kind))
    used = sum(spec.nbytes for spec in layout.values())
    family = _FAMILY.get(kind, "unknown")
    if payload_bytes > used and family in _BULK:  # embeddings and upscalers: exactly their tensors
        bulk = payload_bytes - used
        bulk += bulk % 2  # whole float16 values
        layout[_BULK[family]] = TensorSpec((bulk // 2,))
    return layout


def header_bytes(layout: Mapping[str, TensorSpec], metadata: Mapping[str, str] | None) -> tuple[bytes, int]:
    """(the framed header, the length of the data after it), tensors in `layout` order."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, spec in layout.items():
        header[name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # 8-byte alignment, as the safetensors library pads it
    return frame_header(raw), offset


def _data_blocks(layout: Mapping[str, TensorSpec], seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for spec in layout.values():
        if spec.value is not None:
            yield struct.pack(_PACK[spec.dtype], spec.value)
            continue
        left = spec.nbytes
        while left:
            n = min(left, _BLOCK)
            yield rng.randbytes(n).translate(_FINITE)
            left -= n


def _prepare(kind: str, payload_bytes: int, metadata: Mapping[str, str] | None,
             keys: KeySet | None) -> tuple[KeySet, bytes]:
    layout = _layout(kind, payload_bytes, keys)
    meta = default_metadata(kind) if metadata is None and keys is None else metadata
    header, _ = header_bytes(layout, meta)
    return layout, header


def make_safetensors(kind: str = "lora", payload_bytes: int = 4096, seed: int = 0, *,
                     metadata: Mapping[str, str] | None = None, keys: KeySet | None = None) -> bytes:
    """A valid safetensors file of `kind` (see KINDS) with random weights, as bytes."""
    layout, header = _prepare(kind, payload_bytes, metadata, keys)
    return header + b"".join(_data_blocks(layout, seed))


def write_safetensors(path: str | Path, kind: str = "checkpoint", payload_bytes: int = 1 << 20, seed: int = 0, *,
                      metadata: Mapping[str, str] | None = None, keys: KeySet | None = None) -> Path:
    """Like make_safetensors, written to `path` (parents made) in 8 MiB blocks: files of any size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layout, header = _prepare(kind, payload_bytes, metadata, keys)
    with open(path, "wb") as out:
        out.write(header)
        for block in _data_blocks(layout, seed):
            out.write(block)
    return path


def save_tensors(path: str | Path, state: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
    """Real tensors (torch, or numpy arrays) written by the safetensors library itself."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata) if metadata else None
    first = next(iter(state.values()), None)
    if first is not None and type(first).__module__.startswith("numpy"):
        from safetensors.numpy import save_file as save_numpy

        save_numpy(dict(state), str(path), metadata=meta)
    else:
        from safetensors.torch import save_file as save_torch

        save_torch(dict(state), str(path), metadata=meta)
    return path


def write_torch_pickle(path: str | Path, kind: str = "esrgan", *, wrap: str | None = None,
                       extra: Mapping[str, Any] | None = None, seed: int = 0) -> Path:
    """`kind`'s tensors saved by torch.save (a `.pt`/`.pth` as trainers and upscaler repos ship them):
    under `wrap` when given (A1111 embeddings: "string_to_param" holds {"*": tensor}; BasicSR:
    "params_ema"), plus `extra` plain values (an embedding's "name", "step"). Only tensors, dicts, str
    and int: torch.load(weights_only=True) reads it."""
    import torch
    from safetensors.torch import load as load_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = load_bytes(make_safetensors(kind, payload_bytes=0, seed=seed, metadata={}))
    state: dict[str, Any]
    if wrap == "string_to_param":
        state = {"string_to_param": {"*": next(iter(tensors.values()))}}
    elif wrap:
        state = {wrap: tensors}
    else:
        state = dict(tensors)
    state.update(extra or {})
    torch.save(state, path)
    return path


class _Exploit:
    """Unpickled in full, it runs exec: creates the marker file. The weights-only unpickler refuses it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def write_malicious_pickle(path: str | Path, marker: str | Path, *, torch_zip: bool = True) -> Path:
    """A `.pt`/`.pth` that creates `marker` if anyone fully unpickles it (torch.save's zip, or a raw pickle)."""
    import pickle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model.0.weight": _Exploit(str(marker))}
    if torch_zip:
        import torch

        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


# --------------------------------------------------------------------------- broken files


def truncated(data: bytes, keep: int | None = None) -> bytes:
    """The first `keep` bytes of a file (default: cut in the middle of its header)."""
    if keep is None:
        (length,) = struct.unpack("<Q", data[:8])
        keep = 8 + length // 2
    return data[:keep]


def bad_header_length_bytes(claimed: int = 1 << 40) -> bytes:
    """A length prefix claiming `claimed` header bytes (1 TiB by default), then a tiny header."""
    return struct.pack("<Q", claimed) + b"{}"


def non_json_header_bytes() -> bytes:
    return frame_header(b"{this is not json" + b" " * 7)


def not_an_object_header_bytes() -> bytes:
    return frame_header(b"[1, 2, 3]")


def too_short_bytes() -> bytes:
    """Fewer bytes than the 8-byte length prefix."""
    return b"\x10\x00\x00"
