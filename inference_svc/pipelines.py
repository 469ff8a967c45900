"""Text to image on a cached pipeline: scheduler choice, seeding, step progress and cancellation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from inference_svc.checkpoint_cache import CachedCheckpoint
from inference_svc.errors import JobCancelled, UnknownScheduler

# Step callback: (step done, total steps).
StepFn = Callable[[int, int], None]

# A1111-style names -> (diffusers scheduler class name, config overrides).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp_2m_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
}


@dataclass(frozen=True)
class GenerateParams:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    scheduler: str = ""


def check_scheduler(name: str) -> None:
    if name and name not in SCHEDULERS:
        raise UnknownScheduler(
            f"unknown scheduler {name!r}; one of {', '.join(SCHEDULERS)}",
            metadata={"scheduler": name},
        )


def set_scheduler(entry: CachedCheckpoint, name: str) -> None:
    """Install the named scheduler, or the checkpoint's own when `name` is empty."""
    import diffusers

    if name:
        class_name, overrides = SCHEDULERS[name]
    else:
        class_name, overrides = entry.scheduler_config["_class_name"], {}
    cls = getattr(diffusers, class_name)
    entry.pipe.scheduler = cls.from_config(entry.scheduler_config, **overrides)


def scheduler_in_use(entry: CachedCheckpoint, name: str) -> str:
    """The SCHEDULERS name of what `set_scheduler(entry, name)` installs: `name`, or for the checkpoint's
    own the entry it matches (the most specific first), "" when none does."""
    if name:
        return name
    config = entry.scheduler_config
    candidates = sorted(SCHEDULERS.items(), key=lambda item: -len(item[1][1]))
    for key, (class_name, overrides) in candidates:
        if config.get("_class_name") == class_name and all(config.get(k) == v for k, v in overrides.items()):
            return key
    return ""


def step_callback(on_step: StepFn, cancelled: Callable[[], bool], total: int) -> Callable[..., dict[str, Any]]:
    """diffusers' callback_on_step_end: report the step, stop the job at once if its client left."""

    def callback(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if cancelled():
            # Raising (rather than pipe._interrupt) also skips the VAE decode.
            raise JobCancelled("job cancelled by its client")
        on_step(step + 1, total)
        return {}

    return callback


def generator_for(seed: int) -> torch.Generator:
    # A CPU generator gives the same noise on every device, so a seed reproduces anywhere.
    return torch.Generator("cpu").manual_seed(seed)


def generate(
    entry: CachedCheckpoint, params: GenerateParams, on_step: StepFn, cancelled: Callable[[], bool]
) -> Image.Image:
    set_scheduler(entry, params.scheduler)
    with torch.inference_mode():
        result = entry.pipe(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt or None,
            width=params.width,
            height=params.height,
            num_inference_steps=params.steps,
            guidance_scale=params.guidance_scale,
            generator=generator_for(params.seed),
            callback_on_step_end=step_callback(on_step, cancelled, params.steps),
            output_type="pil",
        )
    return result.images[0]
