"""Model files are read only from the volumes: a path from the registry must really lie under one.

The registry refuses links out of its volume, but this service opens whatever path it is handed,
so it checks again where it reads: symlinks followed, the real path must stay under the user-models
volume or the models dir. The real path is what gets loaded, so a link swapped later is not followed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from inference_svc.errors import OutsideModelRoots
from service_kit import get_logger
from service_kit.files import real_path

log = get_logger("inference_svc.model_paths")


class ModelRoots:
    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = tuple(real_path(root) for root in roots)

    def confine(self, path: Path, what: str) -> Path:
        """The real path of `path`, or OutsideModelRoots (the message names only `what`)."""
        real = real_path(path)
        if not any(real.is_relative_to(root) for root in self.roots):
            log.warning("model.outside_roots", model=what, path=str(path), target=str(real))
            raise OutsideModelRoots(f"{what}: its file lies outside the model volumes; it is not loaded",
                                    metadata={"model": what})
        return real
