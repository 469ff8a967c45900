"""A LoRA set merged into a pipeline's weights, and restored exactly from kept pristine copies.

Merged, a denoising step costs what the bare model's does: no low-rank matmuls,
and the PEFT wrappers are disabled (they only call their base layer). Each
merged layer's weight becomes `(pristine + sum of the set's deltas)` computed
in float32 from the adapters PEFT loaded (their scaling holds the request's
weights, as `set_adapters` set them), rounded once to the weight's dtype.
Restoring copies the pristine weight back, bit for bit: never by subtracting
the deltas, which drifts a little with every merge and unmerge.

The pristine copy of a layer is taken the first time it is merged, on the host
(pinned on CUDA: restoring is one non-blocking copy back), and kept while the
adapters' layout stays the same, so switching sets costs one copy back plus
the new deltas. Layers PEFT cannot give a plain delta for (DoRA, a LoRA bias)
make the set stay unmerged.
"""

from __future__ import annotations

from typing import Any

import torch

LORA_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


def _lora_layers(pipe: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    layers: list[Any] = []
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if isinstance(model, torch.nn.Module):
            layers.extend(m for m in model.modules() if isinstance(m, LoraLayer))
    return layers


def _mergeable(layer: Any, name: str) -> bool:
    if layer.use_dora.get(name, False):
        return False
    return not getattr(layer, "lora_bias", {}).get(name, False)


def _delta(layer: Any, name: str) -> torch.Tensor:
    """The adapter's change to the base weight, in float32, with its current scaling."""
    a, b = layer.lora_A[name], layer.lora_B[name]
    if isinstance(a, torch.nn.Linear) and isinstance(b, torch.nn.Linear) and not getattr(layer, "fan_in_fan_out", False):
        delta: torch.Tensor = (b.weight.float() @ a.weight.float()) * layer.scaling[name]
        return delta
    delta = layer.get_delta_weight(name).float()  # convolutions and other layer kinds: PEFT's own formula
    return delta


class MergedLoras:
    """Which set (if any) is merged into a pipeline now, and the pristine weights to restore."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self._pristine: dict[Any, torch.Tensor] = {}
        self._changed: list[Any] = []

    @property
    def merged(self) -> bool:
        return self.key is not None

    def merge(self, pipe: Any, names: list[str], key: tuple[Any, ...]) -> bool:
        """Merge the active adapters `names` (scaled as set_adapters left them); False, nothing changed, when
        a layer cannot be merged. The weights must be pristine (call `restore` first)."""
        assert not self.merged, "restore before merging another set"
        plan = []
        for layer in _lora_layers(pipe):
            active = [n for n in names if n in layer.lora_A and layer.scaling.get(n, 0) != 0]
            if not active:
                continue
            if not all(_mergeable(layer, n) for n in active):
                return False
            plan.append((layer, active))
        cuda = False
        with torch.no_grad():
            for layer, active in plan:
                weight = layer.get_base_layer().weight
                if layer not in self._pristine:
                    self._pristine[layer] = _host_copy(weight)
                delta = _delta(layer, active[0])
                for name in active[1:]:
                    delta += _delta(layer, name)
                weight.copy_((weight.float() + delta.reshape(weight.shape)).to(weight.dtype))
                self._changed.append(layer)
                cuda = cuda or weight.is_cuda
        if cuda:
            torch.cuda.synchronize()
        self.key = key
        return True

    def restore(self) -> None:
        """Back to the pristine weights, bit for bit."""
        cuda = False
        with torch.no_grad():
            for layer in self._changed:
                weight = layer.get_base_layer().weight
                weight.copy_(self._pristine[layer], non_blocking=weight.is_cuda)
                cuda = cuda or weight.is_cuda
        if cuda:
            torch.cuda.synchronize()
        self._changed = []
        self.key = None

    def forget(self) -> None:
        """Drop the pristine copies (the weights must be pristine): adapters were loaded or removed, or the
        pipeline's weights are about to be replaced."""
        self.restore()
        self._pristine = {}


def _host_copy(weight: torch.Tensor) -> torch.Tensor:
    if weight.is_cuda:
        host = torch.empty(weight.shape, dtype=weight.dtype, pin_memory=True)
        host.copy_(weight)
        return host
    return weight.detach().clone()


def strip_loras(pipe: Any, merged: MergedLoras | None, has_adapters: bool) -> None:
    """The bare pipeline back: merged weights restored, adapters removed (before its weights are replaced)."""
    if merged is not None:
        merged.forget()
    if has_adapters:
        pipe.unload_lora_weights()
