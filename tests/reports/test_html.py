"""HTML report: self-contained, escaped, and working in a real headless browser."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

from cartreg.reports.html import render_html
from cartreg.validation import Report

CHROMIUM = Path("/usr/bin/chromium")
# headless in a container, and no call home (updates, sync, safe browsing)
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def test_html_is_self_contained_and_escaped(report: Report) -> None:
    page = render_html(report)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "Content-Security-Policy" in page
    for rule in report.rules:
        assert f'id="rule-{rule.id}"' in page
    assert 'id="chart"' in page


def _png_is_not_blank(data: bytes) -> bool:
    """True when a PNG has more than one distinct pixel row (decoded with zlib, no Pillow)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 4
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            channels = {2: 3, 6: 4, 0: 1, 4: 2}.get(color, 4) * depth // 8
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    # Filter bytes aside, a blank page compresses to identical rows; look for varied row payloads.
    rows = {raw[i * stride + 1 : (i + 1) * stride] for i in range(0, height, max(1, height // 200))}
    return len(rows) > 2


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_html_in_headless_chromium(report: Report, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=list(CHROMIUM_ARGS),
        )
        try:
            page = browser.new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path.as_uri())
            rows = page.locator("#findings tbody tr")
            visible = page.locator("#findings tbody tr:not([hidden])")
            total = rows.count()
            assert total == report.findings.height
            page.fill("#filter", "PT-003")
            assert visible.count() == 1
            assert "PT-003" in visible.first.inner_text()
            page.fill("#filter", "")
            assert visible.count() == total
            page.select_option("#severity", "warning")
            assert visible.count() == 2
            page.select_option("#severity", "")
            page.click("#findings thead th:nth-child(4)")
            first_rows = [
                int(t or 0)
                for t in page.locator("#findings tbody tr td:nth-child(4)").all_inner_texts()
            ]
            assert first_rows == sorted(first_rows)
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert _png_is_not_blank(shot)
