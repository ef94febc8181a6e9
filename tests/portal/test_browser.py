"""The portal in headless Chromium (Playwright, Debian's chromium) against a real server.

A site user signs in, uploads a sample export, watches it being processed, reads the report,
answers a query and resubmits the corrected export; the coordinator accepts and merges; a
statistician downloads the merged data and cannot open a site's report. Every page loads
without a console error, and screenshots are not blank. A value with a script in it is shown as
text, and the portal's CSP refuses inline script in a real browser.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal.helpers import PASSWORD, SAMPLE, SECRET, make_registry
from tests.portal.live import serve
from tests.reports.test_html import CHROMIUM, CHROMIUM_ARGS, _png_is_not_blank

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("browser")
    users = {
        "alice": ("site", "REDCAP_A"),
        "bob": ("site", "EHR_C"),
        "carol": ("coordinator", None),
        "sam": ("statistician", None),
    }
    registry = make_registry(root / "registry.duckdb", users=users)
    secret = root / "consortium.secret"
    secret.write_bytes(SECRET)
    with serve(registry, root / "server.log", secret_file=secret) as base:
        yield base, root


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


class Session:
    """One user's browser context, collecting console errors and dialogs."""

    def __init__(self, browser: Any, base: str, root: Path, name: str) -> None:
        self.context = browser.new_context(accept_downloads=True)
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.base, self.root, self.name = base, root, name
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.shots = 0

    def sign_in(self) -> None:
        self.page.goto(f"{self.base}/login")
        self.page.fill("input[name=user]", self.name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("form.login button[type=submit]")
        self.page.wait_for_load_state()

    def sign_out(self) -> None:
        self.page.click("form.signout button")
        self.page.wait_for_url("**/login")

    def screenshot(self) -> None:
        shot = self.page.screenshot(full_page=True)
        self.shots += 1
        (self.root / f"{self.name}-{self.shots}.png").write_bytes(shot)
        assert _png_is_not_blank(shot), f"blank page: {self.page.url}"

    def upload(self, files: list[Path]) -> str:
        """Upload and watch it processed; returns the outcome message."""
        self.page.goto(f"{self.base}/site")
        self.page.set_input_files("input[name=files]", [str(f) for f in files])
        self.page.click("form.upload button[type=submit]")
        self.page.wait_for_url("**/uploads/*")
        self.page.wait_for_selector("#result:not([hidden])", timeout=TIMEOUT_MS)
        steps = self.page.locator("#steps li").all_inner_texts()
        assert any(s.startswith("mapping ") for s in steps), steps  # progress was shown
        assert self.page.inner_text("#stage") == "done"
        self.screenshot()
        return self.page.inner_text("#outcome")

    def close(self) -> None:
        self.context.close()


def _corrected_export(folder: Path) -> list[Path]:
    """REDCAP_A's export with the death date filled in for the patient reported dead (CP-003)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (SAMPLE / "redcap_a/records.csv").read_text().splitlines()
    header = lines[0].split(",")
    fixed = []
    for line in lines:
        cells = line.split(",")
        if cells[header.index("fu_vital")] == "0" and not cells[header.index("fu_death_date")]:
            cells[header.index("fu_death_date")] = cells[header.index("fu_last_contact")]
        fixed.append(",".join(cells))
    (folder / "records.csv").write_text("\n".join(fixed) + "\n")
    (folder / "data_dictionary.csv").write_bytes(
        (SAMPLE / "redcap_a/data_dictionary.csv").read_bytes()
    )
    return [folder / "records.csv", folder / "data_dictionary.csv"]


def test_site_coordinator_and_statistician_in_a_real_browser(
    server: tuple[str, Path], browser: Any
) -> None:
    base, root = server
    sample = SAMPLE / "redcap_a"

    site = Session(browser, base, root, "alice")
    site.sign_in()
    assert site.page.url.endswith("/site")
    site.screenshot()
    outcome = site.upload([sample / "records.csv", sample / "data_dictionary.csv"])
    assert "stored as version 1" in outcome and "queries:" in outcome
    site.page.click("#result-link")
    site.page.wait_for_url("**/submissions/*")
    submission_url = site.page.url
    assert "REDCAP_A version 1" in site.page.inner_text("h1")
    site.page.click("text=Validation report")
    site.page.wait_for_url("**/report")
    rows = site.page.locator("#findings tbody tr")
    shown = site.page.locator("#findings tbody tr:not([hidden])")
    total = rows.count()
    assert total > 1
    site.page.fill("#filter", "CP-003")  # the report's own (hashed) script filters the table
    assert 1 <= shown.count() < total
    site.screenshot()
    report_url = site.page.url

    site.page.goto(f"{base}/queries")
    site.page.locator("tr", has_text="CP-003").locator("a").first.click()
    site.page.wait_for_url("**/queries/REDCAP_A-Q*")
    query_url = site.page.url
    site.page.select_option("select[name=response]", "corrected")
    site.page.fill("input[name=comment]", "death date added from the hospital record")
    site.page.click("form.respond button[type=submit]")
    site.page.wait_for_load_state()
    assert "answered" in site.page.inner_text("h1")
    site.screenshot()

    outcome = site.upload(_corrected_export(root / "corrected"))
    assert "stored as version 2" in outcome and "resolved" in outcome
    site.page.goto(query_url)
    assert "closed (resolved)" in site.page.inner_text("h1")
    site.sign_out()

    coordinator = Session(browser, base, root, "carol")
    coordinator.sign_in()
    assert coordinator.page.url.endswith("/coord")
    coordinator.page.click("text=REDCAP_A")
    coordinator.page.locator("tr", has_text="rejected").first.locator("a", has_text="open").click()
    coordinator.page.fill("input[name=reason]", "reviewed: the remaining findings are known")
    coordinator.page.click("button[value=accepted]")
    coordinator.page.wait_for_load_state()
    assert "accepted" in coordinator.page.inner_text("h1")
    coordinator.page.goto(f"{base}/coord/merges")
    coordinator.page.fill("input[name=data_cut]", "2025-06-30")
    coordinator.page.click("form.merge button[type=submit]")
    coordinator.page.wait_for_selector("#download-dataset", timeout=TIMEOUT_MS)
    merge_url = coordinator.page.url
    coordinator.screenshot()
    coordinator.sign_out()

    statistician = Session(browser, base, root, "sam")
    statistician.sign_in()
    assert statistician.page.url.endswith("/data")
    statistician.page.click(f"a[href='{merge_url.removeprefix(base)}']")
    with statistician.page.expect_download() as download:
        statistician.page.click("#download-dataset")
    data = Path(download.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = archive.namelist()
    assert manifest["patient_keys"]["pseudonymized"] is True
    assert "tables/patients.parquet" in names
    statistician.page.click("#analysis-report")
    statistician.page.wait_for_url("**/analysis")
    statistician.screenshot()
    for forbidden in (report_url, submission_url, query_url):
        response = statistician.page.goto(forbidden)
        assert response is not None and response.status == 403
        assert "#findings" not in statistician.page.content()
        assert "Not allowed" in statistician.page.inner_text("h1")
    statistician.screenshot()

    for session in (site, coordinator, statistician):
        # the only console errors allowed: the browser noting the refused (403) pages
        unexpected = [e for e in session.errors if "403" not in e]
        assert unexpected == [], (session.name, unexpected)
        assert session.dialogs == []
        session.close()


INJECTED = (
    "<script>alert(1)</script><img src=x onerror=alert(2)>"  # no comma or quote: one CSV cell
)


def test_a_script_in_an_uploaded_value_stays_text_and_csp_blocks_inline_script(
    server: tuple[str, Path], browser: Any
) -> None:
    base, root = server
    folder = root / "injected"
    folder.mkdir()
    lines = (SAMPLE / "ehr_c/patients.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = INJECTED  # SEX
    lines[1] = ",".join(cells)
    (folder / "patients.csv").write_text("\n".join(lines) + "\n")
    (folder / "events.csv").write_bytes((SAMPLE / "ehr_c/events.csv").read_bytes())
    site = Session(browser, base, root, "bob")
    site.sign_in()
    site.upload([folder / "patients.csv", folder / "events.csv"])
    site.page.click("#result-link")
    site.page.wait_for_url("**/submissions/*")
    for page_url in (site.page.url, site.page.url + "/report", f"{base}/queries?state=all"):
        site.page.goto(page_url)
        assert INJECTED in site.page.inner_text("body")  # shown, as text
        assert site.page.locator("img[src=x]").count() == 0
    blocked = site.page.evaluate(
        """() => new Promise((resolve) => {
             document.addEventListener("securitypolicyviolation",
               (e) => resolve(e.violatedDirective), {once: true});
             const s = document.createElement("script");
             s.textContent = "window.__ran = true";
             document.body.appendChild(s);
             setTimeout(() => resolve(window.__ran ? "ran" : "no event"), 2000);
           })"""
    )
    assert blocked.startswith("script-src"), blocked
    assert site.dialogs == []
    site.close()
