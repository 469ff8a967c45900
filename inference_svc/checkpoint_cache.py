"""Loaded pipelines, bounded by a memory budget, with a host-memory parking tier.

The most recently used pipelines stay on the device while their weights fit
the device budget. Older ones are parked in host memory when the park budget
allows (switching back is then a host-to-device copy, not a disk read and a
rebuild), or dropped. A load that fails leaves the cache as it was: the file's
header is checked before anything is evicted; pipelines the load would evict
stay until it has succeeded when the memory really free allows; and when the
current one had to be dropped after all, it is loaded again.

In-place switch: when a cold load would drop (not park) the least recently
used pipeline and the new file has its architecture, the file's weights are
loaded into that pipeline's modules instead of building new ones
(`CheckpointLoader.swap`), skipping components whose bytes equal the ones it
holds (`inference_svc.component_digests`). The pipeline leaves the cache
before its first tensor is replaced; if the swap fails, its own file is loaded
back into it the same way, or it is dropped: a half-swapped pipeline is never
served.

On CUDA, parked pipelines live in pinned host memory: switching back is one
non-blocking host-to-device copy (`inference_svc.pinned_memory`).

Not thread-safe on purpose: only the job worker thread mutates it (one GPU
job at a time); `snapshot()` is what other threads read.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference_svc.checkpoint_loader import CheckpointLoader, LoadProgress, pipeline_bytes
from inference_svc.component_digests import ComponentDigests, FileIdentity, file_identity, shared_components
from inference_svc.device import DeviceInfo, empty_cache, free_memory_bytes, is_out_of_memory
from inference_svc.errors import CheckpointNotFound, OutOfMemory, shown_path
from inference_svc.lora_merge import MergedLoras, strip_loras
from inference_svc.pinned_memory import park_pinned, unpark_pinned
from service_kit import get_logger

log = get_logger("inference_svc.checkpoint_cache")


@dataclass
class CachedCheckpoint:
    name: str
    path: Path
    signature: tuple[int, int]
    pipe: Any
    size_bytes: int
    load_seconds: float
    # "device" or "cpu" (parked).
    location: str = "device"
    # The checkpoint's own scheduler config, restored when a request names none.
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    # LoRA path -> adapter name, least recently used first (kept by LoraManager).
    adapters: dict[str, str] = field(default_factory=dict)
    # The LoRA set merged into the weights now, and the pristine copies (kept by LoraManager).
    merged_loras: MergedLoras | None = None
    # Pipelines of one architecture (config folder) take each other's files in place; "": never.
    architecture: str = ""
    # The file version its weights came from: what its component digests are looked up by.
    identity: FileIdentity | None = None
    last_used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Acquired:
    entry: CachedCheckpoint
    # "disk" (cold load), "cpu" (was parked), "device" (already resident).
    loaded_from: str
    seconds: float
    # A cold load into an evicted pipeline's modules, and the bytes it read from the file.
    in_place: bool = False
    bytes_read: int = 0


def _signature(path: Path) -> tuple[int, int]:
    """Changes when the file is replaced, so a stale pipeline is never served."""
    target = path / "model_index.json" if path.is_dir() else path
    try:
        st = target.stat()
    except FileNotFoundError as exc:
        raise CheckpointNotFound(f"checkpoint file {shown_path(path)} does not exist", metadata={"path": shown_path(path)}) from exc
    return st.st_mtime_ns, st.st_size


def _identity(path: Path) -> FileIdentity | None:
    try:
        return None if path.is_dir() else file_identity(path)
    except OSError:
        return None


# Free memory a cold load needs before the cache keeps what it would evict until the load is done:
# the new pipeline, plus a margin for the file's tensors in transit while diffusers builds it.
LOAD_HEADROOM = 1.5


class CheckpointCache:
    def __init__(
        self,
        loader: CheckpointLoader,
        device: DeviceInfo,
        *,
        device_budget: int,
        park_budget: int,
        free_bytes: Callable[[], int] | None = None,
        in_place: bool = True,
        digests: ComponentDigests | None = None,
    ):
        self.loader = loader
        self.device = device
        self.device_budget = device_budget
        self.park_budget = park_budget
        # Memory really free on the device now (tests pass their own to play a full machine).
        self._free_bytes = free_bytes or (lambda: free_memory_bytes(device))
        self._entries: dict[str, CachedCheckpoint] = {}
        self.current: CachedCheckpoint | None = None
        # Pipelines built from disk, restores included.
        self.loads = 0
        # Cold loads into an existing pipeline's modules.
        self.swaps = 0
        self.in_place = in_place
        self.digests = digests or ComponentDigests()

    def snapshot(self) -> list[CachedCheckpoint]:
        return sorted(self._entries.values(), key=lambda e: e.last_used, reverse=True)

    def _bytes(self, location: str) -> int:
        return sum(e.size_bytes for e in self._entries.values() if e.location == location)

    def acquire(self, name: str, path: Path, progress: LoadProgress | None = None) -> Acquired:
        """The pipeline of `path` on the device, loading or unparking it as needed."""
        started = time.perf_counter()
        key = str(path.resolve())
        signature = _signature(path)
        entry = self._entries.get(key)
        if entry is not None and entry.signature != signature:
            log.info("checkpoint.file_changed", checkpoint=name)
            self._drop(entry)
            entry = None
        if entry is not None:
            entry.name = name
            loaded_from = entry.location
            if entry.location == "cpu":
                if progress:
                    progress("moving_to_device", 0.0)
                self._make_room(entry.size_bytes, keep=entry)
                self._move(entry, "device")
                if progress:
                    progress("moving_to_device", 1.0)
            self._touch(entry)
            return Acquired(entry, loaded_from, time.perf_counter() - started)

        # Check the file first (corrupt, truncated, not SDXL, misshapen: nothing is evicted for it), then
        # make room: two pipelines never need to fit the budget at once.
        incoming = self.loader.estimate_bytes(path)
        if self.in_place:
            swapped = self._swap_in(name, path, signature, incoming, progress, started)
            if swapped is not None:
                return swapped
        previous = self.current
        self._make_room_for_load(incoming)
        try:
            entry = self._load(name, path, signature, progress, started)
        except Exception as exc:
            oom = is_out_of_memory(exc)
            if previous is not None and previous.pipe is None:
                # Dropped for this load: free what the failed load built (its frames hold it), then
                # bring the previous one back, so the service is as it was.
                traceback.clear_frames(exc.__traceback__)
                self._restore(previous)
            if oom:
                empty_cache(self.device)
                raise OutOfMemory(f"out of memory loading {name}", metadata={"checkpoint": name}) from exc
            raise
        return Acquired(entry, "disk", entry.load_seconds)

    def _load(
        self, name: str, path: Path, signature: tuple[int, int], progress: LoadProgress | None, started: float
    ) -> CachedCheckpoint:
        pipe = self.loader.load(path, progress)
        seconds = time.perf_counter() - started
        entry = CachedCheckpoint(
            name=name,
            path=path,
            signature=signature,
            pipe=pipe,
            size_bytes=pipeline_bytes(pipe),
            load_seconds=seconds,
            scheduler_config=dict(pipe.scheduler.config),
            architecture=self.loader.architecture(path),
            identity=_identity(path),
        )
        self.loads += 1
        self._entries[str(path.resolve())] = entry
        self._touch(entry)
        self._make_room(0, keep=entry)  # what _make_room_for_load kept goes now
        log.info("checkpoint.loaded", checkpoint=name, seconds=round(seconds, 3), size_bytes=entry.size_bytes)
        self._start_digests(entry)
        return entry

    def _start_digests(self, entry: CachedCheckpoint) -> None:
        if entry.architecture:  # single files only
            self.digests.start(entry.path)

    def _donor(self, path: Path, incoming: int) -> CachedCheckpoint | None:
        """The pipeline a cold load of `path` would drop, when it has the file's architecture."""
        if self._bytes("device") + incoming <= self.device_budget:
            return None  # nothing is evicted
        victims = [e for e in self._entries.values() if e.location == "device"]
        if not victims:
            return None
        victim = min(victims, key=lambda e: e.last_used)
        if self.park_budget > 0 and victim.size_bytes <= self.park_budget:
            return None  # it is parked, not dropped: its weights stay worth keeping
        architecture = self.loader.architecture(path)
        return victim if architecture and victim.architecture == architecture else None

    def _swap_in(
        self, name: str, path: Path, signature: tuple[int, int], incoming: int, progress: LoadProgress | None,
        started: float,
    ) -> Acquired | None:
        """A cold load into the modules of the pipeline it would evict; None when there is none that fits."""
        donor = self._donor(path, incoming)
        if donor is None:
            return None
        prepared = self.loader.prepare_swap(donor.pipe, donor.architecture, path)
        if prepared is None:
            return None  # other shapes: a fresh build
        pipe = donor.pipe
        was_current = donor is self.current
        # Out of the cache before its first tensor changes: never served half-swapped.
        self._forget(donor)
        strip_loras(pipe, donor.merged_loras, bool(donor.adapters))
        resident = self.digests.known(donor.identity) if donor.identity else None
        identity = _identity(path)
        skip = shared_components(resident, self.digests.known(identity) if identity else None)
        try:
            bytes_read = self.loader.swap(pipe, prepared, skip, progress)
        except Exception as exc:
            traceback.clear_frames(exc.__traceback__)
            if not self._swap_back(donor, pipe, was_current):
                # Half swapped: dropped, and the current one loaded again as a failed cold load does.
                donor.pipe = pipe = None
                gc.collect()
                empty_cache(self.device)
                if was_current:
                    self._restore(donor)
            if is_out_of_memory(exc):
                empty_cache(self.device)
                raise OutOfMemory(f"out of memory loading {name}", metadata={"checkpoint": name}) from exc
            raise
        seconds = time.perf_counter() - started
        entry = CachedCheckpoint(
            name=name, path=path, signature=signature, pipe=pipe, size_bytes=pipeline_bytes(pipe),
            load_seconds=seconds, scheduler_config=dict(pipe.scheduler.config), architecture=donor.architecture,
            identity=identity,
        )
        donor.pipe = None
        self.swaps += 1
        self._entries[str(path.resolve())] = entry
        self._touch(entry)
        self._make_room(0, keep=entry)
        log.info("checkpoint.swapped_in", checkpoint=name, replaced=donor.name, seconds=round(seconds, 3),
                 bytes_read=bytes_read, skipped=sorted(skip))
        self._start_digests(entry)
        return Acquired(entry, "disk", seconds, in_place=True, bytes_read=bytes_read)

    def _swap_back(self, donor: CachedCheckpoint, pipe: Any, was_current: bool) -> bool:
        """After a failed swap: the donor's own file back into its modules; False when that failed too."""
        try:
            prepared = None
            if _signature(donor.path) == donor.signature:
                prepared = self.loader.prepare_swap(pipe, donor.architecture, donor.path)
            if prepared is None:
                log.warning("checkpoint.swap_back_impossible", checkpoint=donor.name)
                return False
            self.loader.swap(pipe, prepared)
        except Exception as exc:
            log.warning("checkpoint.swap_back_failed", checkpoint=donor.name, error=str(exc)[:200])
            return False
        donor.adapters = {}
        donor.merged_loras = None
        donor.scheduler_config = dict(pipe.scheduler.config)
        self._entries[str(donor.path.resolve())] = donor
        if was_current:
            self.current = donor
        log.info("checkpoint.swapped_back", checkpoint=donor.name)
        return True

    def _restore(self, entry: CachedCheckpoint) -> None:
        """Load a pipeline dropped for a load that failed again; best effort, the failure is what counts."""
        gc.collect()
        empty_cache(self.device)
        try:
            self._load(entry.name, entry.path, _signature(entry.path), None, time.perf_counter())
        except Exception as exc:
            log.warning("checkpoint.restore_failed", checkpoint=entry.name, error=str(exc)[:200])
            return
        log.info("checkpoint.restored", checkpoint=entry.name)

    def _touch(self, entry: CachedCheckpoint) -> None:
        entry.last_used = time.monotonic()
        self.current = entry

    def _make_room(self, incoming: int, keep: CachedCheckpoint | None) -> None:
        """Evict least recently used device pipelines until `incoming` more bytes fit the budget."""
        while self._bytes("device") + incoming > self.device_budget:
            if not self._evict_one(keep):
                return

    def _make_room_for_load(self, incoming: int) -> None:
        """_make_room for a cold load of `incoming` bytes, keeping what the memory really free allows.

        Pipelines over the budget stay until the load has succeeded (then _load evicts them) while
        the device's free memory covers the load: a load that fails then leaves them as they were.
        Least recently used ones go first when it does not.
        """
        while self._bytes("device") + incoming > self.device_budget:
            if self._free_bytes() >= incoming * LOAD_HEADROOM:
                return
            if not self._evict_one(keep=None):
                return

    def _evict_one(self, keep: CachedCheckpoint | None) -> bool:
        """Park or drop the least recently used device pipeline but `keep`; False when there is none."""
        victims = [e for e in self._entries.values() if e.location == "device" and e is not keep]
        if not victims:
            return False
        victim = min(victims, key=lambda e: e.last_used)
        if self.park_budget > 0 and victim.size_bytes <= self.park_budget:
            self._move(victim, "cpu")
            self._trim_park(keep)
        else:
            self._drop(victim)
        return True

    def _trim_park(self, keep: CachedCheckpoint | None) -> None:
        # `keep` may still be parked: it is the one about to move to the device.
        while self._bytes("cpu") - (keep.size_bytes if keep and keep.location == "cpu" else 0) > self.park_budget:
            parked = [e for e in self._entries.values() if e.location == "cpu" and e is not keep]
            if not parked:
                return
            self._drop(min(parked, key=lambda e: e.last_used))

    def _move(self, entry: CachedCheckpoint, location: str) -> None:
        if self.device.is_cuda:
            # Pinned host memory: the way back is one non-blocking copy at the link's speed.
            (unpark_pinned(entry.pipe, self.device.device) if location == "device" else park_pinned(entry.pipe))
        else:
            target = self.device.device if location == "device" else torch.device("cpu")
            entry.pipe.to(target)
        entry.location = location
        if location == "cpu":
            empty_cache(self.device)
        log.info("checkpoint.moved", checkpoint=entry.name, location=location)

    def _forget(self, entry: CachedCheckpoint) -> None:
        self._entries = {k: v for k, v in self._entries.items() if v is not entry}
        if self.current is entry:
            self.current = None

    def _drop(self, entry: CachedCheckpoint) -> None:
        self._forget(entry)
        entry.pipe = None
        gc.collect()
        empty_cache(self.device)
        log.info("checkpoint.dropped", checkpoint=entry.name)

    def clear(self) -> None:
        for entry in list(self._entries.values()):
            self._drop(entry)

