"""LoRA adapters on a cached pipeline: load once, then only change weights.

Each LoRA file is loaded as a PEFT adapter (diffusers converts kohya-format
files) the first time a request on that checkpoint names it; later requests
only call `set_adapters` with their weights, which costs milliseconds. A
request without LoRAs disables the adapters, so it runs the bare model.

Merged or unmerged: a job with at least MERGE_MIN_STEPS denoising steps (an
upscale counts every tile's) runs with its set merged into the weights
(`inference_svc.lora_merge`), at the bare model's per-step speed; a set that
repeats stays merged and costs nothing to apply again. Shorter jobs run the
adapters unmerged, since switching sets then costs only `set_adapters`.
MERGE_MIN_STEPS is the measured break-even: restoring and merging a set costs
about as much as the adapters' extra work over that many steps (`make bench`,
`bench_switching`: "LoRA merge + restore vs the unmerged overhead of one step";
on 2 CPU cores, medium model, 256x256, two rank-4 LoRAs: the unmerged step
costs 1.18x the bare one, a restore + merge 0.48 bare steps: break-even at 2.7
steps, hence 3).
The choice depends only on the request, never on what ran before, so a seed
reproduces its image bit for bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from inference_svc.checkpoint_cache import CachedCheckpoint
from inference_svc.device import is_out_of_memory
from inference_svc.errors import LoraIncompatible, LoraNotFound
from inference_svc.lora_merge import MergedLoras
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


# See the module docstring: below this many denoising steps a set runs unmerged.
MERGE_MIN_STEPS = 3


class LoraManager:
    def __init__(self, max_adapters: int = 16, merge_min_steps: int = MERGE_MIN_STEPS):
        self.max_adapters = max_adapters
        self.merge_min_steps = merge_min_steps
        # Sets merged into weights (a set already merged is not counted again), for tests and figures.
        self.merges = 0

    def apply(self, entry: CachedCheckpoint, loras: list[LoraSpec], steps: int | None = None) -> bool:
        """Make exactly `loras` active with their weights for a job of `steps` denoising steps (None: a
        long one); returns True when a file had to be loaded."""
        pipe = entry.pipe
        key = tuple((str(lora.path), float(lora.weight)) for lora in loras)
        merge = bool(loras) and (steps is None or steps >= self.merge_min_steps)
        if entry.merged_loras is None:
            entry.merged_loras = MergedLoras()
        merged = entry.merged_loras
        if merge and merged.key == key:
            for lora in loras:  # already merged: only the adapters' use order changes
                entry.adapters[str(lora.path)] = entry.adapters.pop(str(lora.path))
            return False
        merged.restore()
        loaded_any = False
        names: list[str] = []
        for lora in loras:
            path = str(lora.path)
            name = entry.adapters.pop(path, None)
            if name is None:
                merged.forget()  # new adapter layers: the pristine copies are taken again
                self._evict_for(entry, keep={str(x.path) for x in loras})
                name = self._load(entry, lora)
                loaded_any = True
            entry.adapters[path] = name  # re-inserted: most recently used last
            names.append(name)
        if names:
            pipe.enable_lora()
            pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
            if merge and merged.merge(pipe, names, key):
                pipe.disable_lora()  # the weights hold the set: the wrappers only call their base layer
                self.merges += 1
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
            if entry.merged_loras is not None:
                entry.merged_loras.forget()
            self._forget(entry, entry.adapters.pop(victim))

    @staticmethod
    def _forget(entry: CachedCheckpoint, name: str) -> None:
        present = {n for adapters in entry.pipe.get_list_adapters().values() for n in adapters}
        if name in present:
            entry.pipe.delete_adapters(name)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2])[:400]
