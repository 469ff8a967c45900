"""The gallery of 2,000 installed models in Chromium: time until the first screen of thumbnails shows, and
whether a second visit takes them from the browser's cache.

    python -m bench gallery

The registry's index is written directly before it starts (2,000 LoRAs, hard links to one small file, each
with its own WebP thumbnail in the preview store, as SetPreview leaves it); the registry and the gateway
(with the UI and an API key) run as processes on 127.0.0.1, as in tests/gateway/test_browser_library.py.
Figures: from navigation to every card image of the first page decoded (target <= 2 s), cold (browser
cache cleared) and warm; the second visit's thumbnail responses: 200 fetched vs cache hits/304; and the
registry calls each visit made (from the registry's access log), thumbnails apart.
Needs Debian's chromium (/usr/bin/chromium) and Playwright; skipped without them.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = 2_000
TARGET_S = 2.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[1]
LONG_MS = 90_000  # a guard against hanging, not a figure
# The gallery scrolled into view (its images load lazily), then every card image on the screen decoded.
FIRST_SCREEN_SHOWN = """() => {
  const gallery = document.querySelector('#gallery-cards');
  const imgs = [...document.querySelectorAll('#gallery-cards .mm-card img')];
  if (!gallery || imgs.length === 0) return false;
  if (!window.__mmScrolled) { gallery.scrollIntoView(); window.__mmScrolled = true; return false; }
  const onScreen = imgs.filter(i => { const r = i.getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight; });
  return onScreen.length > 0 && onScreen.every(i => i.complete && i.naturalWidth > 0);
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_gallery(user_models: Path, count: int) -> None:
    """`count` LoRAs with thumbnails in the (not yet started) registry's index."""
    from PIL import Image

    from devtools.model_files import write_safetensors
    from metadata_svc.index_store import render
    from metadata_svc.inspection import inspect_file
    from metadata_svc.library import DATA_DIR
    from metadata_svc.models import ModelEntry, PreviewInfo, now_iso
    from metadata_svc.previews import PreviewStore, make_thumbnail
    from service_kit.config import DEFAULT_CHECKPOINT

    loras = user_models / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    template = write_safetensors(user_models / ".template.safetensors", "lora", 0)
    found, size = inspect_file(template), template.stat().st_size
    store = PreviewStore(user_models / DATA_DIR)
    added = now_iso()
    lines = []
    for i in range(count):
        picture = io.BytesIO()
        Image.new("RGB", (320, 448), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(picture, "PNG")
        thumb = make_thumbnail(picture.getvalue())
        sha = f"{i + 1:064x}"
        store.put(sha, thumb)
        name = f"gallery_{i:05d}.safetensors"
        os.link(template, loras / name)
        entry = ModelEntry(filename=name, type="lora", display_name=f"Gallery LoRA {i:05d}", source="civitai",
                           trigger_words=(f"g{i}",), base_model="Illustrious", tags=("style",),
                           file_size_bytes=size, added_at=added, sha256=sha, inspection=found,
                           preview=PreviewInfo(sha256=sha, width=thumb.width, height=thumb.height, source="civitai"))
        lines.append(entry.json_line())
    template.unlink()
    (user_models / ".metadata.json").write_bytes(render(DEFAULT_CHECKPOINT, lines))


def run(root: Path) -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    user_models, models = root / "user-models", root / "models"
    models.mkdir(parents=True)
    started = time.perf_counter()
    seed_gallery(user_models, MODELS)
    print(f"seeded {MODELS} models with thumbnails in {time.perf_counter() - started:.1f} s")
    from devtools.fake_civitai import FakeCivitai

    key = "key-" + secrets.token_hex(8)
    registry, civitai, gateway = (f"127.0.0.1:{_free_port()}" for _ in range(3))
    dead = f"127.0.0.1:{_free_port()}"
    fake = FakeCivitai()  # the page's CivitAI sections ask the CivitAI service; nothing leaves the machine
    url = f"http://{gateway}"
    env = {**os.environ, "MODELMGR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO), "MODELMGR_API_KEY": key}
    py = sys.executable
    # The registry's access log (one "rpc" line a call, on stderr) counts what each visit asked of it.
    access_log = root / "registry.log"
    log_out = access_log.open("wb")
    envs = [{**env, "MODELMGR_LOG_LEVEL": "INFO"}, env, env]
    outs = [log_out, None, None]
    procs = [subprocess.Popen(c, cwd=REPO, env=e, stderr=o) for c, e, o in zip((
        [py, "-m", "metadata_svc", "--listen", registry, "--user-models-dir", str(user_models), "--models-dir",
         str(models), "--civitai", civitai],
        [py, "-m", "civitai_svc", "--listen", civitai, "--registry", registry, "--user-models-dir", str(user_models),
         "--base-url", fake.base_url],
        [py, "-m", "gateway", "--listen", gateway, "--registry", registry, "--civitai", civitai, "--inference", dead],
    ), envs, outs, strict=True)]
    try:
        for _ in range(2400):  # a guard against hanging
            try:
                if httpx.get(url + "/api/v1/models", headers={"x-api-key": key}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a service did not start; the registry's log ends: "
                                   + access_log.read_bytes()[-2000:].decode(errors="replace"))
            time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(LONG_MS)
            page.goto(url + "/")
            page.get_by_label("username").fill("operator")
            page.get_by_label("password").fill(key)
            page.get_by_role("button", name="Login").click()
            try:
                page.wait_for_function(FIRST_SCREEN_SHOWN, timeout=LONG_MS)  # the login's own first load
            except Exception:
                page.screenshot(path=str(REPO / "bench-gallery-timeout.png"))
                print("status:", page.locator("#gallery-status").inner_text(), flush=True)
                raise
            cards = page.evaluate("""() => [...document.querySelectorAll('#gallery-cards .mm-card img')].filter(
              i => { const r = i.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight; }).length""")
            page.close()

            def visit(clear: bool) -> tuple[float, dict[str, int], dict[str, int]]:
                tab = context.new_page()
                tab.set_default_timeout(LONG_MS)
                cdp = context.new_cdp_session(tab)
                cdp.send("Network.enable")
                if clear:
                    cdp.send("Network.clearBrowserCache")
                asked: set[str] = set()
                cached: set[str] = set()
                statuses: dict[str, int] = {}
                cdp.on("Network.requestWillBeSent", lambda e: asked.add(e["requestId"])
                       if "/ui-previews/" in e["request"]["url"] else None)
                cdp.on("Network.requestServedFromCache", lambda e: cached.add(e["requestId"]))

                def received(e: dict) -> None:
                    r = e["response"]
                    if r.get("fromDiskCache") or r.get("fromMemoryCache"):
                        cached.add(e["requestId"])
                    statuses[e["requestId"]] = r["status"]

                cdp.on("Network.responseReceived", received)
                logged = access_log.stat().st_size
                t0 = time.perf_counter()
                tab.goto(url + "/")
                tab.wait_for_function(FIRST_SCREEN_SHOWN, timeout=LONG_MS, polling=16)
                elapsed = time.perf_counter() - t0
                tab.wait_for_timeout(1000)  # late CDP events of the last images, the page's other loads
                counts = {"asked": len(asked), "cache": sum(1 for r in asked if r in cached),
                          "304": sum(1 for r in asked if r not in cached and statuses.get(r) == 304),
                          "200": sum(1 for r in asked if r not in cached and statuses.get(r) == 200)}
                tab.close()
                return elapsed, counts, registry_calls(access_log, logged)

            cold, cold_counts, cold_calls = visit(clear=True)
            warm, warm_counts, warm_calls = visit(clear=False)
            context.close()
            browser.close()
        verdict = "ok" if cold <= TARGET_S else "OVER TARGET"
        print(f"gallery of {MODELS} models, {cards} card thumbnails on the first screen")
        print(f"first screen of thumbnails, cold cache: {cold:.2f} s (target <= {TARGET_S:.0f} s: {verdict}); "
              f"thumbnails: {cold_counts['200']} x 200, {cold_counts['cache']} cache, {cold_counts['304']} x 304")
        print(f"second visit: {warm:.2f} s; thumbnails: {warm_counts['200']} x 200, {warm_counts['cache']} from the "
              f"cache, {warm_counts['304']} x 304 (of {warm_counts['asked']})")
        for label, calls in (("cold", cold_calls), ("second", warm_calls)):
            print(f"registry calls of the {label} visit (thumbnails apart): "
                  + (", ".join(f"{m} x {n}" for m, n in sorted(calls.items())) or "none"))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(60)
        log_out.close()
        fake.close()


def registry_calls(access_log: Path, since: int) -> dict[str, int]:
    """The registry's calls logged after byte `since` of its access log, by method, GetPreview apart."""
    calls: dict[str, int] = {}
    with access_log.open("rb") as fh:
        fh.seek(since)
        for line in fh:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            method = str(event.get("method", "")).rsplit("/", 1)[-1] if event.get("event") == "rpc" else ""
            if method and method != "GetPreview":
                calls[method] = calls.get(method, 0) + 1
    return calls


def main() -> None:
    if not Path(CHROMIUM).exists():
        print(f"skipped: no Chromium at {CHROMIUM}")
        return
    root = Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    try:
        run(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
