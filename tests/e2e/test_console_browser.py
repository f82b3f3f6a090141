"""The web console in a real browser (Debian's headless Chromium, driven by selenium through Debian's
chromedriver) against a running pipeline (`trajstream up` on the test broker, chDB, milvus-lite): the pages
hold the numbers of what the test emitted, a new trajectory appears within 2 s of landing without a reload,
and a dead letter replayed from the page comes through the pipeline.

Screenshots of every page, light and dark, go to TRAJSTREAM_SCREENSHOT_DIR when it is set (docs/screenshots
is made so), else to the test's temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import chromium
from tests.support.env import env_for, free_port, trajstream_bin
from tests.support.streams import publish
from trajstream.settings import Settings
from trajstream.synthetic import tool_trajectory
from trajstream.topics import create_topics
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import dead_letter_record, end_record

pytestmark = pytest.mark.integration
PAGES = ("overview", "tools", "models", "trajectories", "deadletters", "pipeline", "trainer")
LIVE_TARGET_S = 2.0


@pytest.fixture(scope="module")
def pipeline(broker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    home = tmp_path_factory.mktemp("console-home")
    settings = broker_settings.model_copy(update={
        "topic_prefix": f"w{uuid.uuid4().hex[:8]}.", "home": home, "api_port": free_port(), "gateway_port": free_port(),
        "milvus_server_port": free_port(),
        "kafka_bootstrap": broker_settings.bootstrap,
    })  # fmt: skip
    asyncio.run(create_topics(settings))
    env = env_for(settings)
    up = subprocess.run([str(trajstream_bin()), "up", "--timeout", "240"], env=env, capture_output=True, text=True,
                        timeout=300)  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    url = f"http://127.0.0.1:{settings.api_port}"
    assert f"console {url}/console/" in up.stderr  # `up` says where the console is
    shown = subprocess.run([str(trajstream_bin()), "console"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and f"{url}/console/" in shown.stdout, shown.stdout + shown.stderr
    try:
        yield settings, url
    finally:
        subprocess.run([str(trajstream_bin()), "down", "--timeout", "10"], env=env, capture_output=True, timeout=120)


def _landed(url: str) -> int:
    return int(httpx.get(url + "/health", timeout=10).json()["sinks"]["clickhouse"]["trajectories"])


def _wait(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


@pytest.fixture(scope="module")
def emitted(pipeline: tuple[Settings, str], codec: SingleObjectCodec) -> dict[str, Any]:
    """Six trajectories of agent web-a (four successes; two failures after a failing lookup), model gpt-web
    version v1 with 100 tokens in and 10 out per turn; the trainer's v1 deployed."""
    settings, url = pipeline
    ids: dict[str, str] = {}
    messages: list[tuple[str, bytes | None, bytes]] = []
    for n in range(6):
        ok = n % 3 != 2
        tid, events = tool_trajectory(codec, f"Refund order {7000 + n}", "lookup", "success" if ok else "error",
                                      "success" if ok else "failure", agent="web-a", turns=3, model="gpt-web",
                                      tokens=(100, 10), model_version="v1", tags=("web",))  # fmt: skip
        ids[tid] = "success" if ok else "failure"
        messages += [(topic, tid.encode(), value) for topic, value in events]
    for event in ("created", "deployed"):
        messages.append(("model.versions", b"policy", codec.encode("model_version", {
            "model_name": "policy", "version": "v1", "number": 1, "parent": None, "event": event,
            "at": datetime.now(UTC), "path": "/models/policy/v1", "windows": ["w1"],
            "metrics": {"heldout_reward": 0.62, "kl_from_deployed": 0.02, "size_bytes": 3_500_000.0},
            "reason": "gate: held-out reward up" if event == "deployed" else "", "base": None, "canary_share": 0.0,
        })))  # fmt: skip
    asyncio.run(publish(settings, messages))
    _wait(lambda: _landed(url) >= 6, 120, "the six trajectories landing")
    return {"ids": ids}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium"), height=1000) as driver:
        yield driver


def _open(driver: webdriver.Chrome, url: str, route: str, theme: str | None = None) -> None:
    driver.get(f"{url}/console/{f'?theme={theme}' if theme else ''}#/{route}")


def _find(driver: webdriver.Chrome, css: str, timeout_s: float = 20) -> WebElement:
    element: WebElement = WebDriverWait(driver, timeout_s).until(lambda d: d.find_element(By.CSS_SELECTOR, css))
    return element


def _text_is(driver: webdriver.Chrome, css: str, text: str, timeout_s: float = 20) -> None:
    def check(d: Any) -> bool:
        found = d.find_elements(By.CSS_SELECTOR, css)
        return bool(found) and found[0].text.strip() == text

    WebDriverWait(driver, timeout_s).until(check, f"{css} never read {text!r}")


def _series(driver: webdriver.Chrome, chart: str) -> list[dict[str, Any]]:
    svg = _find(driver, f'figure[data-chart="{chart}"] svg[data-series]')
    series: list[dict[str, Any]] = json.loads(svg.get_attribute("data-series") or "[]")
    return series


def _errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e for e in logs if e["level"] == "SEVERE"]


def test_every_page_shows_the_numbers_of_what_was_emitted(
    pipeline: tuple[Settings, str], emitted: dict[str, Any], browser: webdriver.Chrome
) -> None:
    _, url = pipeline
    _open(browser, url, "overview?range=1h")
    _text_is(browser, '[data-testid="totals-trajectories"]', "6")
    plotted = _series(browser, "overview-trajectories")
    assert [s["name"] for s in plotted] == ["web-a"]
    assert sum(y for _, y in plotted[0]["points"] if y) == 6  # per minute at minute granularity: the count
    assert _find(browser, '[data-testid="totals-success-rate"]').text == "66.7%"  # 4 of 6
    learning = _series(browser, "learning-success")
    assert [s["name"] for s in learning] == ["v1"]
    assert _find(browser, 'figure[data-chart="learning-success"]').text.count("v1") >= 2  # the line and the marker

    _open(browser, url, "tools?range=1h")
    lookup = _find(browser, 'table[data-table="tools"] tr[data-key="lookup"]')
    assert "18" in lookup.text  # 6 trajectories x 3 calls
    assert "lookup" in _find(browser, 'table[data-table="before-failure"] tr[data-key="lookup"]').text

    _open(browser, url, "models?range=1h")
    tokens = {s["name"]: sum(y for _, y in s["points"] if y) for s in _series(browser, "models-tokens")}
    assert tokens == {"gpt-web in": 1800, "gpt-web out": 180}
    assert _find(browser, '[data-testid="models-unpriced"]').is_displayed()

    _open(browser, url, "trajectories?range=1h")
    _find(browser, 'table[data-table="trajectories"] tr[data-key]')
    rows = browser.find_elements(By.CSS_SELECTOR, 'table[data-table="trajectories"] tr[data-key]')
    assert {r.get_attribute("data-key") for r in rows} == set(emitted["ids"])

    failed = next(t for t, o in emitted["ids"].items() if o == "failure")
    _open(browser, url, f"trajectories/{failed}")
    calls = _find(browser, 'table[data-table="tool-calls-1"]')
    assert "lookup" in calls.text and "error" in calls.text
    assert len(_series(browser, "trajectory-air")[0]["points"]) == 3

    _open(browser, url, "trainer")
    _text_is(browser, '[data-testid="deployed-version"]', "v1")
    assert "0.62" in _find(browser, 'table[data-table="trainer-versions"] tr[data-key="v1"]').text

    _open(browser, url, "pipeline")
    _find(browser, 'table[data-table="lag"] tr[data-key]')
    assert "%" in _find(browser, '[data-testid="pipeline-landed-fraction"]').text
    assert _errors(browser) == []


def test_a_new_trajectory_appears_within_two_seconds_of_landing_without_a_reload(
    pipeline: tuple[Settings, str], emitted: dict[str, Any], browser: webdriver.Chrome, codec: SingleObjectCodec
) -> None:
    settings, url = pipeline
    _open(browser, url, "overview?range=1h")
    before = len(emitted["ids"]) + int(_landed(url) > len(emitted["ids"]))  # a replayed letter may have landed
    _text_is(browser, '[data-testid="totals-trajectories"]', str(before))
    _text_is(browser, '[data-testid="live-indicator"] .live-text', "live")
    # The page records, in its own clock (the same machine's), when the total first shows the new count; a
    # reload would drop the marker.
    browser.execute_script("""
        window.__sameDocument = true; window.__shownAt = null;
        new MutationObserver(() => {
          const el = document.querySelector('[data-testid="totals-trajectories"]');
          if (!window.__shownAt && el && el.textContent.trim() === arguments[0]) window.__shownAt = Date.now();
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    """, str(before + 1))  # fmt: skip
    tid, events = tool_trajectory(codec, "Refund order 7999", "lookup", "success", "success", agent="web-a", turns=2)
    asyncio.run(publish(settings, [(topic, tid.encode(), value) for topic, value in events]))
    # Landed: the data API answers it from ClickHouse (polled every 50 ms).
    landed_at = _wait(lambda: time.time() if _listed(url, tid) else None, 60, "the new trajectory landing", 0.05)
    shown_at = _wait(lambda: browser.execute_script("return window.__shownAt"), 10, "the page showing it", 0.05)
    assert browser.execute_script("return window.__sameDocument") is True  # no reload
    delay = shown_at / 1000 - landed_at
    print(f"shown {delay:+.2f} s after landing")
    assert delay < LIVE_TARGET_S


def _listed(url: str, tid: str) -> bool:
    page = httpx.get(f"{url}/api/console/trajectories", params={"range": "1h", "q": tid}, timeout=10).json()
    return any(r["trajectory_id"] == tid for r in page["rows"])


def test_a_dead_letter_replayed_from_the_console_comes_through(
    pipeline: tuple[Settings, str], emitted: dict[str, Any], browser: webdriver.Chrome, codec: SingleObjectCodec
) -> None:
    """A letter holding a good end event (as if its cause had been fixed since): replay sends it back to the
    events topic, and its trajectory is assembled, scored and landed."""
    settings, url = pipeline
    tid = f"replayed-{uuid.uuid4().hex[:8]}"
    payload = codec.encode("trajectory_end", end_record(tid, "success", final_reward=1.0))
    letter = dead_letter_record(stage="assembly", reason="held back by the test", error_type="TestHold",
                                source=settings.topic("events"), source_partition=0, source_offset=0,
                                trajectory_id=tid, key=tid.encode(), payload=payload,
                                max_payload_bytes=codec.limits.dead_letter_payload_bytes)  # fmt: skip
    asyncio.run(publish(settings, [("deadletter", tid.encode(), codec.encode("dead_letter", letter))]))

    def ref() -> str | None:
        rows = httpx.get(f"{url}/api/console/deadletters", params={"range": "1h"}, timeout=10).json()["rows"]
        return next((r["ref"] for r in rows if r["trajectory_id"] == tid), None)

    letter_ref = _wait(ref, 60, "the letter landing")
    _open(browser, url, "deadletters?range=1h")
    _find(browser, f'[data-testid="replay-{letter_ref}"]').click()
    _find(browser, '[data-testid="confirm-ok"]').click()
    result = _find(browser, '[data-testid="replay-result"]')
    WebDriverWait(browser, 20).until(lambda _: result.text.strip(), "the page never said what the replay did")
    assert "1" in result.text and "replayed" in result.text.lower(), result.text
    _wait(lambda: _listed(url, tid), 60, "the replayed trajectory landing")
    _open(browser, url, f"trajectories?range=1h&q={tid}")
    _find(browser, f'table[data-table="trajectories"] tr[data-key="{tid}"]')


def test_tables_are_keyboard_navigable(
    pipeline: tuple[Settings, str], emitted: dict[str, Any], browser: webdriver.Chrome
) -> None:
    _, url = pipeline
    _open(browser, url, "trajectories?range=1h")
    first = _find(browser, 'table[data-table="trajectories"] tbody tr[data-key]')
    rows = browser.find_elements(By.CSS_SELECTOR, 'table[data-table="trajectories"] tbody tr[data-key]')
    browser.execute_script("arguments[0].focus()", first)  # where Tab lands (one row in the tab order); keys only
    # Keys to whatever has the focus, as a keyboard sends them.
    ActionChains(browser).send_keys(Keys.ARROW_DOWN).perform()
    second = rows[1].get_attribute("data-key")
    assert browser.switch_to.active_element.get_attribute("data-key") == second
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    WebDriverWait(browser, 10).until(lambda d: f"trajectories/{second}" in d.execute_script("return location.hash"))
    _find(browser, 'table[data-table="trajectory-versions"]')  # the detail of the row Enter was pressed on


def test_screenshots_of_every_page_light_and_dark(
    pipeline: tuple[Settings, str], emitted: dict[str, Any], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    _, url = pipeline
    out = Path(os.environ.get("TRAJSTREAM_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    detail = next(iter(emitted["ids"]))
    for theme in ("light", "dark"):
        for page in (*PAGES, f"trajectories/{detail}"):
            _open(browser, url, f"{page}?range=1h" if "/" not in page else page, theme)
            _find(browser, "main h1, main h2")
            time.sleep(1.0)  # charts drawn, the first refresh done
            assert browser.execute_script("return document.documentElement.dataset.theme") == theme
            name = "trajectory" if "/" in page else page
            assert browser.save_screenshot(str(out / f"{name}-{theme}.png"))
    assert len(list(out.glob("*.png"))) >= 16
    assert _errors(browser) == []
