"""Model files are read only from the model roots: a path from the registry must really lie under one.

The roots are the user-models volume, the models dir, and the library roots the registry indexes in
place (folders of an existing A1111/ComfyUI/... library). The registry refuses links out of its roots,
but this service opens whatever path it is handed, so it checks again where it reads: symlinks
followed, the real path must stay under a root. The real path is what gets loaded, so a link swapped
later is not followed.

The library roots come from the registry (ListLibraryRoots), never from a client: they are asked for
at the first path outside the volumes, kept for LIBRARY_ROOTS_TTL_S, and asked for again before a path
is refused, so a root added a moment ago is honoured without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from inference_svc.errors import OutsideModelRoots
from service_kit import get_logger
from service_kit.files import real_path

log = get_logger("inference_svc.model_paths")

# Long enough that a Generate with several LoRAs asks the registry once; short enough that a root
# removed from the registry stops being loadable soon after.
LIBRARY_ROOTS_TTL_S = 5.0

LibraryRootsSource = Callable[[], Awaitable[Iterable[str]]]


def _inside(real: Path, roots: Iterable[Path]) -> bool:
    return any(real.is_relative_to(root) for root in roots)


class LibraryRoots:
    """The registry's library roots (real paths), cached for `ttl_s`."""

    def __init__(self, source: LibraryRootsSource, *, ttl_s: float = LIBRARY_ROOTS_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._clock = clock
        self._roots: tuple[Path, ...] = ()
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> tuple[Path, ...]:
        """The cached roots, or fresh ones when the cache is empty or old."""
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl_s:
            return await self.refresh()
        return self._roots

    async def refresh(self, *, newer_than: float | None = None) -> tuple[Path, ...]:
        """Ask the registry again; with `newer_than`, not when a fetch since then already did."""
        async with self._lock:  # concurrent misses share one call
            if newer_than is not None and self._fetched_at is not None and self._fetched_at > newer_than:
                return self._roots
            started = self._clock()
            paths = await self._source()
            roots = []
            for path in paths:
                # An empty or relative path would resolve against this process's cwd: not a root.
                if not path or not Path(path).is_absolute():
                    log.warning("library_root.ignored", path=path)
                    continue
                roots.append(real_path(Path(path)))
            self._roots, self._fetched_at = tuple(roots), started
            return self._roots

    @property
    def fetched_at(self) -> float | None:
        return self._fetched_at


class ModelRoots:
    def __init__(self, roots: Iterable[Path], library: LibraryRoots | None = None) -> None:
        self.roots = tuple(real_path(root) for root in roots)
        self.library = library

    async def confine(self, path: Path, what: str) -> Path:
        """The real path of `path`, or OutsideModelRoots (the message names only `what`)."""
        real = real_path(path)
        if _inside(real, self.roots):
            return real
        if self.library is not None:
            checked_at = self.library.fetched_at
            if _inside(real, await self.library.current()):
                return real
            # A miss may be a root added since the cache was filled: ask once more before refusing.
            if checked_at is not None and _inside(real, await self.library.refresh(newer_than=checked_at)):
                return real
        log.warning("model.outside_roots", model=what, path=str(path), target=str(real))
        raise OutsideModelRoots(f"{what}: its file lies outside the model volumes and library roots; it is not loaded",
                                metadata={"model": what})
