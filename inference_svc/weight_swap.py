"""Loading a single-file checkpoint's weights into an already built pipeline, in place.

A1111's `load_model_weights` pattern for SDXL fine-tunes: when the new file has
the architecture of a pipeline the cache is about to evict, its modules are
reused instead of built again. Where each file tensor goes (LDM key ->
component parameter, with the fused q/k/v split, the transposed projection and
the VAE's 1x1 convolutions) is planned once per architecture from
`inference_svc.ldm_convert`'s key-level functions; every planned tensor's shape
is checked against the file's header before a byte is copied, so a file that
does not fit is refused while the pipeline is still whole.

Reading: each tensor is read once with `os.preadv` (no mmap: a file truncated
under a mapping kills the process with SIGBUS), straight into the parameter's
memory when it is on the host in the file's dtype, else into a reusable
staging buffer and copied (and cast) from there. On CUDA the staging buffers
are pinned and the copies non-blocking, two buffers in turn, so reading the
next tensor overlaps the transfer of the last.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference_svc.errors import CheckpointLoadFailed, shown_path
from inference_svc.ldm_convert import (
    UNET_PREFIX,
    VAE_PREFIX,
    _unet_prefix_map,
    clip_key_to_ldm,
    open_clip_key_to_ldm,
    unet_key_to_ldm,
    vae_key_to_ldm,
)

# The pipeline's weight components and the LDM prefix of each one's tensors in a single file.
COMPONENT_PREFIXES = {
    "unet": UNET_PREFIX,
    "vae": VAE_PREFIX,
    "text_encoder": "conditioner.embedders.0.",
    "text_encoder_2": "conditioner.embedders.1.",
}

FILE_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}

# (stage, fraction 0..1), as CheckpointLoader reports it.
Progress = Callable[[str, float], None]


def component_of(ldm_key: str) -> str | None:
    for component, prefix in COMPONENT_PREFIXES.items():
        if ldm_key.startswith(prefix):
            return component
    return None


@dataclass(frozen=True)
class Target:
    """One destination of a file tensor: a component's state-dict entry."""

    component: str
    name: str
    # Which third (along dim 0) of a fused q/k/v file tensor this is; None for the whole tensor.
    third: int | None = None
    # The file holds it transposed (open_clip's text projection).
    transposed: bool = False


@dataclass(frozen=True)
class SwapPlan:
    """Where every file tensor goes in a pipeline of one architecture, and the shape the file must hold."""

    targets: dict[str, tuple[Target, ...]]
    file_shapes: dict[str, tuple[int, ...]]

    def mismatch(self, tensors: dict[str, Any]) -> str | None:
        """Why a file with this header cannot be swapped in (a tensor missing, misshapen, not float); None if it can."""
        for key, shape in self.file_shapes.items():
            entry = tensors.get(key)
            if not isinstance(entry, dict):
                return f"{key} is missing"
            if entry.get("dtype") not in FILE_DTYPES:
                return f"{key} has dtype {entry.get('dtype')}"
            got = tuple(int(d) for d in entry.get("shape", ()))
            if got == shape:
                continue
            whole = self.targets[key][0]
            # LDM VAE attention as 1x1 convolutions, or already as linear layers: both load.
            if whole.third is None and not whole.transposed and _squeezed(got) == _squeezed(shape):
                continue
            return f"{key} has shape {list(got)}, the pipeline holds {list(shape)}"
        return None


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _bare_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict the model has without LoRA adapters (PEFT wraps a layer's weights as base_layer)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if ".lora_" in name:
            continue
        out[name.replace(".base_layer.", ".")] = tensor
    return out


def plan_for(pipe: Any) -> SwapPlan:
    """The plan for `pipe`'s architecture, as its bare modules (LoRA adapters removed) are laid out."""
    targets: dict[str, list[Target]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    unet_map = _unet_prefix_map(dict(pipe.unet.config))
    vae_blocks = len(pipe.vae.config.block_out_channels)
    for component in COMPONENT_PREFIXES:
        for name, tensor in _bare_state(getattr(pipe, component)).items():
            third, transposed = None, False
            if component == "unet":
                key: str | None = UNET_PREFIX + unet_key_to_ldm(name, unet_map)
                shape = tuple(tensor.shape)
            elif component == "vae":
                key, conv = vae_key_to_ldm(name, vae_blocks)
                shape = tuple(tensor.shape) + ((1, 1) if conv and tensor.ndim == 2 else ())
            elif component == "text_encoder":
                key, shape = clip_key_to_ldm(name), tuple(tensor.shape)
            else:
                mapped = open_clip_key_to_ldm(name)
                key = mapped[0] if mapped else None
                if mapped:
                    _, third, transposed = mapped
                shape = tuple(tensor.shape)
                if transposed:
                    shape = shape[::-1]
                elif third is not None:
                    shape = (shape[0] * 3, *shape[1:])
            if key is None:
                continue  # not in the file (position ids): the built value stays
            targets.setdefault(key, []).append(Target(component, name, third, transposed))
            shapes[key] = shape
    return SwapPlan({k: tuple(v) for k, v in targets.items()}, shapes)


class StagingBuffers:
    """Two reusable host buffers for tensors that cannot be read straight into their parameter.

    Pinned on CUDA, where copies from them are non-blocking: a buffer is reused only after the copy
    out of it has finished (its event). Kept between swaps: allocating (and faulting in) them again
    would cost as much as a copy.
    """

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self._buffers: list[torch.Tensor | None] = [None, None]
        self._events: list[Any] = [None, None]
        self._turn = 0

    def take(self, nbytes: int) -> torch.Tensor:
        i = self._turn
        self._turn ^= 1 if self.cuda else 0  # on the CPU copies are synchronous: one buffer does
        if self._events[i] is not None:
            self._events[i].synchronize()
            self._events[i] = None
        buf = self._buffers[i]
        if buf is None or buf.numel() < nbytes:
            size = max(nbytes, 16 * 1024 * 1024)
            buf = torch.empty(size, dtype=torch.uint8, pin_memory=self.cuda)
            self._buffers[i] = buf
        self._last = i
        return buf[:nbytes]

    def copied(self) -> None:
        """Mark the buffer last taken as in use by the copy just queued."""
        if self.cuda:
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record()
            self._events[self._last] = event

    def finish(self) -> None:
        if self.cuda:
            torch.cuda.current_stream().synchronize()
            self._events = [None, None]


def _read_exact(fd: int, out: Any, offset: int, path: Path) -> int:
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise CheckpointLoadFailed(
                f"{path.name} is truncated: a tensor ends past the end of the file",
                metadata={"path": shown_path(path), "detail": "truncated"},
            )
        done += n
    return done


def swap_weights(
    pipe: Any,
    plan: SwapPlan,
    path: Path,
    tensors: dict[str, Any],
    header_len: int,
    staging: StagingBuffers,
    *,
    skip: frozenset[str] = frozenset(),
    progress: Progress | None = None,
) -> int:
    """Copy the file's tensors into `pipe`'s parameters, but for the components in `skip`; the bytes read.

    `plan.mismatch(tensors)` must be None. A failure midway leaves `pipe` partly swapped: the caller
    must never serve it (the cache restores or drops it).
    """
    dests = {c: getattr(pipe, c).state_dict(keep_vars=True) for c in COMPONENT_PREFIXES if c not in skip}
    keys = sorted(
        (k for k in plan.targets if component_of(k) in dests), key=lambda k: int(tensors[k]["data_offsets"][0])
    )
    total = sum(int(tensors[k]["data_offsets"][1]) - int(tensors[k]["data_offsets"][0]) for k in keys) or 1
    base = 8 + header_len
    done, reported = 0, 0.0
    fd = os.open(path, os.O_RDONLY)
    try:
        with torch.no_grad():
            for key in keys:
                info = tensors[key]
                start, end = int(info["data_offsets"][0]), int(info["data_offsets"][1])
                dtype = FILE_DTYPES[info["dtype"]]
                shape = tuple(int(d) for d in info["shape"])
                for target in plan.targets[key]:
                    param = dests[target.component][target.name].data
                    if target.third is not None:
                        third = (end - start) // 3
                        lo = start + target.third * third
                        done += _copy_in(fd, path, base + lo, third, dtype, tuple(param.shape), param, staging)
                    elif target.transposed:
                        done += _copy_in(fd, path, base + start, end - start, dtype, shape, param.T, staging)
                    else:
                        done += _copy_in(fd, path, base + start, end - start, dtype, shape,
                                         param.view(shape), staging)
                if progress and done / total - reported >= 0.05:
                    reported = done / total
                    progress("reading", min(reported, 1.0))
        staging.finish()
    finally:
        os.close(fd)
    return done


def _copy_in(fd: int, path: Path, offset: int, nbytes: int, dtype: torch.dtype, shape: tuple[int, ...],
             dest: torch.Tensor, staging: StagingBuffers) -> int:
    if dest.device.type == "cpu" and dest.dtype == dtype and dest.is_contiguous():
        # Straight into the parameter: one pass over the bytes.
        return _read_exact(fd, dest.view(-1).view(torch.uint8).numpy(), offset, path)
    buf = staging.take(nbytes)
    n = _read_exact(fd, buf.numpy(), offset, path)
    dest.copy_(buf.view(dtype).view(shape), non_blocking=staging.cuda)
    staging.copied()
    return n
