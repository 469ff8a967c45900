"""Reads a safetensors header and says what the file is: a LoRA (kohya, PEFT or LyCORIS), a checkpoint
(SDXL or not), an embedding or a VAE (see model_types.py), or, from the tensors of a small file, an
upscaler spandrel recognises; for a library scan, also whether we load it, and if not, why.

Detection is by tensor names (and a few shapes), never by file size: tests use
tiny SDXL-shaped models with real key names and small dimensions.

File layout: 8 bytes little-endian header length N, N bytes of JSON
`{name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}`, then data.

Two entry points:
- `read_header` / `inspect_file` / `check_claim`: the registry's checks of a file a client names or
  uploads; a bad file is an InvalidSafetensors / TypeMismatch error for that client.
- `examine_file` / `examine_stream`: a library scan's verdict on any file, which never raises for
  the file's content: what we do not load is a `Verdict` with a `SkipReason`. `.ckpt` and `.bin` are
  decided by name and never opened; `.pt`/`.pth` are read only by torch's weights-only unpickler (an
  embedding, VAE or upscaler is loaded; anything else stays a PICKLE skip); a `.safetensors` name whose
  first bytes are a pickle or a PyTorch zip is refused by those magic bytes alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from metadata_svc import model_types
from metadata_svc.errors import InvalidSafetensors, TypeMismatch, UnsafePickle
from metadata_svc.file_hashes import header_tensor_sha256
from metadata_svc.models import (
    CHECKPOINT,
    EMBEDDING,
    LORA,
    UPSCALER,
    VAE,
    WEIGHTS_ONLY_PICKLE_TYPES,
    Inspection,
)

# The safetensors library refuses headers over 100 MB; real ones are a few MB at most.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# A library scan reads every file's header: a hostile or odd file must not make it read 100 MB
# each. The biggest real headers (merges with embedded configs, kohya tag frequencies) are a few MB.
SCAN_MAX_HEADER_BYTES = 16 * 1024 * 1024
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
# Keys the registry itself adds to header_metadata (facts derived from tensors, not from __metadata__).
LORA_ALGORITHM_KEY = "registry.lora_algorithm"
UNET_IN_CHANNELS_KEY = "registry.unet_in_channels"
UPSCALER_SCALE_KEY = "registry.upscaler_scale"

SAFETENSORS_SUFFIXES = (".safetensors",)
# Pickle-based formats: unpickling runs code, so these are never opened, not even to look inside.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MODEL_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
# The pickle names embeddings and upscalers ship as: a library scan reads these with the weights-only
# unpickler (model_types.load_pickle); .ckpt/.bin (checkpoints, diffusers parts) stay unopened.
WEIGHTS_ONLY_SUFFIXES = (".pt", ".pth")

_KOHYA_PREFIXES = ("lora_unet_", "lora_te1_", "lora_te2_", "lora_te_", "lora_transformer_")
# LyCORIS's own wrapper (not kohya's) names modules `lycoris_<module>`.
_LYCORIS_PREFIX = "lycoris_"
_PEFT_MARKERS = (".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.", ".lora_down.", ".lora_up.", ".lora_linear_layer.")
# LyCORIS algorithms by the tensor names only they write (LoCon writes LoRA's names; see _lora_algorithm).
_ALGORITHM_MARKERS = (
    ("loha", (".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b", ".hada_t1")),
    ("lokr", (".lokr_w1", ".lokr_w2", ".lokr_t2")),
    ("oft", (".oft_blocks", ".oft_diag", ".oft_R")),
    ("ia3", (".on_input",)),
    ("full", (".diff", ".diff_b")),
    ("locon", (".lora_mid",)),
    ("dora", (".dora_scale",)),
)
_KNOWN_ALGORITHMS = frozenset({"lora", "locon", "loha", "lokr", "ia3", "full", "oft", "boft", "dylora",
                               "glora", "diag-oft", "dora"})
# The width of the text conditioning a cross-attention key projects from tells the base model apart
# in real files (our tiny test models use other widths, so this is evidence only when it matches).
_CONTEXT_WIDTH_ARCH = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
_CROSS_ATTN_KEY = re.compile(r"attn2[._]to_k[._](?:lora[._]down|lora_A|lora\.down)[._]weight$")

# Architectures we load: SDXL and its fine-tunes (Illustrious, Pony, ...). A LoRA whose base cannot
# be told from its header is loaded too (the inference service refuses it if it does not fit).
LOADABLE_CHECKPOINT_ARCHS = frozenset({"sdxl"})
LOADABLE_LORA_ARCHS = frozenset({"sdxl", "unknown"})


class SkipReason(StrEnum):
    """Why a library file is not registered as a model (stable codes: they go into protos and the UI)."""

    PICKLE = "pickle_format"  # .ckpt/.pt/.pth/.bin, or pickle/zip bytes under a .safetensors name
    SD1 = "sd1_model"
    SD2 = "sd2_model"
    UNSUPPORTED_ARCHITECTURE = "unsupported_architecture"  # SDXL refiner, Flux, SD3, a UNet alone, ...
    UNKNOWN_TENSORS = "unknown_tensors"  # neither LoRA nor checkpoint names (VAE, embedding, upscaler, ...)
    TRUNCATED = "truncated"  # shorter than its header says (an interrupted download)
    MALFORMED_HEADER = "malformed_header"
    HEADER_TOO_LARGE = "header_too_large"
    NOT_SAFETENSORS = "not_safetensors"  # named .safetensors, but its bytes are something else
    UNREADABLE = "unreadable"  # permission denied, I/O error
    VANISHED = "vanished"  # removed (or renamed) while the scan ran
    # Decided by the library walk, before any content is read:
    NOT_A_MODEL = "not_a_model"  # another extension (.txt, .yaml, .gguf, an orphan image or JSON)
    NOT_A_REGULAR_FILE = "not_a_regular_file"  # FIFO, socket, device
    SYMLINK_OUTSIDE_ROOT = "symlink_outside_root"
    LINKED_FOLDER = "linked_folder"  # a symlinked folder inside the root: walked under its real path
    SYMLINK_LOOP = "symlink_loop"  # a link that never resolves (loop or dangling)
    TOO_DEEP = "too_deep"
    UNDECODABLE_NAME = "undecodable_name"  # not valid UTF-8: it could not be named in the index or a proto


@dataclass(frozen=True)
class Verdict:
    """What a library scan makes of one file."""

    kind: str = ""  # LORA or CHECKPOINT when we load it; "" when skipped
    skip: SkipReason | None = None
    detail: str = ""  # why it is skipped, for people
    inspection: Inspection | None = None  # when a header was read (also for most skipped safetensors)
    lora_algorithm: str = ""  # "lora", "locon", "loha", "lokr", ...; "" for checkpoints
    # The tensor-data sha256 the header claims (sshs_model_hash / modelspec.hash_sha256); untrusted:
    # see file_hashes.header_tensor_sha256.
    header_tensor_sha256: str = ""
    data_offset: int = 0  # 8 + header length: where the tensor data (AutoV3's input) begins

    @property
    def loadable(self) -> bool:
        return self.skip is None


def skipped(reason: SkipReason, detail: str, **fields: Any) -> Verdict:
    return Verdict(skip=reason, detail=detail, **fields)


class _HeaderProblem(Exception):
    """A header we cannot use: the registry turns it into InvalidSafetensors, a scan into a Verdict."""

    def __init__(self, reason: SkipReason, message: str, metadata: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata


# --------------------------------------------------------------------------- the registry's checks


def read_header(path: Path, name: str | None = None) -> dict[str, Any]:
    """The parsed header, or InvalidSafetensors naming what is wrong; errors call the file `name`
    (an upload's .part file is the user's filename to them)."""
    name = name or path.name
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            return _read_header(fh, size, name, MAX_HEADER_BYTES)[0]
        except _HeaderProblem as problem:
            raise InvalidSafetensors(problem.message, metadata=problem.metadata) from None


def check_header_length(length: int, file_size: int | None, name: str) -> None:
    try:
        _check_header_length(length, file_size, name, MAX_HEADER_BYTES)
    except _HeaderProblem as problem:
        raise InvalidSafetensors(problem.message, metadata=problem.metadata) from None


def parse_header(raw: bytes, name: str, *, data_size: int | None) -> dict[str, Any]:
    try:
        return _parse_header(raw, name, data_size=data_size)
    except _HeaderProblem as problem:
        raise InvalidSafetensors(problem.message, metadata=problem.metadata) from None


def _read_header(fh: BinaryIO, size: int, name: str, max_bytes: int) -> tuple[dict[str, Any], int]:
    """(header, its length N); reads at most 8 + min(N, max_bytes) bytes."""
    raw_len = fh.read(8)
    if len(raw_len) < 8:
        raise _HeaderProblem(SkipReason.TRUNCATED, f"{name}: too short to be a safetensors file ({size} bytes)",
                             {"filename": name})
    (length,) = struct.unpack("<Q", raw_len)
    _check_header_length(length, size, name, max_bytes)
    raw = fh.read(length)
    if len(raw) < length:  # the file shrank since its size was taken
        raise _HeaderProblem(SkipReason.TRUNCATED, f"{name}: the file ended inside its safetensors header",
                             {"filename": name, "header_bytes": length})
    return _parse_header(raw, name, data_size=size - 8 - length), length


def _check_header_length(length: int, file_size: int | None, name: str, max_bytes: int) -> None:
    meta = {"filename": name, "header_bytes": length}
    if length > max_bytes:
        raise _HeaderProblem(SkipReason.HEADER_TOO_LARGE, f"{name}: safetensors header of {length} bytes is "
                             f"absurdly large (limit {max_bytes})", meta)
    if length < 2:
        raise _HeaderProblem(SkipReason.MALFORMED_HEADER, f"{name}: safetensors header is empty", meta)
    if file_size is not None and 8 + length > file_size:
        raise _HeaderProblem(SkipReason.TRUNCATED, f"{name}: safetensors header length {length} runs past the "
                             f"end of the file ({file_size} bytes)", meta)


def _parse_header(raw: bytes, name: str, *, data_size: int | None) -> dict[str, Any]:
    meta = {"filename": name}
    malformed = SkipReason.MALFORMED_HEADER
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _HeaderProblem(malformed, f"{name}: safetensors header is not valid JSON ({exc})", meta) from None
    if not isinstance(header, dict):
        raise _HeaderProblem(malformed, f"{name}: safetensors header is not a JSON object", meta)
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict):
                raise _HeaderProblem(malformed, f"{name}: __metadata__ is not an object", meta)
            continue
        if not (isinstance(info, dict) and isinstance(info.get("dtype"), str) and isinstance(info.get("shape"), list)
                and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2):
            raise _HeaderProblem(malformed, f"{name}: tensor {key!r} has no dtype/shape/data_offsets", meta)
        start, end = info["data_offsets"]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise _HeaderProblem(malformed, f"{name}: tensor {key!r} has bad data_offsets", meta)
        if data_size is not None and end > data_size:
            raise _HeaderProblem(SkipReason.TRUNCATED, f"{name}: tensor {key!r} ends past the end of the file", meta)
    return header


def classify(header: Mapping[str, Any]) -> Inspection:
    keys = [k for k in header if k != "__metadata__"]
    metadata = header.get("__metadata__") or {}
    derived: dict[str, str] = {}
    detected, arch, lora_format = "unknown", "unknown", ""

    kohya = any(k.startswith(_KOHYA_PREFIXES) for k in keys)
    lycoris = not kohya and any(k.startswith(_LYCORIS_PREFIX) for k in keys)
    peft = not (kohya or lycoris) and any(any(m in k for m in _PEFT_MARKERS) for k in keys)
    if kohya or lycoris or peft:
        detected, lora_format = LORA, "kohya" if kohya else "lycoris" if lycoris else "peft"
        arch = _lora_architecture(keys, metadata, header)
        algorithm = _lora_algorithm(keys, metadata, header)
        if algorithm != "lora":
            derived[LORA_ALGORITHM_KEY] = algorithm
    elif any(k.startswith("model.diffusion_model.") for k in keys):
        detected = CHECKPOINT
        arch = _checkpoint_architecture(keys, header)
        # Inpainting / instruct models take more than 4 latent input channels.
        conv_in = header.get("model.diffusion_model.input_blocks.0.0.weight")
        if isinstance(conv_in, dict) and len(conv_in.get("shape", [])) == 4 and conv_in["shape"][1] not in (4,):
            derived[UNET_IN_CHANNELS_KEY] = str(conv_in["shape"][1])
    elif (other := model_types.classify_keys(keys, {k: _shape(header, k) for k in keys}, metadata)) is not None:
        detected, arch, facts = other  # an embedding or a VAE
        derived.update(facts)
    kept = {
        str(k): str(v)
        for k, v in metadata.items()
        if (k in KEPT_METADATA_KEYS or str(k).startswith(KEPT_METADATA_PREFIXES))
        and len(str(v)) <= MAX_METADATA_VALUE_CHARS
    }
    # The derived facts first, so the cap (which the index applies again on load) never drops them.
    kept = dict(list(kept.items())[:MAX_METADATA_KEYS - len(derived)]) | derived
    return Inspection(
        format="safetensors",
        detected_type=detected,
        architecture=arch,
        lora_format=lora_format,
        tensor_count=len(keys),
        header_metadata=kept,
    )


def _lora_architecture(keys: list[str], metadata: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    """sdxl, sd15, sd2, flux or unknown: key names first (what the trainer could not get wrong), then
    the trainer's metadata, then the cross-attention width."""
    if any(k.startswith(("lora_te2_", "text_encoder_2.", "lora_unet_input_blocks_", "lora_unet_output_blocks_",
                         "lora_unet_middle_block_")) for k in keys):
        return "sdxl"  # SDXL's second text encoder, or the sgm block names kohya's SDXL trainer writes
    if any(k.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_", "lora_transformer_single_"))
           or "single_transformer_blocks." in k for k in keys):
        return "flux"
    base = str(metadata.get("ss_base_model_version", "")).lower()
    spec = str(metadata.get("modelspec.architecture", "")).lower()
    if "xl" in base or spec.startswith("stable-diffusion-xl"):
        return "sdxl"
    if base.startswith(("sd_v1", "sd_1", "v1")) or spec.startswith("stable-diffusion-v1"):
        return "sd15"
    if (base.startswith(("sd_v2", "sd_2", "v2")) or str(metadata.get("ss_v2", "")).lower() == "true"
            or spec.startswith("stable-diffusion-v2")):
        return "sd2"
    for key in keys:
        if _CROSS_ATTN_KEY.search(key):
            shape = _shape(header, key)
            if len(shape) == 2 and shape[1] in _CONTEXT_WIDTH_ARCH:
                return _CONTEXT_WIDTH_ARCH[shape[1]]
    # SD 1.x/2.x UNets have attention in their first down block, SDXL's has none; kohya's SD 1.x/2.x
    # trainer names diffusers blocks (down_blocks), its SDXL trainer sgm blocks (handled above).
    if any(k.startswith(("lora_unet_down_blocks_0_attentions_", "unet.down_blocks.0.attentions.")) for k in keys):
        return "sd15"
    return "unknown"


def _lora_algorithm(keys: list[str], metadata: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    for algorithm, markers in _ALGORITHM_MARKERS:
        if any(k.endswith(markers) or any(m + "." in k for m in markers) for k in keys):
            return algorithm
    if str(metadata.get("ss_network_module", "")).startswith("lycoris"):
        try:
            args = json.loads(str(metadata.get("ss_network_args", "")))
        except (ValueError, RecursionError):
            args = None
        algo = str(args.get("algo", "")).lower() if isinstance(args, dict) else ""
        if algo in _KNOWN_ALGORITHMS:
            return algo
    # LoCon is LoRA's names on convolutions too: a 4-D down weight with a kernel over 1x1.
    for key in keys:
        if key.endswith((".lora_down.weight", ".lora_A.weight")):
            shape = _shape(header, key)
            if len(shape) == 4 and (shape[2] > 1 or shape[3] > 1):
                return "locon"
    return "lora"


def _shape(header: Mapping[str, Any], key: str) -> list[int]:
    """A tensor's shape when every dimension is an int, else [] (the header comes from the file)."""
    info = header.get(key)
    shape = info.get("shape") if isinstance(info, dict) else None
    if isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        return shape
    return []


def _checkpoint_architecture(keys: list[str], header: Mapping[str, Any]) -> str:
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        # SDXL's second text encoder (OpenCLIP bigG); SD1.x has cond_stage_model instead.
        return "sdxl"
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        return "sdxl-refiner"  # the refiner has only the OpenCLIP encoder
    if header.get("cond_stage_model.model.text_projection") is not None or any(
            k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"  # OpenCLIP ViT-H
    if any(k.startswith("cond_stage_model.") for k in keys):
        return "sd15"
    if any(k.startswith(("model.diffusion_model.double_blocks.", "model.diffusion_model.single_blocks."))
           for k in keys):
        return "flux"
    if any(k.startswith("model.diffusion_model.joint_blocks.") for k in keys):
        return "sd3"
    return "unknown"


def inspect_file(path: Path, name: str | None = None) -> Inspection:
    return classify(read_header(path, name))


def check_claim(inspection: Inspection, claimed: str, filename: str) -> None:
    """Refuse a file whose tensors contradict the claimed type, or a model that is not for SDXL."""
    meta = {"filename": filename, "claimed_type": claimed, "detected_type": inspection.detected_type,
            "architecture": inspection.architecture}
    if inspection.format != "safetensors" and claimed not in WEIGHTS_ONLY_PICKLE_TYPES:
        return  # LoRA and checkpoint pickles are never opened, so there is nothing to check
    detected, arch = inspection.detected_type, inspection.architecture
    if detected == "unknown":
        raise TypeMismatch(f"{filename}: its tensors are none of a LoRA's, checkpoint's, embedding's, VAE's or "
                           f"an upscaler's that spandrel knows (claimed {claimed})", metadata=meta)
    if detected != claimed:
        raise TypeMismatch(f"{filename}: claimed to be {model_types.article(model_types.label_of(claimed))} but its tensors are "
                           f"{model_types.what_it_is(detected, arch)}'s", metadata=meta)
    if claimed == CHECKPOINT and arch != "sdxl":
        raise TypeMismatch(f"{filename}: a {arch} checkpoint, not SDXL "
                           "(no second text encoder, conditioner.embedders.1.*)", metadata=meta)
    if claimed == EMBEDDING and arch != "sdxl":
        raise TypeMismatch(f"{filename}: {model_types.what_it_is(EMBEDDING, arch)} (one vector set"
                           f"{', 768 wide' if arch == 'sd15' else ''}), not SDXL (clip_l and clip_g)", metadata=meta)
    if claimed == VAE and arch in ("sd15", "sd2"):
        raise TypeMismatch(f"{filename}: {model_types.what_it_is(VAE, arch)} (so its header metadata says), "
                           "not SDXL", metadata=meta)


def inspect_claimed(path: Path, fmt: str, claimed: str, name: str | None = None) -> Inspection:
    """The registry's inspection of a new file (Create, Upload, rescan) checked against the claimed type.
    Pickles of embeddings, VAEs and upscalers are read weights-only; other pickles are not opened."""
    name = name or path.name
    if fmt == "safetensors":
        found = inspect_file(path, name)
        if found.detected_type == "unknown" and path.stat().st_size <= model_types.MAX_UPSCALER_BYTES:
            found = _as_upscaler(found, lambda: model_types.safetensors_state(path.read_bytes()))
    elif claimed in WEIGHTS_ONLY_PICKLE_TYPES:
        if path.stat().st_size > model_types.MAX_PICKLE_BYTES:
            raise UnsafePickle(f"{name}: a pickle over {model_types.MAX_PICKLE_BYTES >> 20} MiB is not read; "
                               "use a .safetensors file", metadata={"filename": name})
        found = inspect_pickle(model_types.load_pickle(path, name))
    else:
        found = pickle_inspection()
    check_claim(found, claimed, name)
    return found


def inspect_pickle(obj: Any) -> Inspection:
    """What a weights-only loaded pickle holds (its tensors classified like a safetensors header)."""
    state = model_types.state_dict_of(obj)
    found = dataclasses.replace(classify(model_types.pseudo_header(state)), format="pickle")
    if found.detected_type == "unknown":
        found = _as_upscaler(found, lambda: state)
    return found


def _as_upscaler(found: Inspection, state: Callable[[], Mapping[str, Any]]) -> Inspection:
    """`found` as an upscaler when spandrel recognises the tensors, else unchanged."""
    if found.tensor_count == 0:
        return found
    upscaler = model_types.upscaler_of(state())
    if upscaler is None:
        return found
    arch, scale = upscaler
    return dataclasses.replace(found, detected_type=UPSCALER, architecture=arch.lower(),
                               header_metadata={**found.header_metadata, UPSCALER_SCALE_KEY: str(scale)})


def pickle_inspection() -> Inspection:
    return Inspection(format="pickle", detected_type="unknown", architecture="unknown")


# --------------------------------------------------------------------------- a library scan's verdict


def is_pickle_name(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def is_safetensors_name(name: str) -> bool:
    return name.lower().endswith(SAFETENSORS_SUFFIXES)


def pickle_verdict(name: str) -> Verdict:
    return skipped(SkipReason.PICKLE, f"{name}: a pickle-based file ({Path(name).suffix}); it is never opened, "
                   "since unpickling runs code; convert it to .safetensors", inspection=pickle_inspection())


def examine_file(path: Path, name: str | None = None, *, max_header_bytes: int = SCAN_MAX_HEADER_BYTES) -> Verdict:
    """The verdict on the file at `path`, decided by its name and header; never raises for the file's content
    or for the file going away. The caller confines `path` (see library_scan)."""
    name = name or path.name
    weights_only = is_weights_only_name(name)
    if is_pickle_name(name) and not weights_only:
        return pickle_verdict(name)  # decided before anything is opened
    if not (is_safetensors_name(name) or weights_only):
        return skipped(SkipReason.NOT_A_MODEL, f"{name}: not a model file (.safetensors)")
    try:
        # O_NONBLOCK: a FIFO under a model's name must not hang the scan; fstat below refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return skipped(SkipReason.VANISHED, f"{name}: removed while it was being examined")
    except OSError as exc:
        return skipped(SkipReason.UNREADABLE, f"{name}: cannot be opened ({exc.strerror or exc})")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return skipped(SkipReason.NOT_A_REGULAR_FILE, f"{name}: not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if weights_only:
            return examine_pickle_stream(fh, st.st_size, name)
        return examine_stream(fh, st.st_size, name, max_header_bytes=max_header_bytes)


def examine_stream(fh: BinaryIO, size: int, name: str, *, max_header_bytes: int = SCAN_MAX_HEADER_BYTES) -> Verdict:
    """The verdict on an open `.safetensors` file of `size` bytes at offset 0. Reads at most
    8 + max_header_bytes bytes; read errors become UNREADABLE."""
    try:
        head = fh.read(9)
        fh.seek(0)
        magic = _magic_problem(head, name)
        if magic is not None:
            return magic
        header, length = _read_header(fh, size, name, max_header_bytes)
        verdict = verdict_of(header, name, data_offset=8 + length)
        if verdict.skip == SkipReason.UNKNOWN_TENSORS and size <= model_types.MAX_UPSCALER_BYTES:
            # An upscaler is told by spandrel from the tensors themselves (small files: read whole).
            fh.seek(0)
            data = fh.read()
            assert verdict.inspection is not None
            found = _as_upscaler(verdict.inspection, lambda: model_types.safetensors_state(data))
            if found.detected_type == UPSCALER:
                return Verdict(kind=UPSCALER, inspection=found, data_offset=verdict.data_offset,
                               header_tensor_sha256=verdict.header_tensor_sha256)
    except _HeaderProblem as problem:
        return skipped(problem.reason, problem.message)
    except OSError as exc:
        return skipped(SkipReason.UNREADABLE, f"{name}: read failed ({exc.strerror or exc})")
    except Exception as exc:  # the safetensors library's own errors on a header we accepted
        return skipped(SkipReason.MALFORMED_HEADER, f"{name}: tensors unreadable ({exc})")
    return verdict


def is_weights_only_name(name: str) -> bool:
    return name.lower().endswith(WEIGHTS_ONLY_SUFFIXES)


def examine_pickle_stream(fh: BinaryIO, size: int, name: str) -> Verdict:
    """A library scan's verdict on an open `.pt`/`.pth`: read with the weights-only unpickler only. An
    embedding, VAE or upscaler is loaded; a LoRA or checkpoint pickle stays skipped as before (PICKLE)."""
    if size > model_types.MAX_PICKLE_BYTES:
        return pickle_verdict(name)
    try:
        found = inspect_pickle(model_types.load_pickle(fh, name))
    except UnsafePickle as exc:
        return skipped(SkipReason.PICKLE, exc.message, inspection=pickle_inspection())
    except OSError as exc:
        return skipped(SkipReason.UNREADABLE, f"{name}: read failed ({exc.strerror or exc})")
    if found.detected_type not in WEIGHTS_ONLY_PICKLE_TYPES:
        return pickle_verdict(name)
    return _new_type_verdict(found, name, {"inspection": found})


def _magic_problem(head: bytes, name: str) -> Verdict | None:
    if head.startswith(b"PK\x03\x04"):
        return skipped(SkipReason.PICKLE, f"{name}: a PyTorch zip archive (pickle inside) under a .safetensors "
                       "name; it is never unpickled", inspection=pickle_inspection())
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return skipped(SkipReason.PICKLE, f"{name}: a pickle under a .safetensors name; it is never unpickled",
                       inspection=pickle_inspection())
    if head.startswith(b"GGUF"):
        return skipped(SkipReason.NOT_SAFETENSORS, f"{name}: a GGUF file, not safetensors")
    if len(head) < 9:
        return skipped(SkipReason.TRUNCATED, f"{name}: too short to be a safetensors file ({len(head)} bytes)")
    if head[8:9] != b"{":
        # The format's header is a JSON object that starts right after the length: anything else is not one.
        return skipped(SkipReason.NOT_SAFETENSORS, f"{name}: not a safetensors file (no JSON header after the "
                       "length prefix)")
    return None


def verdict_of(header: Mapping[str, Any], name: str, *, data_offset: int = 0) -> Verdict:
    """Load or skip, from a parsed header (see LOADABLE_*_ARCHS)."""
    found = classify(header)
    common: dict[str, Any] = {"inspection": found, "data_offset": data_offset,
              "header_tensor_sha256": header_tensor_sha256(header.get("__metadata__") or {})}
    arch = found.architecture
    if found.detected_type == LORA:
        algorithm = found.header_metadata.get(LORA_ALGORITHM_KEY, "lora")
        if arch in LOADABLE_LORA_ARCHS:
            return Verdict(kind=LORA, lora_algorithm=algorithm, **common)
        return skipped(_arch_reason(arch), f"{name}: a LoRA for {_ARCH_NAMES.get(arch, arch)}, not SDXL",
                       lora_algorithm=algorithm, **common)
    if found.detected_type == CHECKPOINT:
        if arch in LOADABLE_CHECKPOINT_ARCHS:
            return Verdict(kind=CHECKPOINT, **common)
        what = "of unknown architecture (no text encoder in the file?)" if arch == "unknown" else \
            f"for {_ARCH_NAMES.get(arch, arch)}"
        return skipped(_arch_reason(arch), f"{name}: a checkpoint {what}, not SDXL", **common)
    if found.detected_type in WEIGHTS_ONLY_PICKLE_TYPES:
        return _new_type_verdict(found, name, common)
    return skipped(SkipReason.UNKNOWN_TENSORS, f"{name}: neither LoRA nor checkpoint tensors"
                   f"{_unknown_hint(header)}", **common)


def _new_type_verdict(found: Inspection, name: str, common: dict[str, Any]) -> Verdict:
    """An embedding, VAE or upscaler: loaded unless it is for SD 1.x/2.x (as check_claim refuses)."""
    try:
        check_claim(found, found.detected_type, name)
    except TypeMismatch as exc:
        return skipped(_arch_reason(found.architecture), exc.message, **common)
    return Verdict(kind=found.detected_type, **common)


_ARCH_NAMES = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl-refiner": "the SDXL refiner", "flux": "Flux", "sd3": "SD3",
               "unknown": "an unknown base model"}


def _arch_reason(arch: str) -> SkipReason:
    return {"sd15": SkipReason.SD1, "sd2": SkipReason.SD2}.get(arch, SkipReason.UNSUPPORTED_ARCHITECTURE)


def _unknown_hint(header: Mapping[str, Any]) -> str:
    """What the file probably is, for the person reading the skip list."""
    keys = [k for k in header if k != "__metadata__"]
    if any(k in ("clip_l", "clip_g", "emb_params", "string_to_param") or k.startswith("string_to_param.")
           for k in keys):
        return " (a textual-inversion embedding)"
    if keys and all(k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "first_stage_model."))
                    for k in keys):
        return " (a VAE)"
    if any(k.startswith(("conv_first.", "model.0.", "body.")) for k in keys):
        return " (an upscaler)"
    if any(k.startswith(("double_blocks.", "single_blocks.", "transformer_blocks.", "joint_blocks.")) for k in keys):
        return " (a diffusion transformer: Flux, SD3 or similar)"
    return ""
