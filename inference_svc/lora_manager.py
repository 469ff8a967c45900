"""LoRA adapters on a cached pipeline: load once, then only change weights.

Each LoRA file is loaded as a PEFT adapter (diffusers converts kohya-format
files) the first time a request on that checkpoint names it; later requests
only call `set_adapters` with their weights, which costs milliseconds. A
request without LoRAs disables the adapters, so it runs the bare model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from inference_svc.checkpoint_cache import CachedCheckpoint
from inference_svc.device import is_out_of_memory
from inference_svc.errors import LoraIncompatible, LoraNotFound
from service_kit import get_logger

log = get_logger("inference_svc.lora_manager")


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to apply, as the registry resolved it."""

    filename: str
    path: Path
    weight: float


def adapter_name(path: Path) -> str:
    """A PEFT-safe adapter name (no dots), stable for a file path."""
    return "lora_" + hashlib.sha1(str(path).encode()).hexdigest()[:16]


class LoraManager:
    def __init__(self, max_adapters: int = 16):
        self.max_adapters = max_adapters

    def apply(self, entry: CachedCheckpoint, loras: list[LoraSpec]) -> bool:
        """Make exactly `loras` active with their weights; returns True when a file had to be loaded."""
        pipe = entry.pipe
        loaded_any = False
        names: list[str] = []
        for lora in loras:
            key = str(lora.path)
            name = entry.adapters.pop(key, None)
            if name is None:
                self._evict_for(entry, keep={str(x.path) for x in loras})
                name = self._load(entry, lora)
                loaded_any = True
            entry.adapters[key] = name  # re-inserted: most recently used last
            names.append(name)
        if names:
            pipe.enable_lora()
            pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
        elif entry.adapters:
            pipe.disable_lora()
        return loaded_any

    def _load(self, entry: CachedCheckpoint, lora: LoraSpec) -> str:
        if not lora.path.is_file():
            raise LoraNotFound(f"LoRA file {lora.path} does not exist", metadata={"lora": lora.filename})
        name = adapter_name(lora.path)
        pipe = entry.pipe
        try:
            pipe.load_lora_weights(str(lora.path), adapter_name=name)
        except Exception as exc:  # shape mismatches (RuntimeError), unknown key layouts (ValueError)...
            self._forget(entry, name)
            if is_out_of_memory(exc):
                raise  # not the file's fault: the engine reports OUT_OF_MEMORY
            raise LoraIncompatible(
                f"LoRA {lora.filename} does not fit checkpoint {entry.name}: {type(exc).__name__}: {_first_line(exc)}",
                metadata={"lora": lora.filename, "checkpoint": entry.name},
            ) from exc
        # diffusers only warns when no key of the file matched a module: nothing would change.
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            self._forget(entry, name)
            raise LoraIncompatible(
                f"LoRA {lora.filename} has no layer that matches checkpoint {entry.name}",
                metadata={"lora": lora.filename, "checkpoint": entry.name},
            )
        log.info("lora.loaded", lora=lora.filename, checkpoint=entry.name, adapter=name)
        return name

    def _evict_for(self, entry: CachedCheckpoint, keep: set[str]) -> None:
        while len(entry.adapters) >= self.max_adapters:
            victim = next((k for k in entry.adapters if k not in keep), None)
            if victim is None:
                return
            self._forget(entry, entry.adapters.pop(victim))

    @staticmethod
    def _forget(entry: CachedCheckpoint, name: str) -> None:
        present = {n for adapters in entry.pipe.get_list_adapters().values() for n in adapters}
        if name in present:
            entry.pipe.delete_adapters(name)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2])[:400]
