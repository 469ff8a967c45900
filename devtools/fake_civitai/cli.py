"""`python -m devtools.fake_civitai`: serve a demo fixture set until interrupted."""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from devtools.fake_civitai.server import FakeCivitai
from devtools.model_files import write_safetensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fake_civitai",
                                     description="A fake CivitAI (API and storage servers) serving demo fixtures.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--storage-port", type=int, default=0)
    parser.add_argument("--token", default=None, help="require this token for downloads")
    parser.add_argument("--dir", type=Path, default=None, help="where the fixture files are written")
    args = parser.parse_args(argv)
    owned = args.dir is None
    folder = Path(tempfile.mkdtemp(prefix="fake-civitai-")) if owned else args.dir
    folder.mkdir(parents=True, exist_ok=True)
    try:
        lora_path = write_safetensors(folder / "soft_watercolor_illu_v1.safetensors", "lora", 256 * 1024, seed=1)
        detail_path = write_safetensors(folder / "detail_tweaker_xl.safetensors", "locon", 128 * 1024, seed=2)
        ckpt_path = write_safetensors(folder / "dreamForgeXl_v20.safetensors", "checkpoint", 8 << 20, seed=3)
        fake = FakeCivitai(token=args.token, host=args.host, port=args.port, storage_port=args.storage_port)
        made = [
            fake.add_lora(name="Soft Watercolor Style [Illustrious]", path=lora_path,
                          trained_words=["wtrclr style", "watercolor"], filename=lora_path.name,
                          model_id=1234567, version_id=2345678),
            fake.add_lora(name="Detail Tweaker XL", path=detail_path, civitai_type="LoCon", trained_words=[],
                          base_model="SDXL 1.0", tags=("detail", "tool"), filename=detail_path.name,
                          description="<p>Use weight 0.5 to 1.5</p>"),
            fake.add_checkpoint(name="DreamForge XL", path=ckpt_path, filename=ckpt_path.name,
                                model_id=456789, version_id=1567890),
        ]
        print(f"fake CivitAI on {fake.base_url} (storage {fake.storage_url}); files in {folder}", flush=True)
        print(f"  export CIVITAI_BASE_URL={fake.base_url}", flush=True)
        for m in made:
            print(f"  {m.name}: model {m.model_id} version {m.version_id} file {m.file_id} -> {m.url}", flush=True)
        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)  # clean up the fixture files on SIGTERM too
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        fake.close()
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
