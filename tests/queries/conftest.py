"""The query scenario (three submissions of QSITE through the CLI), shared by the scenario and
scorecard tests; see test_scenario.py for the story."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner

from cartreg.cdm import CDM, load_cdm
from cartreg.cli.main import cli
from cartreg.registry import init_registry
from tests.queries.helpers import Site

FIXTURE = Path(__file__).parent / "fixtures" / "site_q"
MAPPING = str(FIXTURE / "mapping.yaml")
T_V1 = "2025-01-06T09:00:00Z"
T_EXPORT = "2025-01-08T10:00:00Z"
T_IMPORT = "2025-01-15T14:30:00Z"
T_CLOSE = "2025-01-16T09:00:00Z"
T_V2 = "2025-02-03T09:00:00Z"
T_V3 = "2025-03-03T09:00:00Z"
AS_OF = "2025-03-10"
WAIVE_REASON = "P05 had no day-28 marrow: the site confirmed it was not done"
UNOBTAINABLE_REASON = "Ph status was never tested at the referring hospital"


def cartreg(*args: str, now: str, actor: str | None = None, expect: int = 0) -> str:
    env = {"CARTREG_TEST_NOW": now}
    if actor:
        env["CARTREG_ACTOR"] = actor
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.output


def answer_workbook(path: Path, answers: dict[str, tuple[str, str]]) -> None:
    """Fill the response and comment cells as a site would, by query id."""
    book = openpyxl.load_workbook(path)
    sheet = book["queries"]
    header = [c.value for c in sheet[1]]
    col_id, col_response, col_comment = (
        header.index(n) + 1 for n in ("query_id", "response", "comment")
    )
    for row in range(2, sheet.max_row + 1):
        query_id = sheet.cell(row, col_id).value
        if query_id in answers:
            response, comment = answers[query_id]
            sheet.cell(row, col_response).value = response
            sheet.cell(row, col_comment).value = comment
    book.save(path)


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("scenario")
    registry = str(work / "registry.duckdb")
    reg = ("--registry", registry)
    site = ("--site", "QSITE", "--mapping", MAPPING, *reg, "--who", "dm-q")
    out: dict[str, Any] = {"work": work, "registry": registry}
    cartreg("registry", "init", registry, now=T_V1)
    out["v1"] = cartreg(
        "registry",
        "submit",
        str(FIXTURE / "v1"),
        *site,
        "--report",
        str(work / "v1.json"),
        "--format",
        "json",
        now=T_V1,
        expect=1,
    )
    workbook = work / "QSITE-queries.xlsx"
    cartreg("queries", "export", *reg, "--site", "QSITE", "--out", str(workbook), now=T_EXPORT)
    out["exported"] = _rows(workbook)
    answer_workbook(
        workbook,
        {
            "QSITE-Q00001": ("corrected in the next submission", "typo: 15 %"),
            "QSITE-Q00002": ("corrected in the next submission", ""),
            "QSITE-Q00003": ("confirmed correct as is", "no marrow at day 28, patient refused"),
            "QSITE-Q00004": ("cannot be obtained", "not tested before referral"),
        },
    )
    out["import"] = cartreg("queries", "import", str(workbook), *reg, now=T_IMPORT, actor="site-q")
    out["import_again"] = cartreg(
        "queries", "import", str(workbook), *reg, now=T_IMPORT, actor="site-q"
    )
    cartreg(
        "queries",
        "close",
        "QSITE-Q00003",
        *reg,
        "--waive",
        "--reason",
        WAIVE_REASON,
        now=T_CLOSE,
        actor="coordinator",
    )
    cartreg(
        "queries",
        "close",
        "QSITE-Q00004",
        *reg,
        "--cannot-obtain",
        "--reason",
        UNOBTAINABLE_REASON,
        now=T_CLOSE,
        actor="coordinator",
    )
    out["v2"] = cartreg(
        "registry",
        "submit",
        str(FIXTURE / "v2"),
        *site,
        "--report",
        str(work / "v2.json"),
        "--format",
        "json",
        now=T_V2,
    )
    out["v3"] = cartreg(
        "registry",
        "submit",
        str(FIXTURE / "v3"),
        *site,
        "--report",
        str(work / "v3.json"),
        "--format",
        "json",
        now=T_V3,
        expect=1,
    )
    out["history"] = json.loads(cartreg("queries", "history", *reg, "--format", "json", now=T_V3))
    out["list"] = json.loads(cartreg("queries", "list", *reg, "--format", "json", now=T_V3))
    out["scorecard"] = json.loads(
        cartreg("queries", "scorecard", *reg, "--format", "json", "--as-of", AS_OF, now=T_V3)
    )
    for version in ("v1", "v2", "v3"):
        out[f"{version}_report"] = json.loads((work / f"{version}.json").read_text())
    return out


def _rows(path: Path) -> list[dict[str, Any]]:
    sheet = openpyxl.load_workbook(path)["queries"]
    rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


@pytest.fixture(scope="session")
def cdm() -> CDM:
    return load_cdm()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.duckdb"
    init_registry(path)
    return path


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    # A stand-in stored as the provenance of any test site's versions: it names no site_id
    # (a mapping that names one must be the storing site's own).
    path.write_text("mapping_version: '1'\n", encoding="utf-8")
    return path


@pytest.fixture
def site(
    registry: Path, mapping_file: Path, tmp_path: Path, cdm: CDM, monkeypatch: pytest.MonkeyPatch
) -> Site:
    return Site(registry, mapping_file, tmp_path, cdm, monkeypatch)
