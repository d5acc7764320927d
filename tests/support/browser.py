"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by selenium, nothing downloaded.

`.ci/run` installs both packages. Tests that need a browser skip, saying so, only when there is no
Chromium binary at all; a Chromium without its driver is a broken setup and fails.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # selenium is imported where a browser starts
    from selenium.webdriver import Chrome

CHROMIUM_ENV = "REBILL_TEST_CHROMIUM"


def chromium_binary() -> str | None:
    return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        pytest.skip(
            "no Chromium binary: install Debian's chromium and chromium-driver (as .ci/run does) "
            f"or point {CHROMIUM_ENV} at one"
        )
    return binary


@contextmanager
def chromium(profile: Path) -> Iterator[Chrome]:
    """A headless Chromium with a fresh profile, no network of its own (no sync, no updates)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = require_chromium()
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    assert Path(driver_path).exists(), f"Chromium is at {binary} but chromedriver is missing (chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def send_basic_auth(driver: Chrome, user: str, password: str) -> None:
    """Every request of the browser carries the credentials (as a browser does after the login prompt)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})


def full_page_screenshot(driver: Chrome, path: Path) -> Path:
    """The whole page (not only the window) as a PNG."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
