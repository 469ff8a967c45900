"""What the single-file loader would otherwise download: component configs and tokenizer files.

Two sources, one rule:

* `SDXL_CONFIG_DIR` (`sdxl/`), shipped: SDXL base's model_index.json, the
  unet/vae/text encoder/scheduler configs and both CLIP tokenizers. Every real
  checkpoint (Illustrious, NoobAI, Pony, ... all SDXL base shapes) uses it.
* A checkpoint may carry its own component configs in its safetensors header
  metadata under `EMBEDDED_CONFIG_KEY` (a JSON object: relative path -> file
  text). The tiny test models do this, so a tiny checkpoint stays one
  self-contained file when uploaded, downloaded or copied. Only config and
  tokenizer files are accepted (see `_ALLOWED`), never weights or code.

Either way, the loader calls diffusers' `from_single_file(config=<folder>)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

SDXL_CONFIG_DIR = Path(__file__).parent / "sdxl"
EMBEDDED_CONFIG_KEY = "modelmanager.diffusers_config"

_COMPONENTS = "unet|vae|text_encoder|text_encoder_2|scheduler|tokenizer|tokenizer_2"
_ALLOWED = re.compile(rf"^(model_index\.json|({_COMPONENTS})/[a-z_]+\.(json|txt))$")


class EmbeddedConfigError(ValueError):
    """The checkpoint's embedded config block is malformed."""


def embedded_config_text(files: dict[str, str]) -> str:
    """The metadata value for a set of config files (what the tiny builder writes)."""
    for rel in files:
        if not _ALLOWED.match(rel):
            raise EmbeddedConfigError(f"not a config file path: {rel!r}")
    return json.dumps(files, sort_keys=True, ensure_ascii=False)


def materialize_embedded_config(text: str, cache_root: Path | None = None) -> Path:
    """Write an embedded config block to a folder (once per distinct content) and return it."""
    try:
        files = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmbeddedConfigError(f"embedded config is not JSON: {exc}") from exc
    if not isinstance(files, dict) or "model_index.json" not in files:
        raise EmbeddedConfigError("embedded config lacks model_index.json")
    for rel, body in files.items():
        if not isinstance(body, str) or not _ALLOWED.match(rel):
            raise EmbeddedConfigError(f"not a config file path: {rel!r}")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    root = (cache_root or Path(tempfile.gettempdir()) / "modelmanager-inference-configs") / digest
    if (root / ".complete").exists():
        return root
    # Build in a private folder, then rename: concurrent loaders never see half a folder.
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root.parent))
    for rel, body in files.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    (staging / ".complete").touch()
    try:
        os.rename(staging, root)
    except OSError:
        # Another loader won the race; its folder has the same content.
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return root
