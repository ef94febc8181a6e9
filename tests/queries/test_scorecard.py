"""The site scorecard: its numbers against a hand computation of the query scenario, and the
HTML page in a real headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cartreg.queries.scorecard import render_html
from tests.queries.conftest import AS_OF, T_V3, cartreg
from tests.reports.test_html import CHROMIUM, _png_is_not_blank


def test_scorecard_numbers_match_the_hand_computed_scenario(scenario: dict[str, Any]) -> None:
    """Hand computation, as of 2025-03-10 00:00 UTC (``--as-of 2025-03-10``):

    7 patients in v3; queries: Q1 resolved, Q2 open (reopened 2025-03-03), Q3 waived,
    Q4 unobtainable. Per 100 patients: 4/7 = 57.14 total, 1/7 = 14.29 open, 3/7 = 42.86 closed.
    First answers: all four 9 d 5 h 30 min after opening = 9.2292 d. First closings: Q3, Q4 at
    10 d, Q1, Q2 at 28 d; median 19.0. Q2 open since 2025-03-03 09:00, as of 2025-03-10 00:00:
    6.6 d -> 0-30. Reopened 1 of 4 ever closed = 0.25; waived 1 of 3 closed = 0.3333.
    Trend (errors and warnings, waived ones left out): v1 (6 patients) ING-DATE conformance,
    CP-006 + CP-014 completeness, CDM-RANGE plausibility; v2 (7) CP-014; v3 (7) ING-DATE, CP-014.
    """
    (site,) = scorecard_sites(scenario)
    assert site["site_id"] == "QSITE" and site["latest_version"] == 3 and site["patients"] == 7
    assert site["queries"] == {
        "total": 4,
        "open": 1,
        "answered": 0,
        "closed": 3,
        "resolved": 1,
        "waived": 1,
        "unobtainable": 1,
    }
    assert site["per_100_patients"] == {
        "total": 57.14,
        "open": 14.29,
        "answered": 0.0,
        "closed": 42.86,
    }
    assert site["answered_ever"] == 4
    assert site["median_days_to_first_response"] == 9.23
    assert site["closed_ever"] == 4
    assert site["median_days_to_close"] == 19.0
    assert site["open_aging"] == {"0-30": 1, "31-90": 0, ">90": 0}
    assert site["reopened"] == 1 and site["reopen_rate"] == 0.25
    assert site["share_waived"] == 0.3333
    trend = [
        (t["version"], t["patients"], t["findings"], t["total_per_100_patients"])
        for t in site["trend"]
    ]
    assert trend == [
        (1, 6, {"conformance": 1, "completeness": 2, "plausibility": 1}, 66.67),
        (2, 7, {"conformance": 0, "completeness": 1, "plausibility": 0}, 14.29),
        (3, 7, {"conformance": 1, "completeness": 1, "plausibility": 0}, 28.57),
    ]
    assert site["trend"][0]["findings_per_100_patients"] == {
        "conformance": 16.67,
        "completeness": 33.33,
        "plausibility": 16.67,
    }


def scorecard_sites(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    card = scenario["scorecard"]
    assert card["as_of"] == "2025-03-10T00:00:00+00:00"
    sites: list[dict[str, Any]] = card["sites"]
    return sites


def test_empty_registry_scorecard(tmp_path: Path) -> None:
    registry = str(tmp_path / "empty.duckdb")
    cartreg("registry", "init", registry, now=T_V3)
    card = json.loads(
        cartreg("queries", "scorecard", "--registry", registry, "--format", "json", now=T_V3)
    )
    assert card["sites"] == [] and card["as_of"] == "2025-03-03T09:00:00+00:00"
    assert "No stored versions yet." in render_html(card)


def test_scorecard_html_is_self_contained(scenario: dict[str, Any]) -> None:
    page = render_html(scenario["scorecard"])
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert page.count('<svg class="trend"') == 1 and 'id="site-QSITE"' in page


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_scorecard_in_headless_chromium(scenario: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    path = tmp_path / "scorecard.html"
    cartreg(
        "queries",
        "scorecard",
        "--registry",
        scenario["registry"],
        "--out",
        str(path),
        "--as-of",
        AS_OF,
        now=T_V3,
    )
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(path.as_uri())
            row = page.locator("#sites tbody tr").first.inner_text().split()
            assert row[:6] == ["QSITE", "3", "7", "1", "0", "3"]
            assert page.locator("svg.trend polyline").count() == 3
            assert page.locator("svg.trend circle").count() == 9
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests == [path.as_uri()]
    assert _png_is_not_blank(shot)
