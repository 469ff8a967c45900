""""Import a folder" and the gallery in headless Chromium, behind the UI's login (an API key is set).

The registry, the CivitAI service and the gateway run as processes on 127.0.0.1 (no inference service:
nothing here generates); the fake CivitAI runs in this process and knows one of the library's files by
hash, with a real JPEG preview. The test signs in, imports a small A1111-style folder (live progress,
then the summary), sees the cards with their thumbnails (decoded, served by the gateway to the login
cookie), filters and searches, opens a card's details, uses the LoRA in Generate, and opens the page
again: the thumbnails come from the browser's cache or a 304. A screenshot of each view is saved under
the pytest tmp dir (paths printed). Any Gradio error toast, and any request not to the gateway, fails it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_stack import ServiceStack, pick, signed_in
from browser_stack import gallery_cards as cards

# test_browser skips (or, in CI, fails) when Chromium or Playwright is missing, before Playwright is imported.
from test_browser import (
    LONG,
    expect,
    natural_size,
    shot,
    tab,
    text_input,
)

pytestmark = pytest.mark.browser
expect.set_options(timeout=LONG)



class LibraryStack:
    def __init__(self, data: Path) -> None:
        from devtools.fake_civitai import FakeCivitai
        from devtools.model_files import write_safetensors

        self.fake = FakeCivitai()
        self.libs = data / "libraries"
        self.root = self.libs / "webui" / "models"
        known = write_safetensors(self.root / "Lora" / "ink_wash.safetensors", "lora", payload_bytes=2048, seed=1)
        self.fake.register_hash(hashlib.sha256(known.read_bytes()).hexdigest(), name="Ink Wash",
                                trained_words=["inkwash"], tags=["style"], base_model="Illustrious")
        write_safetensors(self.root / "Lora" / "styles" / "mystery.safetensors", "lora", payload_bytes=2048, seed=2)
        write_safetensors(self.root / "Stable-diffusion" / "base_xl.safetensors", "checkpoint", payload_bytes=4096,
                          seed=3)
        (self.root / "Lora" / "pickled.ckpt").write_bytes(b"\x80\x04not really")
        self.services = ServiceStack(data, self.fake.base_url, registry_args=("--library-allow", str(self.libs)),
                                     gateway_args=())
        self.url = self.services.url

    def stop(self) -> None:
        self.services.stop()
        self.fake.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibraryStack]:
    s = LibraryStack(tmp_path_factory.mktemp("library"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def test_import_then_gallery_in_the_browser(stack: LibraryStack, shots: Path) -> None:
    with signed_in(stack.url) as session:
        page, context = session.page, session.context
        expect(page.locator("#gallery-status")).to_contain_text("0 model(s)")

        # Import a folder: live phases, then the summary; the root is listed.
        page.get_by_text("Import a folder", exact=True).click()
        text_input(page, "import-path").fill(str(stack.root))
        page.locator("#import-start").click()
        progress = page.locator("#import-progress")
        expect(progress).to_contain_text("done.")
        for line in ("Scan: 4 file(s) seen, 3 model file(s)", "Hash: 3 of 3 file(s)", "Identify: 1 identified"):
            expect(progress).to_contain_text(line)
        expect(progress.locator(".mm-summary")).to_contain_text("registered3")
        expect(progress).to_contain_text("Skipped (1)")
        expect(page.locator("#roots-table")).to_contain_text(str(stack.root))
        shot(page, shots, "import")

        # The gallery follows: three cards, the identified one with its thumbnail.
        expect(cards(page)).to_have_count(3)
        ink = cards(page).filter(has_text="Ink Wash")
        thumb = ink.locator("img")
        expect(thumb).to_have_attribute("src", "ui-previews/ink_wash.safetensors?v=" + thumb.get_attribute(
            "src").split("?v=")[1])
        width, height = natural_size(thumb)
        assert width > 0 and height > 0
        expect(page.locator('#gallery-cards [data-filename="mystery.safetensors"]')).to_contain_text("no preview")
        shot(page, shots, "gallery")

        # Filters: type, root/folder, search.
        pick(page, "gallery-type", "Checkpoints")
        expect(cards(page)).to_have_count(1)
        expect(cards(page)).to_have_attribute("data-filename", "base_xl.safetensors")
        pick(page, "gallery-type", "All")
        expect(cards(page)).to_have_count(3)
        pick(page, "gallery-place", f"{stack.root}/Lora/styles")
        expect(cards(page)).to_have_count(1)
        expect(cards(page)).to_have_attribute("data-filename", "mystery.safetensors")
        pick(page, "gallery-place", "All places")
        text_input(page, "gallery-search").press_sequentially("inkwash")
        expect(cards(page)).to_have_count(1)
        shot(page, shots, "gallery-filtered")

        # A card's details: name, triggers to copy, a link to CivitAI; delete asks about the file.
        cards(page).first.click()
        expect(text_input(page, "card-filename")).to_have_value("ink_wash.safetensors")
        expect(text_input(page, "card-copy-triggers")).to_have_value("inkwash")
        expect(page.locator("#card-links a")).to_have_text("Open on CivitAI")
        page.locator("#card-delete").click()
        expect(page.locator("#card-delete-file")).to_be_visible()
        expect(page.locator("#card-delete-file input")).not_to_be_checked()
        page.get_by_role("button", name="Keep it").last.click()
        shot(page, shots, "details")

        # Use in Generate: the Generate tab, the LoRA ticked, its trigger word in the prompt preview.
        page.locator("#card-use").click()
        expect(page.locator("#gen-prompt")).to_be_visible()
        expect(page.get_by_label("Ink Wash").filter(visible=True)).to_be_checked()
        text_input(page, "gen-prompt").fill("a harbour at dawn")
        expect(page.locator("#gen-preview")).to_contain_text("inkwash")
        shot(page, shots, "generate")
        tab(page, "Model Manager")

        # A second visit: every thumbnail comes from the browser's cache or is a 304.
        second = context.new_page()
        cdp = context.new_cdp_session(second)
        cdp.send("Network.enable")
        thumbs: dict[str, str] = {}
        cdp.on("Network.requestWillBeSent", lambda e: thumbs.__setitem__(e["requestId"], e["request"]["url"])
               if "/ui-previews/" in e["request"]["url"] else None)
        cached: set[str] = set()
        cdp.on("Network.requestServedFromCache", lambda e: cached.add(e["requestId"]))
        statuses: dict[str, int] = {}

        def received(e: dict) -> None:
            r = e["response"]
            if r.get("fromDiskCache") or r.get("fromMemoryCache"):
                cached.add(e["requestId"])
            statuses[e["requestId"]] = r["status"]

        cdp.on("Network.responseReceived", received)
        second.goto(stack.url + "/")
        expect(cards(second)).to_have_count(3)
        assert natural_size(cards(second).filter(has_text="Ink Wash").locator("img"))[0] > 0
        assert thumbs, "no thumbnail was asked for"
        assert all(rid in cached or statuses.get(rid) == 304 for rid in thumbs), (thumbs, cached, statuses)
        second.close()

