"""Helpers shared by the inference tests (a plain module: tests/ is not a package)."""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools.tiny_models import TINY_SIZE

SIZE = TINY_SIZE


def copy_into(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    shutil.copy(src, dst)
    return dst
