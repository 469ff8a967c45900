"""The outputs history in headless Chromium against the demo stack (`make demo`'s processes, tiny models):
generate with a LoRA at a chosen weight → the result is in the Generate tab's history → open it (image,
parameters) → download it → reuse its parameters (prompt, seed, LoRA checkbox and weight back in the form)
→ send it to Upscale and upscale it → both results in the Upscale tab's history → delete one. A screenshot
of each view goes under the pytest tmp dir (or MODELMGR_SCREENSHOT_DIR); any Gradio error toast fails it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw_helpers import stack_stop_problems
from test_browser import CHROMIUM, CHROMIUM_ARGS, LONG, DemoStack, natural_size, tab, text_input

pytestmark = pytest.mark.browser

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

expect.set_options(timeout=LONG)
LORA_NAME = "Outputs Test LoRA"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    s = DemoStack(tmp_path_factory.mktemp("demo-outputs"))
    s.wait_ready()
    yield s
    code = s.stop()
    problems = stack_stop_problems(s.lines)
    assert problems == [] and code == 0, "the stack did not stop cleanly:\n" + "\n".join(s.lines[-40:])


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("MODELMGR_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def no_error_toast(page: Page) -> None:
    toasts = page.locator(".toast-body.error")
    assert toasts.count() == 0, "a Gradio error toast: " + " | ".join(toasts.all_inner_texts())


def shot(page: Page, folder: Path, name: str) -> None:
    no_error_toast(page)
    path = folder / f"ui-outputs-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_history_open_download_reuse_upscale_delete(stack: DemoStack, shots: Path, tmp_path: Path) -> None:
    import httpx

    assert stack.url is not None
    with (stack.data_dir / "fake-civitai" / "detail_tweaker_xl.safetensors").open("rb") as fh:
        httpx.post(stack.url + "/api/v1/models/upload", data={"type": "lora", "display_name": LORA_NAME},
                   files={"file": ("outputs_test_lora.safetensors", fh)}).raise_for_status()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(LONG)
        page.goto(stack.url + "/")
        tab(page, "Generate")
        expect(page.locator("#gen-history-status")).to_contain_text("No outputs yet")

        # Generate with the LoRA at 1.3 and a fixed seed.
        checkbox = page.get_by_label(LORA_NAME).filter(visible=True)
        row = page.locator(".row").filter(has=checkbox).last
        checkbox.check()
        weight = row.get_by_label("number input for weight")
        weight.fill("1.3")
        weight.press("Enter")
        page.get_by_text("Settings", exact=True).click()
        text_input(page, "gen-seed").fill("11")
        text_input(page, "gen-prompt").fill("a red fox in snow")
        page.locator("#generate-btn").click()
        expect(page.locator("#gen-info")).to_contain_text("Seed 11")

        # The history follows the job: one thumbnail, shown through the UI's own file route.
        thumbs = page.locator("#gen-history-gallery img")
        expect(thumbs).to_have_count(1)
        expect(page.locator("#gen-history-status")).to_contain_text("Page 1: 1 output(s)")
        assert natural_size(thumbs.first)[0] > 0
        shot(page, shots, "history")

        # Open it: the full image and its parameters.
        thumbs.first.click()
        params = page.locator("#gen-output-params")
        expect(params).to_contain_text("a red fox in snow")
        expect(params).to_contain_text("Seed 11")
        expect(params).to_contain_text("outputs_test_lora.safetensors: 1.3")
        opened = page.locator("#gen-output-image img")
        expect(opened).to_be_visible()
        assert natural_size(opened) == [256, 256]
        with page.expect_download() as download_info:
            page.locator("#gen-output-download").click()
        saved = tmp_path / "download.png"
        download_info.value.save_as(saved)
        assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert saved.read_bytes() == next((stack.data_dir / "outputs").glob("*.png")).read_bytes()
        shot(page, shots, "open")

        # Reuse: change the form, then the output's parameters come back, the LoRA row included.
        text_input(page, "gen-prompt").fill("something else")
        text_input(page, "gen-seed").fill("5")
        checkbox.uncheck()
        page.locator("#gen-output-reuse").click()
        expect(page.locator("#gen-output-msg")).to_contain_text("Parameters put into the Generate form")
        expect(text_input(page, "gen-prompt")).to_have_value("a red fox in snow")
        expect(text_input(page, "gen-seed")).to_have_value("11")
        reused = page.get_by_label(LORA_NAME).filter(visible=True)
        expect(reused).to_be_checked()
        expect(page.locator(".row").filter(has=reused).last.get_by_label("number input for weight")).to_have_value(
            "1.3")
        expect(page.locator("#gen-preview")).to_contain_text("a red fox in snow")
        shot(page, shots, "reuse")

        # Send to Upscale: the image is the Upscale input (a file of this login), and upscaling it works.
        page.locator("#gen-output-send").click()
        expect(page.get_by_role("tab", name="Upscale")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#up-image img")).to_be_visible()
        text_input(page, "up-prompt").fill("sharper")
        page.locator("#upscale-btn").click()
        expect(page.locator("#up-after img")).to_be_visible()
        assert natural_size(page.locator("#up-after img")) == [512, 512]
        up_thumbs = page.locator("#up-history-gallery img")
        expect(up_thumbs).to_have_count(2)
        expect(page.locator("#up-history-gallery")).to_contain_text(re.compile(r"upscale · 512×512"))
        shot(page, shots, "upscale")

        # Delete the upscale from the Upscale tab's history.
        up_thumbs.first.click()
        expect(page.locator("#up-output-params")).to_contain_text("sharper")
        page.locator("#up-output-delete").click()
        expect(page.locator("#up-output-msg")).to_contain_text("Deleted output")
        expect(up_thumbs).to_have_count(1)
        assert len(list((stack.data_dir / "outputs").glob("*.png"))) == 1
        shot(page, shots, "deleted")
        tab(page, "Generate")
        page.locator("#gen-history-refresh").click()
        expect(thumbs).to_have_count(1)
        no_error_toast(page)
        browser.close()
