"""The site workbook: what it shows, what a site may edit, and what an import refuses."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from cartreg.errors import InputError
from cartreg.queries.workbook import check_workbook, read_workbook, write_workbook
from cartreg.registry import init_registry, open_registry
from tests.queries.helpers import SITE, Site, blasts
from tests.registry.helpers import combine, patient
from tests.zips import with_compression_method, with_version_needed

WHEN = dt.datetime(2025, 1, 11, 9, tzinfo=dt.UTC)
BIRTH_DATE = "1975-04-13"


def birth_date(row: int) -> dict[str, Any]:
    return {
        **blasts(row, BIRTH_DATE),
        "rule_id": "ING-DATE",
        "table": "patients",
        "column": "birth_date",
        "source_file": "patients.csv",
        "message": f"ambiguous date {BIRTH_DATE}",
    }


@pytest.fixture
def exported(site: Site, tmp_path: Path) -> Path:
    """SITE_A v1 with three queries: a formula-like value, a birth date, rich markup."""
    rows = combine(patient(SITE, "1", assessments=2), patient(SITE, "2"))
    site.submit(
        "2025-01-10T09:00:00Z",
        rows,
        [blasts(2, '=HYPERLINK("http://x.example","1")'), blasts(3, "[red]4[/]"), birth_date(3)],
    )
    path = tmp_path / "SITE_A-queries.xlsx"
    with open_registry(site.registry) as reg:
        count = write_workbook(
            reg, SITE, path, guidance={"PA-004": "check"}, identifiers={"birth_date"}, when=WHEN
        )
    assert count == 3
    return path


def test_only_the_response_columns_are_open_to_the_site(exported: Path) -> None:
    book = openpyxl.load_workbook(exported)
    sheet = book["queries"]
    header = [c.value for c in sheet[1]]
    assert header[-2:] == ["response", "comment"]
    assert sheet.protection.sheet and book["about"].protection.sheet
    for row in sheet.iter_rows(min_row=2, max_row=sheet.max_row):
        assert [c.protection.locked for c in row] == [True] * (len(header) - 2) + [False, False]
    (rule,) = sheet.data_validations.dataValidation
    assert rule.type == "list" and str(rule.sqref) == f"M2:M{sheet.max_row}"
    assert rule.formula1 == (
        '"corrected in the next submission,confirmed correct as is,cannot be obtained"'
    )
    about = dict(book["about"].iter_rows(values_only=True))
    assert about["site_id"] == SITE and about["format"] == "cartreg-queries 1"


def test_identifiers_are_masked_and_formulas_never_run(exported: Path, site: Site) -> None:
    sheet = openpyxl.load_workbook(exported)["queries"]
    cells = [c for row in sheet.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    values = {r[6]: r[5] for r in sheet.iter_rows(min_row=2, values_only=True)}
    texts = " ".join(str(c.value) for c in cells if c.value is not None)
    assert BIRTH_DATE not in texts
    assert values["ING-DATE"] == "***"
    assert '\'=HYPERLINK("http://x.example","1")' in texts
    with open_registry(site.registry) as reg:
        stored = reg.conn.execute("SELECT value FROM queries WHERE rule_id = 'ING-DATE'").fetchall()
    assert stored == [("***",)]


def test_the_query_list_shows_site_values_as_text(exported: Path, site: Site) -> None:
    from click.testing import CliRunner

    from cartreg.cli.main import cli

    result = CliRunner().invoke(
        cli,
        ["queries", "list", "--registry", str(site.registry)],
        env={"COLUMNS": "200"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert "[red]4[/]" in result.output and "***" in result.output
    assert BIRTH_DATE not in result.output


def _answer(path: Path, edits: dict[str, Any]) -> None:
    book = openpyxl.load_workbook(path)
    for ref, value in edits.items():
        sheet, cell = ref.split("!")
        book[sheet][cell] = value
    book.save(path)


def test_answers_are_read_by_header_and_label(exported: Path) -> None:
    _answer(
        exported,
        {
            "queries!M2": "Corrected in the next submission.",
            "queries!N2": "=SUM(1,2)",
            "queries!N3": "asked the lab",
            "queries!M4": "cannot be obtained",
        },
    )
    answers = read_workbook(exported)
    assert answers.site_id == SITE and len(answers.query_ids) == 3
    assert answers.rows.rows() == [
        ("SITE_A-Q00001", "corrected", "=SUM(1,2)"),
        ("SITE_A-Q00002", None, "asked the lab"),
        ("SITE_A-Q00003", "unobtainable", None),
    ]


@pytest.mark.parametrize(
    "damage",
    [lambda data: with_version_needed(data, 203), lambda data: with_compression_method(data, 99)],
)
def test_a_damaged_workbook_is_unreadable_input(
    exported: Path, tmp_path: Path, damage: Any
) -> None:
    # the zip damage the fuzz run found in site exports, in a workbook sent back: the archive
    # does not open (version 20.3), or its sheets do not unpack (an unknown method)
    damaged = tmp_path / "answers.xlsx"
    damaged.write_bytes(damage(exported.read_bytes()))
    with pytest.raises(InputError, match="not a readable XLSX workbook"):
        read_workbook(damaged)


def test_a_workbook_that_unpacks_to_too_much_is_refused_before_it_is_read(
    exported: Path, tmp_path: Path
) -> None:
    # adversarial audit: the portal takes a 20 MB workbook from any site user, and openpyxl
    # holds shared strings in memory; a part that unpacks to 80 MiB stands for a zip bomb
    import zipfile

    from cartreg.ingest.limits import MAX_QUERY_WORKBOOK_XML_BYTES

    bomb = tmp_path / "answers.xlsx"
    with zipfile.ZipFile(exported) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("xl/padding.xml", b" " * (MAX_QUERY_WORKBOOK_XML_BYTES + 2**24))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(
        InputError, match=r"unpacks to 80 MiB, more than the 64 MiB a query workbook may"
    ):
        read_workbook(bomb)


def test_a_workbook_with_more_rows_than_any_query_list_is_refused(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cartreg.queries.workbook as workbook

    answers = read_workbook(exported)
    monkeypatch.setattr(workbook, "MAX_QUERY_ROWS", len(answers.query_ids))
    read_workbook(exported)  # as many rows as the limit: read
    monkeypatch.setattr(workbook, "MAX_QUERY_ROWS", len(answers.query_ids) - 1)
    with pytest.raises(InputError, match=r"sheet 'queries' has more than \d+ rows"):
        read_workbook(exported)


def test_a_workbook_of_another_registry_or_site_is_refused(
    exported: Path, site: Site, tmp_path: Path
) -> None:
    other = tmp_path / "other.duckdb"
    init_registry(other)
    answers = read_workbook(exported)
    with open_registry(other) as reg, pytest.raises(InputError, match="another registry"):
        check_workbook(reg, answers, exported)
    with open_registry(site.registry) as reg:
        with pytest.raises(InputError, match="is for site SITE_A, not SITE_B"):
            check_workbook(reg, answers, exported, site="SITE_B")
        _answer(exported, {"queries!A3": "SITE_A-Q00077"})
        unknown = "query id SITE_A-Q00077 is not a query of site SITE_A in this registry"
        with pytest.raises(InputError, match=unknown):
            check_workbook(reg, read_workbook(exported), exported)
        _answer(exported, {"queries!A3": "SITE_A-Q00002", "about!B3": "SITE_B"})
        # another site's query reads as unknown: a site learns nothing of other sites' ids
        foreign = "query id SITE_A-Q00001 is not a query of site SITE_B in this registry"
        with pytest.raises(InputError, match=foreign):
            check_workbook(reg, read_workbook(exported), exported)
    _answer(exported, {"queries!A3": "SITE_A-Q00001"})
    with pytest.raises(InputError, match=r"SITE_A-Q00001 appears twice \(rows 2 and 3\)"):
        read_workbook(exported)


def _cartreg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cartreg", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_refuses_a_bad_workbook_with_one_line_and_exit_2(
    exported: Path, site: Site, tmp_path: Path
) -> None:
    registry = ("--registry", str(site.registry))
    wrong_site = _cartreg("queries", "import", str(exported), *registry, "--site", "SITE_B")
    _answer(exported, {"queries!M3": "maybe later"})
    bad_answer = _cartreg("queries", "import", str(exported), *registry)
    not_xlsx = tmp_path / "answers.xlsx"
    not_xlsx.write_text("query_id,response\n", encoding="utf-8")
    not_a_workbook = _cartreg("queries", "import", str(not_xlsx), *registry)
    for result, expected in (
        (wrong_site, "the workbook is for site SITE_A, not SITE_B"),
        (bad_answer, "queries row 3, column response: 'maybe later' is not one of the answers"),
        (not_a_workbook, "not a readable XLSX workbook"),
    ):
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert expected in lines[0]
    with open_registry(site.registry) as reg:  # nothing was recorded
        assert reg.scalar("SELECT count(*) FROM query_events WHERE action <> 'open'") == 0
