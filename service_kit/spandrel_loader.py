"""spandrel (upscaler architectures from a bare state dict), importable without torchvision.

Why this module: spandrel 0.4 declares torchvision as a dependency and imports it at start, but only its
LaMa and RestoreFormer architectures use it (`torchvision.transforms.functional`: rotate, normalize,
InterpolationMode). torchvision cannot be installed beside the pinned torch 2.13.0 CPU build (pip would
replace torch with a multi-GB CUDA build), so the Makefile installs spandrel with `--no-deps` and, when
torchvision is missing, this module puts a stand-in `torchvision.transforms.functional` into sys.modules
before spandrel is imported. The stand-in raises if anything in it is actually called: those two
architectures then fail loudly; ESRGAN, SwinIR, DAT, HAT... never touch it. The registry (to recognise an
upscaler) and the inference service (to run one) both import spandrel through here, never directly.
"""

from __future__ import annotations

import enum
import importlib.util
import sys
import types
from typing import Any

_STAND_IN = "modelmanager-stand-in"


def _install_torchvision_stand_in() -> None:
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return  # the real one is there (or already imported): use it

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not installed: this spandrel architecture (LaMa, RestoreFormer) "
                           "needs it; see service_kit/spandrel_loader.py")

    class InterpolationMode(enum.Enum):  # only its members are read at import time
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = missing  # type: ignore[attr-defined]
    functional.normalize = missing  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.transforms = transforms  # type: ignore[attr-defined]
    package.__modelmanager__ = _STAND_IN  # type: ignore[attr-defined]
    for name, module in (("torchvision", package), ("torchvision.transforms", transforms),
                         ("torchvision.transforms.functional", functional)):
        sys.modules[name] = module


_STAND_IN_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
_used_stand_in = False


def uses_stand_in() -> bool:
    return _used_stand_in


def _withdraw_torchvision_stand_in() -> None:
    """spandrel holds what it took from the stand-in; nobody else may find it: diffusers and transformers
    probe `importlib.util.find_spec("torchvision")`, which fails on a module without a spec, and would
    then take torchvision for installed."""
    global _used_stand_in
    for name in _STAND_IN_NAMES:
        module = sys.modules.get(name)
        if getattr(module, "__modelmanager__", "") == _STAND_IN or (
                name != "torchvision" and module is not None and module.__spec__ is None):
            del sys.modules[name]
            _used_stand_in = True


_install_torchvision_stand_in()

import spandrel  # noqa: E402  (after the stand-in, on purpose)

_withdraw_torchvision_stand_in()

ModelLoader = spandrel.ModelLoader
ImageModelDescriptor = spandrel.ImageModelDescriptor
UnsupportedModelError = spandrel.UnsupportedModelError


def load_descriptor(state_dict: dict[str, Any]) -> Any:
    """spandrel's model descriptor for a state dict (architecture, scale, the torch module);
    UnsupportedModelError when no architecture recognises it."""
    return ModelLoader(device="cpu").load_from_state_dict(state_dict)
