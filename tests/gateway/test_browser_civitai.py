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

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_stack import ServiceStack, signed_in
from test_browser import (
    LONG,
    expect,
    natural_size,
    shot,
    text_input,
)

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
        self.services = ServiceStack(data, self.fake.base_url, registry_args=(),
                                     gateway_args=("--civitai-base-url", self.fake.base_url))
        self.url = self.services.url

    def stop(self) -> None:
        self.services.stop()
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
    with signed_in(stack.url) as session:
        page = session.page

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

    assert any("/ui-civitai-images?url=" in url for url in session.requested), session.requested
