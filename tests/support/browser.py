"""Debian's Chromium under selenium, for the console's browser tests.

selenium is given both paths (mk/browser.mk installs the packages), so it never downloads a driver. Without
the background-networking flags Chromium tries Google's hosts, which this machine refuses; the console itself
must ask nothing of the network (its CSP says so too).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")  # fmt: skip


@contextmanager
def chromium(profile: Path, width: int = 1440, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in ``profile``, its console log kept; quit on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
