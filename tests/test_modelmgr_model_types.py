"""`modelmgr` as a real process for embeddings, VAEs and upscalers (issue 14), against the real registry and
inference service on 127.0.0.1: list --type, generate --vae, upscale with an upscaler, the USDU options and
regions, and the usage errors of a malformed region or seams fix."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from PIL import Image

import devtools.tiny_models as tiny
import inference_svc.app as inference_app
import inference_svc.config as inference_config
import metadata_svc.app as metadata_app
import metadata_svc.config as metadata_config

REPO = Path(__file__).resolve().parents[1]


async def start(server: object) -> object:
    server = await server if asyncio.iscoroutine(server) else server
    await server.start()  # type: ignore[attr-defined]
    return server


@pytest_asyncio.fixture
async def services(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    tiny.write_tiny_checkpoint(models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors", seed=0)
    # In the volume's own folders before start-up: the registry's scan registers them, told from the files.
    tiny.write_tiny_embedding(user_models / "embeddings" / "shiny.safetensors", seed=1)
    tiny.write_tiny_vae(user_models / "vaes" / "fixvae.safetensors", seed=3)
    tiny.write_tiny_esrgan(user_models / "upscalers" / "tiny_esrgan.safetensors", seed=0, scale=2)
    registry = await start(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    inference = await start(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,  # type: ignore[attr-defined]
        outputs_dir=tmp_path / "outputs", device="cpu")))
    try:
        yield {"registry": registry.address, "inference": inference.address}  # type: ignore[attr-defined]
    finally:
        for server in (inference, registry):
            await server.stop(0)  # type: ignore[attr-defined]


async def cli(services: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelmgr", "--registry", services["registry"], "--inference", services["inference"],
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)})
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_list_generate_and_upscale_with_the_new_types(services: dict[str, str], tmp_path: Path) -> None:
    for kind, name, label in (("embedding", "shiny.safetensors", "Embedding"), ("vae", "fixvae.safetensors", "VAE"),
                              ("upscaler", "tiny_esrgan.safetensors", "Upscaler")):
        code, out = await cli(services, "list", "--type", kind)
        assert code == 0 and name in out and label in out and "1 model(s)" in out, out

    size = str(tiny.TINY_SIZE)
    code, out = await cli(services, "generate", "a cat, shiny", "--width", size, "--height", size, "--steps", "2",
                          "--seed", "3", "--vae", "fixvae.safetensors", "-o", str(tmp_path / "g.png"))
    assert code == 0 and "VAE: fixvae.safetensors · embeddings: shiny.safetensors" in out, out
    code, out = await cli(services, "generate", "x", "--width", size, "--height", size, "--steps", "2",
                          "--vae", "nope.safetensors", "-o", str(tmp_path / "n.png"))
    assert code == 1 and "VAE_NOT_FOUND" in out, out

    source = tmp_path / "small.png"
    Image.linear_gradient("L").resize((tiny.TINY_SIZE, tiny.TINY_SIZE)).convert("RGB").save(source)
    target = tmp_path / "big.png"
    code, out = await cli(services, "upscale", str(source), "-o", str(target), "--prompt", "p", "--steps", "3",
                          "--tile-size", "64", "--seed", "3", "--upscaler", "tiny_esrgan.safetensors", "--scale", "2",
                          "--tile-padding", "8", "--mask-blur", "4", "--seams-fix", "band", "--seams-fix-width", "16",
                          "--region", "0,0,32,32:a red hat", "--region", "32,32,16,16:a: colon")
    assert code == 0 and "upscaler: tiny_esrgan.safetensors" in out, out
    with Image.open(target) as im:
        assert im.size == (2 * tiny.TINY_SIZE, 2 * tiny.TINY_SIZE)
    code, out = await cli(services, "upscale", str(source), "-o", str(tmp_path / "l.png"), "--steps", "3",
                          "--tile-size", "64", "--seams-fix", "half-tile")
    assert code == 0 and "upscaler: Lanczos" in out, out
    code, out = await cli(services, "upscale", str(source), "-o", str(tmp_path / "r.png"), "--steps", "3",
                          "--tile-size", "64", "--region", "60,60,32,32:x")
    assert code == 1 and "INVALID_REGION" in out, out


async def test_malformed_options_are_usage_errors(services: dict[str, str], tmp_path: Path) -> None:
    for bad in (["--region", "1,2,3:x"], ["--region", "1,2,3,4"], ["--region", "a,b,c,d:x"],
                ["--region", "-1,0,8,8:x"], ["--seams-fix", "sideways"]):
        code, out = await cli(services, "upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), *bad)
        assert code == 2 and "usage:" in out, (bad, out)
    code, out = await cli(services, "upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"))
    assert code == 1 and "cannot read" in out and "Traceback" not in out, out
