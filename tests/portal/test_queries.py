"""Queries in the portal: the site's workbook round trip, a workbook of another site refused,
the coordinator's triage, and a scorecard that shows a site only its own card."""

from __future__ import annotations

import io
import re
from pathlib import Path

import polars as pl

from tests.portal.conftest import World
from tests.portal.helpers import SAMPLE, token
from tests.queries.conftest import answer_workbook


def _workbook(world: World, role: str, folder: Path) -> Path:
    response = world.clients[role].get("/site/queries/workbook")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    path = folder / f"{role}.xlsx"
    path.write_bytes(response.content)
    return path


def _send(world: World, role: str, path: Path):
    c = world.clients[role]
    return c.post(
        "/site/queries/workbook",
        data={"csrf_token": token(c)},
        files={"workbook": (path.name, path.read_bytes(), "application/octet-stream")},
    )


def test_a_site_answers_with_its_workbook_and_never_with_another_sites(
    world: World, tmp_path: Path
) -> None:
    mine = _workbook(world, "site_b", tmp_path)
    page = world.clients["site_b"].get("/queries?state=open").text
    query = re.findall(r'href="/queries/(EHR_C-Q\d+)"', page)[-1]
    answer_workbook(mine, {query: ("confirmed correct as is", "checked in the chart")})
    done = _send(world, "site_b", mine)
    assert done.status_code == 200, done.text
    assert "1 answered" in done.text
    shown = world.clients["site_b"].get(f"/queries/{query}").text
    assert "answered" in shown and "checked in the chart" in shown

    theirs = _workbook(world, "site_a", tmp_path)
    refused = _send(world, "site_b", theirs)  # site B sends site A's workbook
    assert refused.status_code == 400
    assert "for site REDCAP_A, not EHR_C" in refused.text
    assert str(tmp_path) not in refused.text and "/work/" not in refused.text


def test_the_coordinator_waives_and_reopens_a_query(world: World) -> None:
    carol = world.clients["coordinator"]
    page = carol.get("/queries?state=open&site=EHR_C").text
    query = re.findall(r'href="/queries/(EHR_C-Q\d+)"', page)[0]
    csrf = token(carol)
    waived = carol.post(
        f"/queries/{query}/close",
        data={
            "csrf_token": csrf,
            "resolution": "waived",
            "reason": "known, accepted",
            "expires": "2999-12-31",
        },
    )
    assert waived.status_code == 303
    assert (
        '<span class="status closed">closed (waived)</span>' in carol.get(f"/queries/{query}").text
    )
    again = carol.post(
        f"/queries/{query}/close",
        data={"csrf_token": csrf, "resolution": "waived", "reason": "twice"},
    )
    assert again.status_code == 409 and "already closed" in again.text
    reopened = carol.post(f"/queries/{query}/reopen", data={"csrf_token": csrf, "reason": "oops"})
    assert reopened.status_code == 303
    assert '<span class="status open">open</span>' in carol.get(f"/queries/{query}").text


def test_a_sites_scorecard_shows_only_that_site(world: World) -> None:
    own = world.clients["site_b"].get("/site/scorecard")
    assert own.status_code == 200
    assert 'id="site-EHR_C"' in own.text and "REDCAP_A" not in own.text
    consortium = world.clients["coordinator"].get("/coord/scorecard").text
    assert 'id="site-EHR_C"' in consortium and 'id="site-REDCAP_A"' in consortium


def test_a_workbook_that_is_not_one_gets_a_clear_message(world: World, tmp_path: Path) -> None:
    """Another spreadsheet, a cut-off workbook, an empty file, a workbook with its columns
    removed: refused in one line, nothing recorded."""
    mine = _workbook(world, "site_b", tmp_path).read_bytes()
    stripped = tmp_path / "stripped.xlsx"
    frame = pl.read_excel(io.BytesIO(mine), engine="openpyxl")
    frame.select(frame.columns[:2]).write_excel(stripped)
    cases = {
        "export.xlsx": (SAMPLE / "excel_b/CAR-T_Register_Export.xlsx").read_bytes(),
        "cut.xlsx": mine[: len(mine) // 2],
        "empty.xlsx": b"",
        "stripped.xlsx": stripped.read_bytes(),
        "answers.csv": b"query_id,response\nEHR_C-Q1,confirmed correct as is\n",
    }
    before = world.clients["site_b"].get("/queries?state=answered").text.count('href="/queries/')
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        response = _send(world, "site_b", path)
        assert response.status_code == 400, (name, response.status_code)
        message = re.findall(r"<p[^>]*>(.*?)</p>", response.text, flags=re.S)[0]
        assert "internal error" not in message and "Traceback" not in response.text, name
        assert str(tmp_path) not in response.text and "/work/" not in response.text, name
    after = world.clients["site_b"].get("/queries?state=answered").text.count('href="/queries/')
    assert after == before


def test_dates_a_coordinator_types_must_be_plausible(world: World) -> None:
    # second adversarial audit: an expiry of 1900-01-01 and a data cut of 0001-01-01 were taken
    carol = world.clients["coordinator"]
    page = carol.get("/queries?state=open&site=EHR_C").text
    query = re.findall(r'href="/queries/(EHR_C-Q\d+)"', page)[0]
    csrf = token(carol)
    past = carol.post(
        f"/queries/{query}/close",
        data={"csrf_token": csrf, "resolution": "waived", "reason": "old", "expires": "1900-01-01"},
    )
    assert past.status_code == 400 and "the expiry must be on or after" in past.text
    assert '<span class="status open">open</span>' in carol.get(f"/queries/{query}").text
    for cut, words in (("0001-01-01", "on or after 2000-01-01"), ("2999-01-01", "on or before")):
        refused = carol.post("/coord/merges", data={"csrf_token": csrf, "data_cut": cut})
        assert refused.status_code == 400 and f"the data cut must be {words}" in refused.text
