"""Closing the browser tab during a generate started in the web UI cancels the upstream job."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from gw_helpers import running_gateway, settings_for
from gw_stubs import EndlessInference, inference_binding, serve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


if not Path(CHROMIUM).exists():
    _reason = "Debian's chromium is not installed (run `make browser`)"
    if os.environ.get("CI") == "true":  # CI installs it (make browser): missing is a failure there, not a skip
        pytest.fail(f"browser tests cannot run in CI: {_reason}", pytrace=False)
    pytest.skip(_reason, allow_module_level=True)


async def test_closing_the_tab_cancels_the_generate() -> None:
    from playwright.async_api import async_playwright, expect

    inference = EndlessInference(interval=0.05)
    server = await serve("inference", inference_binding(inference))
    try:
        async with running_gateway(settings_for(ui=True, inference=server.address)) as http:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = await browser.new_page()
                await page.goto(str(http.base_url) + "/")
                await page.get_by_role("tab", name="Generate").click()
                await page.locator("#generate-btn").click()
                await expect(page.locator("#gen-progress")).to_contain_text("denoising", timeout=60_000)
                assert not inference.cancelled.is_set()
                await page.close()
                await asyncio.wait_for(inference.cancelled.wait(), 60)
                assert not inference.finished.is_set()
                await browser.close()
    finally:
        await server.stop(0)
