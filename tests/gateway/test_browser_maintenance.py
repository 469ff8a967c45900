""""Library health" in headless Chromium, behind the UI's login (an API key is set): duplicates, disk use and
bulk actions on the gallery's cards (issue 13).

The registry, the CivitAI service and the gateway run as processes on 127.0.0.1 (no inference service);
the fake CivitAI runs in this process and knows one file by hash. Two library roots hold one LoRA three
times: under two names in the first root (a hard link: one file on disk) and as a copy in the second.
The test imports both roots, sees the duplicate group and the disk use (per type, per root, free space,
the biggest files), deletes the copy, tags a selection of cards and untags part of it, refreshes it from
CivitAI, and bulk-deletes two models with their files. A screenshot of each view is saved under the pytest
tmp dir (paths printed). Any Gradio error toast, and any request not to the gateway, fails it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_stack import KEY, ServiceStack, pick, signed_in
from browser_stack import gallery_cards as cards

# test_browser skips (or, in CI, fails) when Chromium or Playwright is missing, before Playwright is imported.
from test_browser import LONG, Page, expect, shot, text_input

from service_kit.display import human_size

pytestmark = pytest.mark.browser
expect.set_options(timeout=LONG)


class HealthStack:
    def __init__(self, data: Path) -> None:
        from devtools.fake_civitai import FakeCivitai
        from devtools.model_files import write_safetensors

        self.fake = FakeCivitai()
        libs = data / "libraries"
        self.webui, self.comfy = libs / "webui" / "models", libs / "comfy" / "models"
        self.ink = write_safetensors(self.webui / "Lora" / "ink.safetensors", "lora", payload_bytes=64 << 10, seed=1)
        self.fake.register_hash(hashlib.sha256(self.ink.read_bytes()).hexdigest(), name="Ink Wash",
                                trained_words=["inkwash"], tags=["style"], base_model="Illustrious")
        os.link(self.ink, self.webui / "Lora" / "ink_link.safetensors")  # one file, two names
        self.copy = self.comfy / "Lora" / "ink_copy.safetensors"  # the same bytes in another root
        self.copy.parent.mkdir(parents=True)
        shutil.copyfile(self.ink, self.copy)
        self.solo = write_safetensors(self.webui / "Lora" / "solo.safetensors", "lora", payload_bytes=16 << 10,
                                      seed=2)
        self.base = write_safetensors(self.webui / "Stable-diffusion" / "base_xl.safetensors", "checkpoint",
                                      payload_bytes=256 << 10, seed=3)
        self.services = ServiceStack(data, self.fake.base_url, registry_args=("--library-allow", str(libs)))
        self.url = self.services.url

    def tags(self, filename: str) -> list[str]:
        reply = httpx.get(f"{self.url}/api/v1/models/{filename}", headers={"x-api-key": KEY})
        reply.raise_for_status()
        return reply.json().get("tags", [])

    def stop(self) -> None:
        self.services.stop()
        self.fake.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HealthStack]:
    s = HealthStack(tmp_path_factory.mktemp("health"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def import_root(page: Page, root: Path, registered: int) -> None:
    text_input(page, "import-path").fill(str(root))
    page.locator("#import-start").click()
    expect(page.locator("#roots-table")).to_contain_text(str(root))
    expect(page.locator("#import-progress .mm-summary")).to_contain_text(f"registered{registered}")


def unselect(page: Page, filename: str) -> None:
    token = page.locator("#bulk-selection .token").filter(has=page.get_by_text(filename, exact=True))
    token.locator(".token-remove").click()


def test_library_health_in_the_browser(stack: HealthStack, shots: Path) -> None:
    size = human_size(stack.ink.stat().st_size)
    with signed_in(stack.url) as session:
        page = session.page
        page.get_by_text("Import a folder", exact=True).click()
        import_root(page, stack.webui, 4)
        import_root(page, stack.comfy, 1)
        expect(cards(page)).to_have_count(5)

        # Duplicates: one group of three entries, two of them one file; deleting the copy frees its size.
        page.get_by_text("Library health", exact=True).click()
        page.locator("#health-refresh").click()
        dups = page.locator("#health-duplicates")
        expect(dups).to_contain_text("1 group(s) of duplicates")
        group = dups.locator(".mm-dup")
        expect(group).to_contain_text(f"{size} each · frees {size}")
        expect(group.locator("tr")).to_have_count(4)  # a header and three entries
        for name in ("ink.safetensors", "ink_link.safetensors", "ink_copy.safetensors"):
            expect(group).to_contain_text(name)
        expect(group).to_contain_text("file #2")  # two files on disk, three names

        # Disk use: per type, per root with its filesystem's free space, the volume, the biggest first.
        disk = page.locator("#health-disk")
        expect(disk.locator(".mm-disk-total")).to_contain_text("5 model(s)")
        expect(disk.locator(".mm-disk-total")).to_contain_text(" free of ")
        expect(disk.locator(".mm-disk-types")).to_contain_text("LoRA")
        expect(disk.locator(".mm-disk-types")).to_contain_text("Checkpoint")
        roots = disk.locator(".mm-disk-roots")
        for root in (stack.webui, stack.comfy):
            expect(roots).to_contain_text(str(root))
        expect(roots).to_contain_text(" free of ")
        biggest = disk.locator(".mm-disk-biggest tr")
        expect(biggest).to_have_count(6)
        expect(biggest.nth(1)).to_contain_text("base_xl.safetensors")
        expect(biggest.nth(1)).to_contain_text(human_size(stack.base.stat().st_size))
        expect(biggest.last).to_contain_text("solo.safetensors")
        shot(page, shots, "health")

        pick(page, "health-dup-pick", "ink_copy.safetensors")
        page.keyboard.press("Escape")
        page.locator("#health-dup-files input").check()
        page.locator("#health-dup-delete").click()
        expect(page.locator("#health-dup-message")).to_contain_text("Deleted 1 of 1 model(s).")
        expect(group).to_contain_text(f"{size} each · frees 0 B")  # the health view follows
        expect(group.locator("tr")).to_have_count(3)
        expect(cards(page)).to_have_count(4)  # so does the gallery
        assert not stack.copy.exists() and stack.ink.exists()
        shot(page, shots, "health-after-delete")

        # Bulk tags: select what the gallery shows, narrow the selection, add; then remove from part of it.
        page.locator("#bulk-select-shown").click()
        message = page.locator("#bulk-message")
        expect(message).to_contain_text("4 card(s) selected.")
        selection = page.locator("#bulk-selection .token")
        expect(selection).to_have_count(4)
        unselect(page, "base_xl.safetensors")
        unselect(page, "ink_link.safetensors")
        expect(selection).to_have_count(2)
        text_input(page, "bulk-add-tags").fill("favourite, inked")
        page.locator("#bulk-tags").click()
        expect(message).to_contain_text("Tags changed on 2 model(s).")
        pick(page, "gallery-tag", "favourite")
        expect(cards(page)).to_have_count(2)
        shot(page, shots, "bulk-tagged")

        unselect(page, "solo.safetensors")
        expect(selection).to_have_count(1)
        text_input(page, "bulk-add-tags").fill("")
        text_input(page, "bulk-remove-tags").fill("favourite")
        page.locator("#bulk-tags").click()
        expect(message).to_contain_text("Tags changed on 1 model(s).")
        expect(cards(page)).to_have_count(1)  # the tag filter holds; ink lost the tag
        expect(cards(page)).to_have_attribute("data-filename", "solo.safetensors")
        assert stack.tags("ink.safetensors") == ["style", "inked"]  # "style" from CivitAI at import
        assert stack.tags("solo.safetensors") == ["favourite", "inked"]

        # Refresh the selection (ink) from CivitAI: the fake knows it.
        page.locator("#bulk-refresh").click()
        expect(message).to_contain_text("Refreshed 1 model(s) from CivitAI: 1 found, 0 not on CivitAI.")
        shot(page, shots, "bulk-refreshed")

        # Bulk delete with the files: the gallery, the disk use and the volume follow.
        pick(page, "gallery-tag", "All")
        expect(cards(page)).to_have_count(4)
        page.locator("#bulk-select-shown").click()
        expect(message).to_contain_text("4 card(s) selected.")
        unselect(page, "ink.safetensors")
        unselect(page, "ink_link.safetensors")
        expect(selection).to_have_count(2)
        page.locator("#bulk-delete-files input").check()
        page.locator("#bulk-delete").click()
        expect(message).to_contain_text("Deleted 2 of 2 model(s).")
        expect(cards(page)).to_have_count(2)
        expect(disk.locator(".mm-disk-total")).to_contain_text("2 model(s)")
        expect(biggest).to_have_count(3)
        expect(dups).to_contain_text("1 group(s) of duplicates")  # the two names of one file are left
        assert not stack.solo.exists() and not stack.base.exists()
        shot(page, shots, "bulk-deleted")
