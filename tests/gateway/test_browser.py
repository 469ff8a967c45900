"""The whole flow in headless Chromium against the real stack, started as `make demo` does.

`python -m devtools.stack --demo --free-ports` runs the registry, the CivitAI
service, the inference service and the gateway as four processes, with the fake
CivitAI and tiny models. The test clicks through: paste a URL → preview →
download → the model is in the table → enable it in Generate → its trigger
words show in the prompt preview → generate → an image; download and switch
the checkpoint; upload; edit; delete; upscale. It saves a screenshot of each
tab (paths printed; set MODELMGR_SCREENSHOT_DIR to choose the folder).
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw_helpers import KNOWN_GATEWAY_SIGTERM, stack_stop_problems

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
LONG = 180_000  # ms: a guard against hanging, not a performance assertion


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is not installed (run `make browser`)"
    for module in ("playwright", "metadata_svc.app", "civitai_svc.app", "inference_svc.app",
                   "devtools.fake_civitai"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not available"
        except ModuleNotFoundError:
            return f"{module} is not available"
    return None


if (_reason := _skip_reason()) is not None:
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

expect.set_options(timeout=LONG)


class DemoStack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.url: str | None = None
        self.examples: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.stack", "--demo", "--free-ports", "--data-dir", str(data_dir)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "MODELMGR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)},
        )
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if m := re.search(r"Web UI:\s+(http://\S+?)/?$", line):
                self.url = m.group(1)
            if m := re.match(r"\s+(https://civitai\.com/models/\S+)\s+\((.*)\)", line):
                self.examples.append(f"{m.group(1)}|{m.group(2)}")
            if "Ctrl-C stops everything" in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 240) -> None:
        self._ready.wait(timeout)
        if self.url is None:
            self.stop()
            pytest.fail("the demo stack did not start:\n" + "\n".join(self.lines[-60:]))

    def reference(self, name_part: str) -> str:
        return next(e.split("|")[0] for e in self.examples if name_part in e)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    s = DemoStack(tmp_path_factory.mktemp("demo"))
    s.wait_ready()
    yield s
    code = s.stop()
    print("\n".join(line for line in s.lines if '"level": "error"' in line or "Traceback" in line)[-4000:])
    problems = stack_stop_problems(s.lines)
    if problems == [KNOWN_GATEWAY_SIGTERM]:
        problems, code = [], code - 1  # reported (see gw_helpers); the services must still stop cleanly
    assert problems == [] and code == 0, "the stack did not stop cleanly:\n" + "\n".join(s.lines[-40:])
    for name in ("inference", "civitai", "registry"):
        assert f"{name} stopped (exit code 0)" in s.lines


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("MODELMGR_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(stack: DemoStack) -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(LONG)
        assert stack.url is not None
        pg.goto(stack.url + "/")
        expect(pg.get_by_role("tab", name="Model Manager")).to_be_visible()
        yield pg
        browser.close()


def text_input(page: Page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def shot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def download_via_ui(page: Page, reference: str, expect_name: str) -> None:
    tab(page, "Model Manager")
    text_input(page, "civitai-ref").fill(reference)
    page.locator("#fetch-info").click()
    expect(page.locator("#civitai-preview")).to_contain_text(expect_name)
    page.locator("#download").click()
    expect(page.locator("#download-status")).to_contain_text("installed as")


def test_whole_flow_in_the_browser(stack: DemoStack, page: Page, shots: Path) -> None:
    # Paste a URL → preview with name, type, base model, trigger words, size.
    tab(page, "Model Manager")
    text_input(page, "civitai-ref").fill(stack.reference("Watercolor"))
    page.locator("#fetch-info").click()
    preview = page.locator("#civitai-preview")
    expect(preview).to_contain_text("Soft Watercolor Style")
    expect(preview).to_contain_text("wtrclr style")
    expect(preview).to_contain_text("Illustrious")
    expect(preview).to_contain_text("LORA")
    # Download with progress → installed → in the table.
    page.locator("#download").click()
    expect(page.locator("#download-status")).to_contain_text("installed as soft_watercolor_illu_v1.safetensors")
    expect(page.locator("#models-table")).to_contain_text("soft_watercolor_illu_v1.safetensors")
    shot(page, shots, "model-manager")

    # Generate: enable the LoRA, its trigger words show in the final-prompt preview, generate.
    tab(page, "Generate")
    page.locator("#gen-lora-refresh").click()
    checkbox = page.get_by_label("Soft Watercolor Style [Illustrious]").filter(visible=True)
    checkbox.check()
    text_input(page, "gen-prompt").fill("a lighthouse on a cliff")
    expect(page.locator("#gen-preview")).to_contain_text("wtrclr style")
    expect(page.locator("#gen-preview")).to_contain_text("a lighthouse on a cliff")
    page.locator("#generate-btn").click()
    expect(page.locator("#gen-info")).to_contain_text("Final prompt")
    expect(page.locator("#gen-image img")).to_be_visible()
    expect(page.locator("#gen-info")).to_contain_text("wtrclr style")
    shot(page, shots, "generate")

    # Switch checkpoint: install the tiny checkpoint, make it active, watch it load.
    download_via_ui(page, stack.reference("DreamForge"), "DreamForge XL")
    page.locator("#checkpoint-select input").click()
    page.get_by_role("option", name="dreamForgeXl_tiny_v20.safetensors").click()
    page.locator("#set-active").click()
    expect(page.locator("#checkpoint-status")).to_contain_text("loaded in")
    expect(page.locator("#active-checkpoint")).to_contain_text("dreamForgeXl_tiny_v20.safetensors")

    # Upload a local file with type, display name and trigger words.
    upload_src = stack.data_dir / "upload" / "my_uploaded_lora.safetensors"
    upload_src.parent.mkdir(exist_ok=True)
    shutil.copy(stack.data_dir / "fake-civitai" / "detail_tweaker_xl.safetensors", upload_src)
    page.locator("#upload-file input[type=file]").set_input_files(str(upload_src))
    text_input(page, "upload-name").fill("My Uploaded LoRA")
    text_input(page, "upload-triggers").fill("uploaded-trigger, second")
    time.sleep(0.5)  # let Gradio finish its own upload of the file to the server
    page.locator("#upload-btn").click()
    expect(page.locator("#upload-msg")).to_contain_text("Uploaded my_uploaded_lora.safetensors")
    expect(page.locator("#models-table")).to_contain_text("My Uploaded LoRA")

    # Edit: select its row, rename it, save.
    page.locator("#models-table").get_by_text("my_uploaded_lora.safetensors").first.click()
    expect(text_input(page, "detail-filename")).to_have_value("my_uploaded_lora.safetensors")
    text_input(page, "detail-name").fill("Renamed Upload")
    page.locator("#save-details").click()
    expect(page.locator("#detail-msg")).to_contain_text("Saved")
    expect(page.locator("#models-table")).to_contain_text("Renamed Upload")

    # Delete, with confirmation.
    page.locator("#delete-model").click()
    page.locator("#confirm-delete").click()
    expect(page.locator("#detail-msg")).to_contain_text("Deleted my_uploaded_lora.safetensors")
    expect(page.locator("#models-table")).not_to_contain_text("my_uploaded_lora.safetensors")

    # A readable error, not a traceback.
    text_input(page, "civitai-ref").fill("not a reference at all")
    page.locator("#fetch-info").click()
    expect(preview).to_contain_text("INVALID_REFERENCE")
    expect(preview).not_to_contain_text("Traceback")

    # Upscale: before and after.
    from PIL import Image

    src = stack.data_dir / "upload" / "small.png"
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 90, 160)).save(buf, format="PNG")
    src.write_bytes(buf.getvalue())
    tab(page, "Upscale")
    page.locator("#up-image input[type=file]").set_input_files(str(src))
    text_input(page, "up-prompt").fill("sharp details")
    page.locator("#upscale-btn").click()
    expect(page.locator("#up-after img")).to_be_visible()
    shot(page, shots, "upscale")
    tab(page, "Model Manager")
    shot(page, shots, "model-manager-after")


def test_api_docs_render_without_internet(stack: DemoStack, page: Page, shots: Path) -> None:
    # Self-hosted machines often have no internet: /docs must not need a CDN.
    docs = page.context.browser.new_page()
    requested: list[str] = []
    docs.on("request", lambda request: requested.append(request.url))
    docs.goto(stack.url + "/docs")
    expect(docs.locator(".opblock").first).to_be_visible()
    expect(docs.locator("#swagger-ui")).to_contain_text("/api/v1/models")
    shot(docs, shots, "api-docs")
    docs.close()
    assert requested and all(url.startswith(stack.url) for url in requested), requested
