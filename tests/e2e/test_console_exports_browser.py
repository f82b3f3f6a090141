"""The console's Exports & reports page in a real browser (Debian's headless Chromium through Debian's
chromedriver): an export started from the form shows its manifest's counts and a download link that
serves the archive, and a report made with the Regenerate button shows its top finding with its evidence.

The data API is the data worker's app (consumers/api.py with the corpus's routes), served from a thread
of this process on the planted corpus landed in chDB: chDB allows one process per data directory, so the
session's directory is read here rather than by a `trajstream up`. Screenshots (light and dark) go to
TRAJSTREAM_SCREENSHOT_DIR when it is set, else to the test's temporary directory."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import chromium
from tests.support.env import free_port
from tests.support.optimise_corpus import land_planted
from trajstream.consumers.api import build_app
from trajstream.consumers.console.routes import Console
from trajstream.consumers.store_link import StoreUnavailableError
from trajstream.corpus.console.routes import add_corpus_routes
from trajstream.corpus.optimise.planted import PlantedCorpus
from trajstream.settings import Settings

pytestmark = pytest.mark.integration


def _no_recall() -> Any:
    raise StoreUnavailableError("Milvus is not open in this test")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[tuple[str, PlantedCorpus]]:
    """The data API on loopback with no token (so the browser is an operator), on the planted corpus."""
    settings = Settings(home=tmp_path_factory.mktemp("exports-browser"), clickhouse_dsn=f"chdb://{chdb_dir}",
                        clickhouse_database=f"eb{uuid.uuid4().hex[:10]}", api_port=free_port())  # fmt: skip
    client, corpus = land_planted(settings)
    console = Console(settings, lambda: client, _no_recall, lambda: 0, lambda: {})
    app = build_app(settings, _no_recall, lambda: client, lambda: {"status": "ok"}, console, (add_corpus_routes,))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=1)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", settings.api_port).start())
    thread = threading.Thread(target=loop.run_forever, name="data-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{settings.api_port}", corpus
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium"), height=1400) as driver:
        yield driver


def _find(driver: webdriver.Chrome, css: str, timeout_s: float = 30) -> WebElement:
    element: WebElement = WebDriverWait(driver, timeout_s).until(lambda d: d.find_element(By.CSS_SELECTOR, css))
    return element


def _text(driver: webdriver.Chrome, css: str, timeout_s: float = 120) -> str:
    """The element's text once it has some (elements are redrawn as jobs move, so it is looked up each time)."""

    def shown(d: Any) -> str | None:
        found = d.find_elements(By.CSS_SELECTOR, css)
        try:
            return str(found[0].text) if found and found[0].text else None
        except Exception:  # redrawn between the lookup and the read
            return None

    text: str = WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(shown)
    return text


def _errors(driver: webdriver.Chrome) -> list[Any]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.timeout(600)
def test_an_export_and_a_report_from_the_page(
    served: tuple[str, PlantedCorpus], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    url, corpus = served
    browser.get(f"{url}/console/?theme=light#/exports")
    _find(browser, '[data-testid="nav-exports"][aria-current="page"]')
    assert "No export yet" in _text(browser, '[data-testid="export-job"] .empty')
    assert "trajstream optimise tools" in _text(browser, '[data-testid="report-tools"] .empty')

    Select(_find(browser, '[data-testid="export-format"]')).select_by_value("openai-sft")
    Select(_find(browser, '[data-testid="export-outcome"]')).select_by_value("success")
    _find(browser, '[data-testid="export-agent"]').send_keys("support-bot")
    _find(browser, '[data-testid="export-submit"]').click()
    link = _find(browser, '[data-testid="export-download"]', 240)
    wanted = corpus.ids(lambda p: p.agent == "support-bot" and p.outcome == "success")
    assert _text(browser, '[data-testid="export-read"]') == str(len(wanted))
    assert int(_text(browser, '[data-testid="export-rows"]').replace(",", "")) > 0
    assert _find(browser, 'table[data-table="export-files"] tbody tr')
    download = httpx.get(str(link.get_attribute("href")), timeout=60)
    assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
    assert download.content[:2] == b"\x1f\x8b"  # gzip

    _find(browser, '[data-testid="regenerate-tools"]').click()
    _find(browser, '[data-testid="confirm-ok"]').click()
    top = _text(browser, '[data-testid="report-tools"] [data-testid="finding-0"] .finding-head', 240)
    assert top.startswith("lookup_order fails when order_id~INT-#"), top
    evidence = browser.find_elements(
        By.CSS_SELECTOR, '[data-testid="report-tools"] [data-testid="finding-0"] .evidence a'
    )
    assert evidence and all(a.get_attribute("href").split("#/trajectories/")[1].split("?")[0] in corpus.plans
                            for a in evidence)  # fmt: skip
    assert "95% CI" in _text(browser, '[data-testid="report-tools"] [data-testid="finding-0"] .rates')

    out = Path(os.environ.get("TRAJSTREAM_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for theme in ("light", "dark"):
        browser.get(f"{url}/console/?theme={theme}#/exports")
        _find(browser, '[data-testid="export-download"]')
        _find(browser, '[data-testid="report-tools"] [data-testid="finding-0"]')
        time.sleep(0.5)
        assert browser.execute_script("return document.documentElement.dataset.theme") == theme
        assert browser.save_screenshot(str(out / f"exports-{theme}.png"))
    assert _errors(browser) == []
