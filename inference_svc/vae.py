"""Per-request VAEs: a registry VAE swapped onto the loaded pipeline for one job, the pipeline's own put back after.

A VAE file (diffusers naming, or LDM naming with or without `first_stage_model.`) is built into an
AutoencoderKL of the pipeline's VAE config, so a file of another shape is refused before any job uses it,
and kept in memory (the few most recently used, on the device) so the next job that names it swaps in a
module reference, nothing more. The pipeline is never rebuilt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference_svc.checkpoint_cache import CachedCheckpoint
from inference_svc.device import DeviceInfo
from inference_svc.errors import VaeLoadFailed, shown_path
from service_kit import get_logger

log = get_logger("inference_svc.vae")


@dataclass(frozen=True)
class VaeSpec:
    filename: str
    path: Path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


def _to_diffusers(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    if any(k.startswith("encoder.down_blocks.") for k in state):
        return state  # diffusers naming already
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return convert_ldm_vae_checkpoint(state, config)


def build_vae(path: Path, config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    """An AutoencoderKL of `config` holding the file's weights; VaeLoadFailed when they do not fit."""
    from diffusers import AutoencoderKL

    try:
        state = _read_state(path)
        converted = _to_diffusers(state, config)
        vae = AutoencoderKL.from_config(config)
        missing, unexpected = vae.load_state_dict(converted, strict=False)
    except Exception as exc:
        raise VaeLoadFailed(f"VAE {shown_path(path)} could not be loaded: {type(exc).__name__}: {exc}"[:600],
                            metadata={"path": shown_path(path)}) from exc
    if missing:
        raise VaeLoadFailed(
            f"VAE {shown_path(path)} lacks {len(missing)} of the decoder's tensors (e.g. {missing[0]}): not a VAE "
            "of this checkpoint's architecture", metadata={"path": shown_path(path)})
    if unexpected:
        log.info("vae.unexpected_tensors", path=shown_path(path), count=len(unexpected))
    return vae.to(device=device, dtype=dtype).eval()


def _key(path: Path, config: dict[str, Any]) -> tuple[str, int, int, str]:
    st = path.stat()
    shape = repr(sorted((k, v) for k, v in config.items() if not k.startswith("_")))
    return str(path), st.st_mtime_ns, st.st_size, shape


class VaeCache:
    def __init__(self, device: DeviceInfo, max_held: int = 2):
        self.device = device
        self.max_held = max_held
        self._held: OrderedDict[tuple[str, int, int, str], tuple[str, Any]] = OrderedDict()
        self.builds = 0

    def held(self) -> list[str]:
        return [name for name, _ in reversed(list(self._held.values()))]

    def get(self, entry: CachedCheckpoint, spec: VaeSpec) -> Any:
        own = entry.pipe.vae
        config = dict(own.config)
        key = _key(spec.path, config)
        if key in self._held:
            self._held.move_to_end(key)
            return self._held[key][1]
        vae = build_vae(spec.path, config, own.device, own.dtype)
        self.builds += 1
        self._held[key] = (spec.filename, vae)
        while len(self._held) > self.max_held:
            self._held.popitem(last=False)
        log.info("vae.loaded", vae=spec.filename, checkpoint=entry.name)
        return vae

    @contextmanager
    def swapped(self, entry: CachedCheckpoint, spec: VaeSpec | None) -> Iterator[None]:
        """`spec`'s VAE on the pipeline for the block (none: the pipeline's own), its own one back after."""
        if spec is None:
            yield
            return
        pipe = entry.pipe
        vae = self.get(entry, spec)
        own = pipe.vae
        if vae.device != own.device:  # the pipeline moved (parked and back) since this VAE was built
            vae.to(own.device)
        pipe.vae = vae
        try:
            yield
        finally:
            pipe.vae = own
