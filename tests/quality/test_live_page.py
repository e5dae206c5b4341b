"""The evaluator's live page in headless Chromium showing the serving decisions: promotions and rejections marked on
the accuracy chart (each with its verdict on hover), the verdict table, the pinned version and the one predictors
serve. An Evaluator without Kafka serves it: its judge's decisions are applied by hand, its rows made here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamtrain.evaluator import live
from streamtrain.evaluator.main import Evaluator
from streamtrain.service import http
from streamtrain.serving import control
from tests.support.browser import Browser, ensure_chromium
from tests.support.gate import MODEL, apply, gated_evaluator

REASON = "accuracy 0.410 (500 records) is 0.500 worse than the promoted 0.910 (tolerance 0.02)"


@pytest.fixture
def browser(artifacts: Path) -> Iterator[Browser]:
    reason = ensure_chromium()
    if reason:
        pytest.skip(reason)
    running = Browser(artifacts / "chromedriver.log")
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def evaluator(tmp_path: Path) -> Iterator[tuple[Evaluator, str]]:
    evaluator = gated_evaluator(tmp_path)
    now = int(time.time() * 1000)
    start = now - 60_000
    for i in range(60):  # a minute of rows; version 2 (loaded at 20 s) is worse
        evaluator.rows.append({"ts_ms": start + i * 1000, "records_evaluated": 500 * i, "model_version": 1 + i // 20,
                               "accuracy": 0.5 if 20 <= i < 40 else 0.9, "loss": 0.3, "auc": 0.95,
                               "records_per_second": 500.0, "lag": 10, "drift_events": 0})
    evaluator.live.versions = [{"version": v, "ts_ms": start + (v - 1) * 20_000, "records_trained": 1000 * v,
                                "trainer_lag": 5} for v in (1, 2, 3)]

    def at(event: dict[str, object], seconds: int) -> dict[str, object]:
        return {**event, "ts_ms": start + seconds * 1000}

    apply(evaluator,
          at(control.verdict(MODEL, 1, "promoted", "accuracy", 0.91, 500, "accuracy 0.910 reaches the floor 0.6"), 5),
          at(control.verdict(MODEL, 2, "rejected", "accuracy", 0.41, 500, REASON), 25),
          at(control.verdict(MODEL, 3, "promoted", "accuracy", 0.9, 500, "within 0.02 of the promoted 0.910"), 45),
          control.pin(MODEL, 1, "rollback", "ops"))
    server = http.serve("127.0.0.1", 0, evaluator.health, evaluator.status, extra=live.routes(evaluator))
    try:
        yield evaluator, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_live_page_marks_promotions_and_rejections_and_names_the_served_version(
        evaluator: tuple[Evaluator, str], browser: Browser, artifacts: Path) -> None:
    ev, url = evaluator
    browser.get(url)
    browser.wait_for("return Number(document.body.dataset.updates || 0)", 30, "the first refresh")
    marks = browser.js("return [...document.querySelectorAll('#quality .verdict-mark')].map(g => "
                       "[g.classList.contains('promoted-mark') ? 'promoted' : g.classList.contains('rejected-mark') "
                       "? 'rejected' : '?', Number(g.dataset.version), g.querySelector('title').textContent])")
    assert [m[:2] for m in marks] == [["promoted", 1], ["rejected", 2], ["promoted", 3]]
    assert REASON in marks[1][2] and "accuracy 0.4100 on 500 records" in marks[1][2]
    # Marks are where the verdicts happened, in order, inside the plot, and each draws a visible symbol.
    xs = browser.js("return [...document.querySelectorAll('#quality .verdict-mark line:last-of-type')]"
                    ".map(l => Number(l.getAttribute('x1')))")
    assert xs == sorted(xs) and 56 < xs[0] < xs[-1] < 960 - 64
    assert browser.js("return document.querySelectorAll('#quality .verdict-mark path').length") == 3
    assert browser.js("return document.querySelectorAll('#loss .verdict-mark').length") == 0
    serving = browser.js("return document.getElementById('serving').innerText")
    assert "predictors serve v1 (pinned)" in serving and "rollback by ops" in serving
    assert "promoted v1, v3" in serving and "rejected v2" in serving
    assert "predictors serve v1 (pinned)" in browser.js("return document.getElementById('summary').innerText")
    table = browser.js("return [...document.querySelectorAll('#verdicts tr')].slice(1).map(r => "
                       "[...r.cells].map(c => c.innerText))")
    assert [r[1:3] for r in table] == [["v3", "promoted"], ["v2", "rejected"], ["v1", "promoted"]]
    assert table[1][5] == REASON
    browser.screenshot(artifacts / "live-page-verdicts.png")

    # An unpin is followed at the next refresh: the newest promoted version is served again.
    apply(ev, control.pin(MODEL, None, "unpin", "ops"))
    browser.wait_for("return document.getElementById('serving').innerText.includes('predictors serve v3 ')", 10,
                     "the unpin on the page")
    assert "pinned no" in browser.js("return document.getElementById('serving').innerText")
