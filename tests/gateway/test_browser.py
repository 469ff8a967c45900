"""The whole flow in headless Chromium against the real stack, started as `make demo` does.

`python -m devtools.stack --demo --free-ports` runs the registry, the CivitAI
service, the inference service and the gateway as four processes, with tiny
models; the demo's fake CivitAI runs in this process (`--civitai-base-url`), so
the test can add a LoRA whose transfer stalls. The test clicks through: a
stalled download's live progress → the running-downloads list → Cancel; paste a
URL → preview (with its image) → download → the model is in the table → enable
it in Generate (its weight slider at the recommended weight) → its trigger words
show in the prompt preview → generate → an image; download and switch the
checkpoint; filter and search the table; upload; edit; delete; upscale (before
and after). It saves a screenshot of each tab (paths printed; set
MODELMGR_SCREENSHOT_DIR to choose the folder). With MODELMGR_API_KEY set, a
second gateway on the same services asks for the key as the password.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from gw_helpers import stack_stop_problems

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
    if os.environ.get("CI") == "true":  # CI installs the browser (make browser): missing is a failure there
        pytest.fail(f"browser tests cannot run in CI: {_reason}", pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import Locator, Page, expect, sync_playwright  # noqa: E402

from devtools.fake_civitai.images import CDN_KEY, PREVIEW_SIZE  # noqa: E402

expect.set_options(timeout=LONG)


class DemoStack:
    """`python -m devtools.stack --demo`, with the demo's fake CivitAI run here (so the test can make a
    transfer stall) and handed to the stack with --civitai-base-url."""

    def __init__(self, data_dir: Path) -> None:
        from devtools.fake_civitai import make_safetensors
        from devtools.stack import prepare_demo_files, start_fake_civitai

        self.data_dir = data_dir
        self.lines: list[str] = []
        self.url: str | None = None
        self.fake, examples = start_fake_civitai(prepare_demo_files(data_dir))  # what `make demo` serves
        self.examples = [f"{m.group(1)}|{m.group(2)}" for e in examples
                         if (m := re.match(r"(https://civitai\.com/models/\S+)\s+\((.*)\)", e))]
        # One more LoRA whose transfer stalls after a quarter, on every attempt: live progress, Cancel.
        # (The CivitAI service gives up on a silent transfer after its 60 s read timeout and resumes it,
        # to stall again at a quarter of the rest; the flow cancels it within a few seconds.)
        self.stalled = self.fake.add_lora(name="Stalled Lineart", data=make_safetensors("lora", 4 << 20, seed=7),
                                          trained_words=["lineart"], filename="stalled_lineart.safetensors")
        self.fake.stall(self.stalled.file_id, self.stalled.size // 4, times=1000)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.stack", "--demo", "--free-ports", "--data-dir", str(data_dir),
             "--civitai-base-url", self.fake.base_url],
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

    def services(self) -> dict[str, str]:
        """The services' addresses, from the banner."""
        m = re.search(r"Services:\s+registry (\S+) · civitai (\S+) · inference (\S+)", "\n".join(self.lines))
        assert m, self.lines
        return dict(zip(("registry", "civitai", "inference"), m.groups(), strict=True))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fake.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    s = DemoStack(tmp_path_factory.mktemp("demo"))
    s.wait_ready()
    yield s
    code = s.stop()
    print("\n".join(line for line in s.lines if '"level": "error"' in line or "Traceback" in line)[-4000:])
    problems = stack_stop_problems(s.lines)
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


def natural_size(image: Locator) -> list[int]:
    """The decoded size of an <img> (waits until it has loaded; fails if it cannot be decoded)."""
    return image.evaluate("async e => { await e.decode(); return [e.naturalWidth, e.naturalHeight]; }")


def png_bytes(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def running_downloads(page: Page) -> Locator:
    """The 'Running downloads' accordion (opened)."""
    panel = page.locator(".gr-accordion").filter(has=page.get_by_role("button", name="Cancel download")).last
    if not page.locator("#jobs-table").is_visible():
        page.get_by_text("Running downloads", exact=True).click()
    expect(page.locator("#jobs-table")).to_be_visible()
    return panel


def download_via_ui(page: Page, reference: str, expect_name: str) -> None:
    tab(page, "Model Manager")
    text_input(page, "civitai-ref").fill(reference)
    page.locator("#fetch-info").click()
    expect(page.locator("#civitai-preview")).to_contain_text(expect_name)
    page.locator("#download").click()
    expect(page.locator("#download-status")).to_contain_text("installed as")


def test_whole_flow_in_the_browser(stack: DemoStack, page: Page, shots: Path) -> None:
    assert f"  CivitAI:   {stack.fake.base_url}" in stack.lines  # the stack uses the CivitAI it was given
    # The preview image comes through the gateway's image proxy (which fetches the demo's fake CivitAI's real
    # JPEG, on 127.0.0.1 in the CDN's path shape): the browser itself asks nothing of any other origin.
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    # A download that stalls at a quarter: live progress, then the running-downloads list and Cancel.
    tab(page, "Model Manager")
    text_input(page, "civitai-ref").fill(stack.stalled.url)
    page.locator("#fetch-info").click()
    expect(page.locator("#civitai-preview")).to_contain_text("Stalled Lineart")
    page.locator("#download").click()
    status = page.locator("#download-status")
    quarter = f"({stack.stalled.size // 4 / stack.stalled.size * 100:.0f} %)"
    expect(status).to_contain_text(re.compile(r"Stalled Lineart: running — \S+ MB of \S+ MB " + re.escape(quarter)))
    expect(status.locator(".mm-progress > div")).to_have_attribute("style", re.compile(r"width:\s*2[45]\.\d%"))
    assert stack.fake.bytes_served(stack.stalled.file_id) == stack.stalled.size // 4
    running = running_downloads(page)
    running.get_by_role("button", name="Refresh", exact=True).click()
    jobs = page.locator("#jobs-table")
    expect(jobs).to_contain_text("Stalled Lineart")
    expect(jobs).to_contain_text("running")
    expect(jobs).to_contain_text(quarter.strip("()"))
    expect(running.get_by_label("Running job")).to_have_value(re.compile(r"^Stalled Lineart \(\w+\)$"))
    running.get_by_role("button", name="Cancel download").click()
    expect(running).to_contain_text("Cancelled Stalled Lineart.")
    expect(status).to_contain_text("Stalled Lineart: cancelled")  # the download's own stream ends so
    expect(jobs).to_contain_text("cancelled")
    expect(jobs).not_to_contain_text("running")
    expect(page.locator("#models-table")).not_to_contain_text("stalled_lineart")
    leftovers = list(stack.data_dir.joinpath("user-models").rglob("*stalled_lineart*"))
    for _ in range(600):  # Cancel removes everything; a guard against hanging, not a timing assertion
        if not leftovers:
            break
        time.sleep(0.05)
        leftovers = list(stack.data_dir.joinpath("user-models").rglob("*stalled_lineart*"))
    assert leftovers == []

    # Paste a URL → preview with name, type, base model, trigger words, size, and its preview image.
    watercolor = stack.reference("Watercolor")
    text_input(page, "civitai-ref").fill(watercolor)
    page.locator("#fetch-info").click()
    preview = page.locator("#civitai-preview")
    expect(preview).to_contain_text("Soft Watercolor Style")
    expect(preview).to_contain_text("wtrclr style")
    expect(preview).to_contain_text("Illustrious")
    expect(preview).to_contain_text("LORA")
    expect(preview).to_contain_text("Recommended weight: 0.7")
    preview_image = page.locator("#civitai-image img")
    proxied = re.escape("ui-civitai-images?url=" + quote(f"{stack.fake.base_url}/{CDN_KEY}/", safe=""))
    expect(preview_image).to_have_attribute("src", re.compile(rf"^{proxied}"))
    expect(preview_image).to_have_js_property("complete", True)
    assert natural_size(preview_image) == list(PREVIEW_SIZE)  # decoded, re-encoded, never enlarged
    assert any("/ui-civitai-images?url=" in url for url in requested), requested
    # Download with progress → installed → in the table.
    page.locator("#download").click()
    expect(page.locator("#download-status")).to_contain_text("installed as soft_watercolor_illu_v1.safetensors")
    expect(page.locator("#models-table")).to_contain_text("soft_watercolor_illu_v1.safetensors")
    shot(page, shots, "model-manager")

    # Generate: enable the LoRA, its trigger words show in the final-prompt preview, generate.
    tab(page, "Generate")
    page.locator("#gen-lora-refresh").click()
    checkbox = page.get_by_label("Soft Watercolor Style [Illustrious]").filter(visible=True)
    # Its weight slider starts at the LoRA's recommended weight (0.7 from its description), not 1.
    lora_row = page.locator(".row").filter(has=checkbox).last
    expect(lora_row.get_by_label("number input for weight")).to_have_value("0.7")
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

    # Filter by type, then search (typed: the table follows as you type) by a trigger word.
    table = page.locator("#models-table")
    page.get_by_label("Checkpoints", exact=True).check()
    expect(table).not_to_contain_text("soft_watercolor_illu_v1.safetensors")
    expect(table).to_contain_text("dreamForgeXl_tiny_v20.safetensors")
    expect(page.get_by_text("1 model(s)", exact=True)).to_be_visible()
    page.get_by_label("LoRAs", exact=True).check()
    expect(table).not_to_contain_text("dreamForgeXl_tiny_v20.safetensors")
    expect(table).to_contain_text("soft_watercolor_illu_v1.safetensors")
    page.get_by_label("All", exact=True).check()
    expect(table).to_contain_text("dreamForgeXl_tiny_v20.safetensors")
    expect(page.get_by_text("2 model(s)", exact=True)).to_be_visible()
    text_input(page, "model-search").press_sequentially("wtrclr")
    expect(table).not_to_contain_text("dreamForgeXl_tiny_v20.safetensors")
    expect(table).to_contain_text("soft_watercolor_illu_v1.safetensors")
    text_input(page, "model-search").fill("")
    text_input(page, "model-search").press("Enter")
    expect(table).to_contain_text("dreamForgeXl_tiny_v20.safetensors")
    expect(table).to_contain_text("soft_watercolor_illu_v1.safetensors")

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
    before = page.locator(".block").filter(has=page.get_by_text("Before", exact=True)).locator("img")
    expect(before).to_be_visible()  # shown as soon as the image is chosen
    assert natural_size(before) == [64, 64]
    text_input(page, "up-prompt").fill("sharp details")
    page.locator("#upscale-btn").click()
    expect(page.locator("#up-after img")).to_be_visible()
    assert natural_size(page.locator("#up-after img")) == [128, 128]
    shot(page, shots, "upscale")
    tab(page, "Model Manager")
    shot(page, shots, "model-manager-after")
    outside = [url for url in requested if not url.startswith((stack.url, "data:", "blob:"))]
    assert requested and outside == [], outside  # nothing but the gateway: CivitAI's images come through it


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



def test_the_ui_loads_nothing_from_outside(stack: DemoStack, page: Page) -> None:
    # No fonts, scripts or pixels from a CDN: a self-hosted page tells no third party it was opened.
    ui = page.context.browser.new_page()
    requested: list[str] = []
    ui.on("request", lambda request: requested.append(request.url))
    ui.goto(stack.url + "/")
    expect(ui.locator("#models-table")).to_be_visible(timeout=LONG)
    for name in ("Generate", "Upscale", "Model Manager"):
        tab(ui, name)
    ui.close()
    outside = [url for url in requested if not url.startswith((stack.url, "data:", "blob:"))]
    assert requested and outside == [], outside


def test_a_loras_weight_can_be_changed(stack: DemoStack, page: Page) -> None:
    import httpx

    if not httpx.get(stack.url + "/api/v1/models", params={"type": "lora"}).json()["models"]:  # run alone
        with (stack.data_dir / "fake-civitai" / "detail_tweaker_xl.safetensors").open("rb") as fh:
            httpx.post(stack.url + "/api/v1/models/upload", data={"type": "lora", "recommended_weight": "0.6"},
                       files={"file": ("weight_test.safetensors", fh)}).raise_for_status()
    tab(page, "Generate")
    page.locator("#gen-lora-refresh").click()
    weight = page.get_by_label("number input for weight").filter(visible=True).first
    expect(weight).to_have_value(re.compile(r"^\d"))  # rendered, at its recommended weight
    assert weight.is_enabled(), "the weight slider is disabled"
    weight.fill("1.3")
    weight.press("Enter")
    expect(page.get_by_label("range slider for weight").filter(visible=True).first).to_have_value("1.3")

def test_the_ui_asks_for_the_api_key_when_set(stack: DemoStack, page: Page) -> None:
    """A second gateway on the demo's services, with MODELMGR_API_KEY: the UI is behind a login."""
    import httpx
    from gw_helpers import free_port

    key = "key-" + secrets.token_hex(8)
    address = f"127.0.0.1:{free_port()}"
    services = stack.services()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--listen", address, "--registry", services["registry"],
         "--civitai", services["civitai"], "--inference", services["inference"]],
        cwd=REPO, env={**os.environ, "MODELMGR_API_KEY": key, "MODELMGR_LOG_LEVEL": "WARNING",
                       "PYTHONPATH": str(REPO)})
    url = f"http://{address}"
    context = page.context.browser.new_context()  # no cookies from the other gateway
    try:
        for _ in range(1200):  # a guard against hanging, not a timing assertion
            try:
                httpx.get(url + "/api/v1/health")
                break
            except httpx.HTTPError:
                assert gateway.poll() is None, "the gateway with an API key did not start"
                time.sleep(0.1)
        # Without the UI's cookie: the Gradio routes say 401, the login page is all there is.
        with httpx.Client(base_url=url) as anonymous:
            for path in ("/config", "/gradio_api/info"):
                assert anonymous.get(path).status_code == 401, path
            assert anonymous.post("/gradio_api/queue/join", json={}).status_code == 401
            models = anonymous.get("/api/v1/models", headers={"x-api-key": key}).json()["models"]
        login = context.new_page()
        login.goto(url + "/")
        expect(login.get_by_text("Sign in with any (non-empty) user name and the gateway's API key")).to_be_visible()
        expect(login.get_by_role("tab", name="Model Manager")).to_have_count(0)
        login.get_by_label("username").fill("operator")
        login.get_by_label("password").fill("not-the-key")
        login.get_by_role("button", name="Login").click()
        expect(login.get_by_text("Incorrect Credentials")).to_be_visible()
        login.get_by_label("username").fill("operator")  # Gradio empties it after a failed attempt
        login.get_by_label("password").fill(key)
        login.get_by_role("button", name="Login").click()
        # Signed in: the app, its models table (through the services), and Fetch Info work.
        expect(login.get_by_role("tab", name="Model Manager")).to_be_visible()
        expect(login.get_by_text(f"{len(models)} model(s)", exact=True)).to_be_visible()
        for model in models:
            expect(login.locator("#models-table")).to_contain_text(model["filename"])
        text_input(login, "civitai-ref").fill(stack.reference("Detail Tweaker"))
        login.locator("#fetch-info").click()
        expect(login.locator("#civitai-preview")).to_contain_text("Detail Tweaker XL")
        # The cookie opens the UI's routes, not the HTTP API: that wants the key itself.
        assert context.request.get(url + "/gradio_api/info").status == 200
        assert context.request.get(url + "/api/v1/models").status == 401
    finally:
        context.close()
        gateway.terminate()
        gateway.wait()
