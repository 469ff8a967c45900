"""Upscale's stage one: an upscaler model (ESRGAN family, through spandrel) enlarges the image, or Lanczos.

The model runs over overlapping tiles of the source (UPSCALER_TILE pixels, UPSCALER_OVERLAP of overlap),
blended on a `TileCanvas`, so memory is bounded by the tile, not the image. A model's scale that falls
short of the target is applied again (a 2x model twice for 4x), then a Lanczos resize gives the exact
target size. Files: safetensors, or pickles read only through torch's weights-only unpickler.
spandrel is imported through `service_kit.spandrel_loader` (its torchvision stand-in).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inference_svc.device import DeviceInfo
from inference_svc.errors import JobCancelled, UpscalerLoadFailed, shown_path
from inference_svc.tile_canvas import Tile, TileCanvas, plan_tiles
from service_kit import get_logger

log = get_logger("inference_svc.upscale_models")

UPSCALER_TILE = 256
UPSCALER_OVERLAP = 16

# (tile done 1-based, tile count)
TileFn = Callable[[int, int], None]


@dataclass(frozen=True)
class UpscalerSpec:
    filename: str
    path: Path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UpscalerLoadFailed(
            f"upscaler {shown_path(path)} could not be read (pickles only through the weights-only unpickler): "
            f"{type(exc).__name__}: {exc}"[:600], metadata={"path": shown_path(path)}) from exc
    for key in ("params_ema", "params", "state_dict"):  # Real-ESRGAN / BasicSR wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UpscalerLoadFailed(f"upscaler {shown_path(path)} holds no state dict", metadata={"path": shown_path(path)})
    return state


def load_upscaler(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """spandrel's ImageModelDescriptor for the file, on `device`; UpscalerLoadFailed when spandrel does not know it."""
    from service_kit import spandrel_loader

    state = _read_state(path)
    try:
        descriptor = spandrel_loader.load_descriptor(state)
    except Exception as exc:
        raise UpscalerLoadFailed(f"upscaler {shown_path(path)}: no architecture spandrel knows: {exc}"[:600],
                                 metadata={"path": shown_path(path)}) from exc
    if not isinstance(descriptor, spandrel_loader.ImageModelDescriptor) or descriptor.input_channels != 3:
        raise UpscalerLoadFailed(f"upscaler {shown_path(path)} is not an RGB image-to-image model",
                                 metadata={"path": shown_path(path)})
    descriptor.to(device)
    if dtype == torch.float16 and descriptor.supports_half:
        descriptor.to(torch.float16)
    descriptor.eval()
    return descriptor


def lanczos(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def run_model(descriptor: Any, image: Image.Image, on_tile: TileFn, cancelled: Callable[[], bool],
              tile: int = UPSCALER_TILE, overlap: int = UPSCALER_OVERLAP) -> Image.Image:
    """One application of the model over overlapping tiles: an image `descriptor.scale` times larger."""
    scale = int(descriptor.scale)
    source = np.asarray(image.convert("RGB"))
    height, width = source.shape[:2]
    overlap = min(overlap, tile // 2)
    tiles = plan_tiles(width, height, tile, overlap)
    canvas = TileCanvas(width * scale, height * scale, tile * scale, overlap * scale)
    parameter = next(descriptor.model.parameters())
    for index, t in enumerate(tiles, start=1):
        if cancelled():
            raise JobCancelled("job cancelled by its client")
        crop = source[t.y : t.y + t.height, t.x : t.x + t.width]
        tensor = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None]
        tensor = tensor.to(device=parameter.device, dtype=parameter.dtype) / 255.0
        with torch.inference_mode():
            out = descriptor(tensor)
        pixels = out[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        canvas.add(Tile(t.x * scale, t.y * scale, t.width * scale, t.height * scale), pixels)
        on_tile(index, len(tiles))
    return Image.fromarray(canvas.finish())


def enlarge(descriptor: Any | None, image: Image.Image, size: tuple[int, int], on_tile: TileFn,
            cancelled: Callable[[], bool]) -> Image.Image:
    """`image` at `size`: the model applied until it reaches the size (at least once), then Lanczos."""
    if descriptor is None:
        return lanczos(image, size)
    current = image.convert("RGB")
    while True:
        current = run_model(descriptor, current, on_tile, cancelled)
        if descriptor.scale <= 1 or (current.width >= size[0] and current.height >= size[1]):
            break
    return current if current.size == size else lanczos(current, size)


class UpscalerCache:
    """Loaded upscaler models, the few most recently used."""

    def __init__(self, device: DeviceInfo, max_held: int = 2):
        self.device = device
        self.max_held = max_held
        self._held: OrderedDict[tuple[str, int, int], tuple[str, Any]] = OrderedDict()
        self.loads = 0

    def held(self) -> list[str]:
        return [name for name, _ in reversed(list(self._held.values()))]

    def get(self, spec: UpscalerSpec | None) -> Any | None:
        if spec is None:
            return None
        st = spec.path.stat()
        key = (str(spec.path), st.st_mtime_ns, st.st_size)
        if key in self._held:
            self._held.move_to_end(key)
            return self._held[key][1]
        descriptor = load_upscaler(spec.path, self.device.device, self.device.dtype)
        self.loads += 1
        self._held[key] = (spec.filename, descriptor)
        while len(self._held) > self.max_held:
            self._held.popitem(last=False)
        log.info("upscaler.loaded", upscaler=spec.filename, architecture=descriptor.architecture.name,
                 scale=descriptor.scale)
        return descriptor
