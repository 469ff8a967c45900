"""The torch device: which one, which dtype, which attention, how much memory.

Defaults for the checkpoint cache come from figures, not guesses:

* An SDXL checkpoint is about 6.9 GB in float16 (UNet 5.1, text encoders 1.6,
  VAE 0.2); a 1024x1024 generate needs about 5 GB more for activations and
  the VAE decode. So the device keeps `total - WORKING_RESERVE_BYTES` of
  pipelines: one on a 16 GB card, two on an A10G (24 GB), ten on an H100 (80 GB).
* Parking in host memory turns a cold switch (disk read + build, 15-20 s on
  an A10G, as measured by the app this one replaces) into a host-to-device
  copy (~7 GB at 10-25 GB/s, under a second). Parking uses at most half of
  the host's RAM.
* On the CPU, "device" and "park" are the same memory: one tier of half the RAM
  (an SDXL checkpoint upcast to float32 is ~13.8 GB, so a 32 GB host holds one).
* Before a cold load the cache makes room for the new pipeline (estimated from
  the file's header), so two pipelines never have to fit at once; the ones it
  would evict stay until the load has succeeded when the memory really free
  (`free_memory_bytes`) allows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

GIB = 1024**3
WORKING_RESERVE_BYTES = 8 * GIB


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    dtype: torch.dtype
    attention: str

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def resolve_device(name: str = "auto") -> DeviceInfo:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    # float16 halves memory and doubles throughput on GPUs; CPUs lack fast float16 kernels.
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return DeviceInfo(device=device, dtype=dtype, attention=attention_backend())


def attention_backend() -> str:
    """diffusers uses torch's scaled_dot_product_attention (flash / memory-efficient kernels) when present."""
    return "sdpa" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "eager"


def host_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 16 * GIB


def device_memory_bytes(info: DeviceInfo) -> int:
    if info.is_cuda:
        return torch.cuda.get_device_properties(info.device).total_memory
    return host_memory_bytes()


def default_budgets(info: DeviceInfo, device_bytes: int = 0, park_bytes: int = 0) -> tuple[int, int]:
    """(device cache budget, host park budget) in bytes; explicit settings win over defaults."""
    if info.is_cuda:
        device = device_bytes or max(device_memory_bytes(info) - WORKING_RESERVE_BYTES, 1)
        park = park_bytes or host_memory_bytes() // 2
    else:
        device = device_bytes or host_memory_bytes() // 2
        park = park_bytes or 0  # same memory as the "device": nothing to gain
    return device, max(park, 0)


def available_host_bytes() -> int:
    """MemAvailable: what the host can still give without swapping; 0 when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for row in f:
                if row.startswith("MemAvailable:"):
                    return int(row.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def free_memory_bytes(info: DeviceInfo) -> int:
    """Memory a new pipeline could take now: free device memory plus torch's cached blocks, or the host's."""
    if info.is_cuda:
        free, _ = torch.cuda.mem_get_info(info.device)
        return free + torch.cuda.memory_reserved(info.device) - torch.cuda.memory_allocated(info.device)
    return available_host_bytes()


def memory_allocated(info: DeviceInfo) -> int:
    if info.is_cuda:
        return torch.cuda.memory_allocated(info.device)
    return 0


def empty_cache(info: DeviceInfo) -> None:
    if info.is_cuda:
        torch.cuda.empty_cache()


# What torch's allocators say when they fail with a plain RuntimeError: CUDA ("CUDA out of memory",
# older versions), the CPU on Linux ("DefaultCPUAllocator: can't allocate memory") and Windows
# ("DefaultCPUAllocator: not enough memory").
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in message for m in _OOM_MESSAGES)
