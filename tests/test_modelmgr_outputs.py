"""`modelmgr outputs` as a real process against the real registry and inference service on 127.0.0.1:
list (newest first, --limit), get ID -o FILE (the saved PNG, byte for byte, its parameters printed),
delete ID, and the service's reasons for ids that are not outputs."""

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


async def start(server_or_coro: object) -> object:
    server = await server_or_coro if asyncio.iscoroutine(server_or_coro) else server_or_coro
    await server.start()  # type: ignore[attr-defined]
    return server


@pytest_asyncio.fixture
async def services(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    user_models, models = tmp_path / "user-models", tmp_path / "models"
    user_models.mkdir()
    base = models / "illustrious-xl" / "Illustrious-XL-v0.1.safetensors"
    base.parent.mkdir(parents=True)
    tiny.write_tiny_checkpoint(base, seed=0)
    registry = await start(metadata_app.create_server(metadata_config.RegistrySettings(
        listen="127.0.0.1:0", user_models_dir=user_models, models_dir=models)))
    inference = await start(inference_app.create_server(inference_config.InferenceSettings(
        listen="127.0.0.1:0", registry=registry.address, models_dir=models, user_models_dir=user_models,
        device="cpu")))
    try:
        yield {"registry": registry.address, "inference": inference.address,  # type: ignore[attr-defined]
               "outputs": str(tmp_path / "outputs")}
    finally:
        for server in (inference, registry):
            await server.stop(0)  # type: ignore[attr-defined]


async def cli(services: dict[str, str], *args: str, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelmgr", "--registry", services["registry"], "--inference", services["inference"],
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)})
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_outputs_list_get_delete(services: dict[str, str], tmp_path: Path) -> None:
    code, out = await cli(services, "outputs")
    assert code == 0 and "0 output(s)" in out, out
    for seed, prompt in ((3, "a [bold]castle[/bold]"), (4, "a quiet lake")):
        code, out = await cli(services, "generate", prompt, "--width", "64", "--height", "64", "--steps", "2",
                              "--seed", str(seed), "-o", str(tmp_path / f"g{seed}.png"))
        assert code == 0, out
    saved = sorted(p.stem for p in await asyncio.to_thread(lambda: list(Path(services["outputs"]).glob("*.png"))))
    assert len(saved) == 2
    older, newer = saved

    code, out = await cli(services, "outputs")
    assert code == 0 and "2 output(s)" in out, out
    assert out.index(newer) < out.index(older)  # newest first
    assert "a [bold]castle[/bold]" in out  # a prompt is text, not rich markup
    code, out = await cli(services, "outputs", "--limit", "1")
    assert code == 0 and "1 output(s)" in out and newer in out and older not in out, out

    target = tmp_path / "got.png"
    code, out = await cli(services, "outputs", "get", older, "-o", str(target))
    assert code == 0, out
    assert target.read_bytes() == (Path(services["outputs"]) / f"{older}.png").read_bytes()
    assert target.read_bytes() == (tmp_path / "g3.png").read_bytes()
    with Image.open(target) as im:
        assert im.info["parameters"].startswith("a [bold]castle[/bold]\nSteps: 2")
    assert "prompt       a [bold]castle[/bold]" in out and "seed 3" in out and "illustrious-xl" in out
    code, out = await cli(services, "outputs", "get", newer, cwd=tmp_path)  # default file: ID.png here
    assert code == 0 and (tmp_path / f"{newer}.png").is_file(), out

    code, out = await cli(services, "outputs", "delete", older)
    assert code == 0 and f"deleted output {older}" in out, out
    code, out = await cli(services, "outputs")
    assert "1 output(s)" in out and older not in out
    code, out = await cli(services, "outputs", "delete", older)
    assert code == 1 and "error: NOT_FOUND / OUTPUT_NOT_FOUND" in out, out
    code, out = await cli(services, "outputs", "get", "../../etc/passwd", "-o", str(tmp_path / "x.png"))
    assert code == 1 and "error: INVALID_ARGUMENT / INVALID_OUTPUT_ID" in out and not (tmp_path / "x.png").exists()
    assert "Traceback" not in out
