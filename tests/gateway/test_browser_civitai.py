"""The CivitAI browser and updates in headless Chromium, behind the UI's login (an API key is set).

The registry, the CivitAI service and the gateway run as processes on 127.0.0.1 (no inference service);
the fake CivitAI runs in this process with a LoRA of two versions and real JPEG previews. The test signs
in, searches the catalogue, sees the result cards with their pictures (decoded, through the gateway's
image proxy), opens a card, picks the older version and downloads it with live progress, checks for
updates (the gallery's card gets its badge), and downloads the update. A screenshot of each view is saved
under the pytest tmp dir (paths printed). Any Gradio error toast, and any request not to the gateway,
fails it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gw_helpers import dead_address, free_port
from test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LONG,
    REPO,
    expect,
    natural_size,
    shot,
    sync_playwright,
    text_input,
)
from test_browser_library import KEY, TOAST_RECORDER

pytestmark = pytest.mark.browser
expect.set_options(timeout=LONG)


class CivitaiStack:
    def __init__(self, data: Path) -> None:
        from devtools.fake_civitai import FakeCivitai, make_safetensors

        self.fake = FakeCivitai()
        self.ink = self.fake.add_lora(name="Ink Wash", data=make_safetensors("lora", 1 << 20, seed=1),
                                      trained_words=["inkwash"], filename="ink_wash.safetensors", previews=(1, 1))
        self.ink_v2 = self.fake.add_version(self.ink.model_id, version_name="v2.0",
                                            data=make_safetensors("lora", 1 << 20, seed=2),
                                            filename="ink_wash_v2.safetensors")
        self.fake.add_checkpoint(name="Dream Forge XL")
        user_models, models = data / "user-models", data / "models"
        user_models.mkdir()
        models.mkdir()
        registry, civitai, gateway = (f"127.0.0.1:{free_port()}" for _ in range(3))
        self.url = f"http://{gateway}"
        py = sys.executable
        env = {**os.environ, "MODELMGR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO), "MODELMGR_API_KEY": KEY}
        commands = [
            [py, "-m", "metadata_svc", "--listen", registry, "--user-models-dir", str(user_models), "--models-dir",
             str(models), "--civitai", civitai],
            [py, "-m", "civitai_svc", "--listen", civitai, "--registry", registry, "--user-models-dir",
             str(user_models), "--base-url", self.fake.base_url],
            [py, "-m", "gateway", "--listen", gateway, "--registry", registry, "--civitai", civitai,
             "--inference", dead_address(), "--civitai-base-url", self.fake.base_url],
        ]
        self.procs = [subprocess.Popen(c, cwd=REPO, env=env) for c in commands]
        for _ in range(2400):  # a guard against hanging, not a timing assertion
            try:
                if httpx.get(self.url + "/api/v1/models", headers={"x-api-key": KEY}).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert all(p.poll() is None for p in self.procs), "a service did not start"
            time.sleep(0.1)
        pytest.fail("the CivitAI stack did not start")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(60)
        self.fake.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CivitaiStack]:
    s = CivitaiStack(tmp_path_factory.mktemp("civitai"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def test_browse_download_and_update_in_the_browser(stack: CivitaiStack, shots: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(TOAST_RECORDER)
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.set_default_timeout(LONG)
        try:
            page.goto(stack.url + "/")
            page.get_by_label("username").fill("operator")
            page.get_by_label("password").fill(KEY)
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("tab", name="Model Manager")).to_be_visible()

            # Search: result cards with their pictures, through the gateway.
            page.get_by_text("Browse CivitAI", exact=True).click()
            text_input(page, "browse-query").fill("Ink")
            page.locator("#browse-search").click()
            cards = page.locator("#browse-cards .mm-card")
            expect(cards).to_have_count(1)
            expect(page.locator("#browse-status")).to_contain_text("Page 1 · 1 model(s)")
            card = cards.first
            expect(card).to_contain_text("Ink Wash")
            expect(card).to_contain_text("⬇ 12")
            thumb = card.locator("img")
            expect(thumb).to_have_attribute("src", re.compile(r"^ui-civitai-images\?url=http%3A%2F%2F127\.0\.0\.1"))
            width, height = natural_size(thumb)
            assert width > 0 and height > 0
            shot(page, shots, "browse")

            # A card: its versions; the older one, downloaded with live progress.
            card.click()
            expect(page.locator("#browse-details")).to_contain_text("v2.0")
            page.locator("#browse-version input").click()
            page.get_by_role("option", name=re.compile(r"^v1\.0")).click()
            expect(page.locator("#browse-details")).to_contain_text("v1.0")
            assert natural_size(page.locator("#browse-image img"))[0] > 0
            page.locator("#browse-download").click()
            status = page.locator("#browse-download-status")
            expect(status).to_contain_text("installed as ink_wash.safetensors")
            expect(status.locator(".mm-progress > div")).to_have_attribute("style", re.compile(r"width:\s*100"))
            expect(page.locator('#gallery-cards [data-filename="ink_wash.safetensors"]')).to_be_visible()
            shot(page, shots, "browse-downloaded")

            # Check for updates: the table, and the gallery card's badge.
            page.get_by_text("Updates", exact=True).click()
            page.locator("#updates-check").click()
            expect(page.locator("#updates-status")).to_contain_text("1 update(s) available")
            expect(page.locator("#updates-table")).to_contain_text("ink_wash.safetensors")
            gallery_card = page.locator('#gallery-cards [data-filename="ink_wash.safetensors"]')
            expect(gallery_card.locator(".mm-update")).to_have_text("update: v2.0")
            page.locator("#gallery-updates-only input").check()
            expect(page.locator("#gallery-cards .mm-card")).to_have_count(1)
            shot(page, shots, "updates")

            # Download update (the old version kept): the new file is in, the badge is gone.
            page.locator("#update-download").click()
            progress = page.locator("#update-progress")
            expect(progress).to_contain_text("updated to v2.0")
            expect(progress).to_contain_text("the old version is kept")
            page.locator("#gallery-updates-only input").uncheck()
            expect(page.locator('#gallery-cards [data-filename="ink_wash_v2.safetensors"]')).to_be_visible()
            expect(page.locator("#gallery-cards .mm-update")).to_have_count(0)
            shot(page, shots, "updated")

            toasts = page.evaluate("window.__mmErrorToasts")
            assert toasts == [], toasts
        finally:
            context.close()
            browser.close()
    assert any("/ui-civitai-images?url=" in url for url in requested), requested
    outside = [url for url in requested if not url.startswith((stack.url, "data:", "blob:"))]
    assert requested and outside == [], outside
