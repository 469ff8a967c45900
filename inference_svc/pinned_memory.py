"""Parking a CUDA pipeline in pinned (page-locked) host memory, and bringing it back.

`pipe.to("cpu")` lands in pageable memory: the copy back then goes through a
driver bounce buffer at a fraction of the link's speed, synchronously. Pinned
tensors copy back by DMA, non-blocking, all queued at once: switching to a
parked pipeline is one host-to-device copy. CUDA only; the cache calls these
only when its device is a CUDA one.
"""

from __future__ import annotations

from typing import Any

import torch


def _modules(pipe: Any) -> list[torch.nn.Module]:
    return [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]


def _to_pinned(t: torch.Tensor) -> torch.Tensor:
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host


def park_pinned(pipe: Any) -> None:
    """Every weight of `pipe` into pinned host memory (device memory is freed as the copies finish)."""
    with torch.no_grad():
        for module in _modules(pipe):
            module._apply(_to_pinned)  # type: ignore[no-untyped-call]  # what .to() uses
    torch.cuda.synchronize()


def unpark_pinned(pipe: Any, device: torch.device) -> None:
    """Every weight of a parked `pipe` back to `device`, the copies queued non-blocking, then awaited."""
    with torch.no_grad():
        for module in _modules(pipe):
            module._apply(lambda t: t.to(device, non_blocking=True))  # type: ignore[no-untyped-call]
    torch.cuda.synchronize()
