"""What the service-level browser tests share: the services as real processes behind an API key, and a
signed-in Chromium page that fails the test on any Gradio error toast or any request off the gateway.

test_browser.py (imported first) skips, or in CI fails, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from gw_helpers import dead_address, free_port
from playwright.sync_api import BrowserContext, Locator, Page
from test_browser import CHROMIUM, CHROMIUM_ARGS, LONG, REPO, expect, sync_playwright

KEY = "key-" + secrets.token_hex(8)
# Every error toast Gradio shows, kept even after it fades.
TOAST_RECORDER = """
window.__mmErrorToasts = [];
new MutationObserver(() => {
  document.querySelectorAll('.toast-body.error').forEach(t => {
    if (!t.dataset.mmSeen) { t.dataset.mmSeen = '1'; window.__mmErrorToasts.push(t.innerText); }
  });
}).observe(document, {childList: true, subtree: true});
"""


class ServiceStack:
    """Registry, CivitAI service (over `civitai_base_url`) and gateway on free 127.0.0.1 ports, behind KEY;
    the inference service is an address nothing listens on."""

    def __init__(self, data: Path, civitai_base_url: str, *, registry_args: Sequence[str] = (),
                 gateway_args: Sequence[str] = ()) -> None:
        user_models, models = data / "user-models", data / "models"
        user_models.mkdir()
        models.mkdir()
        registry, civitai, gateway = (f"127.0.0.1:{free_port()}" for _ in range(3))
        self.url = f"http://{gateway}"
        py = sys.executable
        env = {**os.environ, "MODELMGR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO), "MODELMGR_API_KEY": KEY}
        commands = [
            [py, "-m", "metadata_svc", "--listen", registry, "--user-models-dir", str(user_models), "--models-dir",
             str(models), "--civitai", civitai, *registry_args],
            [py, "-m", "civitai_svc", "--listen", civitai, "--registry", registry, "--user-models-dir",
             str(user_models), "--base-url", civitai_base_url],
            [py, "-m", "gateway", "--listen", gateway, "--registry", registry, "--civitai", civitai,
             "--inference", dead_address(), *gateway_args],
        ]
        self.procs = [subprocess.Popen(c, cwd=REPO, env=env) for c in commands]
        for _ in range(2400):  # a guard against hanging, not a timing assertion
            try:
                if httpx.get(self.url + "/api/v1/models", headers={"x-api-key": KEY}).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if any(p.poll() is not None for p in self.procs):
                self.stop()  # the others would outlive the test (and hold its output pipe open)
                pytest.fail("a service did not start")
            time.sleep(0.1)
        self.stop()
        pytest.fail("the services did not start")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(60)


@dataclass
class SignedIn:
    context: BrowserContext
    page: Page
    requested: list[str] = field(default_factory=list)


@contextmanager
def signed_in(url: str) -> Iterator[SignedIn]:
    """A Chromium page signed in to the gateway at `url` (user "operator", password KEY). On a normal exit,
    no error toast was shown and every request stayed on the gateway's origin."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(TOAST_RECORDER)
        session = SignedIn(context, context.new_page())
        context.on("request", lambda request: session.requested.append(request.url))
        page = session.page
        page.set_default_timeout(LONG)
        try:
            page.goto(url + "/")
            page.get_by_label("username").fill("operator")
            page.get_by_label("password").fill(KEY)
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("tab", name="Model Manager")).to_be_visible()
            yield session
            toasts = page.evaluate("window.__mmErrorToasts")
            assert toasts == [], toasts
        finally:
            context.close()
            browser.close()
    outside = [u for u in session.requested if not u.startswith((url, "data:", "blob:"))]
    assert session.requested and outside == [], outside


def gallery_cards(page: Page) -> Locator:
    """The Model Manager gallery's cards."""
    return page.locator("#gallery-cards .mm-card")


def pick(page: Page, elem_id: str, option: str) -> None:
    """Choose `option` in the dropdown `elem_id`."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
