"""Files on the volume are read only when their real location is on the volume too.

A symlink `checkpoints/x.safetensors -> /etc/...` (or a linked folder) would otherwise make the
registry hash and inspect, and the inference service load, any file the server can read.
"""

from __future__ import annotations

import os
from pathlib import Path


def real_root(root: Path) -> Path:
    """`root` with its own symlinks resolved: a volume mounted through a link is still the volume."""
    return Path(os.path.realpath(root))


def resolves_inside(path: Path, root: Path) -> bool:
    """Whether `path`, every symlink followed, lies under `root` (a `real_root`). A path that does
    not exist resolves to itself, so a missing file is inside where its name is."""
    try:
        real = os.path.realpath(path, strict=False)
    except (OSError, ValueError):  # a symlink loop on some Pythons, a NUL byte
        return False
    return Path(real).is_relative_to(root)
