"""The committed sample_data/: reproducible, documented, and its answer key points at real rows."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from cartreg.paths import repo_root
from cartreg.synth.sample import write_sample_data

SAMPLE = repo_root() / "sample_data"
SITES = {
    "REDCAP_A": "redcap_a",
    "EXCEL_B": "excel_b",
    "EHR_C": "ehr_c",
    "DEID_D": "deid_d",
    "REGISTRY_A": "registry_a",
    "CLASSEUR_B": "classeur_b",
    "JSON_C": "json_c",
}
RULE_ID = re.compile(r"^(ING-[A-Z-]+|C[VRCP]-\d{3}|P[UAT]-\d{3})$")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("sample")
    write_sample_data(dest)
    return dest


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_regenerated_sample_is_byte_identical(regenerated: Path) -> None:
    # mapping.yaml files in the site folders are written by hand, not by the simulator
    produced = _files(regenerated)
    committed = [p for p in _files(SAMPLE) if p.name != "mapping.yaml"]
    assert produced == committed
    for rel in produced:
        assert (regenerated / rel).read_bytes() == (SAMPLE / rel).read_bytes(), rel


def test_every_site_has_a_readme() -> None:
    for folder in SITES.values():
        text = (SAMPLE / folder / "README.md").read_text(encoding="utf-8")
        assert len(text) > 500
        assert "defect" not in text.lower()


def _export_text(path: Path) -> str:
    if path.suffix == ".xlsx":
        book = openpyxl.load_workbook(path, read_only=True)
        cells = [
            str(v)
            for ws in book.worksheets
            for row in ws.iter_rows(values_only=True)
            for v in row
            if v is not None
        ]
        return "\n".join(cells)
    return path.read_text(encoding="utf-8")


def test_export_files_do_not_reveal_the_answer_key() -> None:
    key = pl.read_csv(SAMPLE / "defects.csv")
    words = {"defect", "answer key", "planted", "pt-0", "pa-0", "ing-"}
    for folder in SITES.values():
        for path in (SAMPLE / folder).iterdir():
            if path.name == "README.md":
                continue
            text = _export_text(path).lower()
            for word in words:
                assert word not in text, (path, word)
            for defect in key["defect"].unique():
                assert defect.lower() not in text


def _line_count(path: Path, sheet: str | None) -> int:
    if sheet is not None:
        ws = openpyxl.load_workbook(path, read_only=True)[sheet]
        return sum(1 for _ in ws.iter_rows(values_only=True))
    with path.open(encoding="utf-8", newline="") as fh:
        if path.suffix == ".ndjson":
            return sum(1 for _ in fh)
        return sum(1 for _ in csv.reader(fh))


def test_answer_key_is_well_formed_and_points_at_existing_rows() -> None:
    with (SAMPLE / "defects.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == ["site_id", "source_file", "source_row", "defect", "rule_id"]
    assert (
        24
        <= len({(r["site_id"], r["source_file"], r["source_row"], r["defect"]) for r in rows})
        <= 32
    )
    assert {r["site_id"] for r in rows} == set(SITES)
    kinds = {r["rule_id"] for r in rows}
    assert {
        "PT-003",
        "PA-004",
        "PT-002",
        "ING-UNMAPPED",
        "PU-001",
        "ING-DATE",
        "CP-001",
        "PA-001",
        "PT-011",
        "PT-006",
        "PT-027",
        "CR-014",
        "ING-DUPLICATE",
    } <= kinds
    for r in rows:
        assert RULE_ID.match(r["rule_id"]), r
        folder = SAMPLE / SITES[r["site_id"]]
        file, _, sheet = r["source_file"].partition("#")
        path = folder / file
        assert path.is_file(), r
        # REDCap's "#instrument" names a form inside the CSV; a workbook's names a sheet
        sheet_name = sheet if path.suffix == ".xlsx" else None
        if path.suffix == ".ndjson":
            assert 1 <= int(r["source_row"]) <= _line_count(path, None)
        elif path.suffix == ".json":  # the record's position in the document's array
            records = json.loads(path.read_text(encoding="utf-8"))["subjects"]
            assert 1 <= int(r["source_row"]) <= len(records), r
        else:
            assert 1 < int(r["source_row"]) <= _line_count(path, sheet_name), r


def test_clean_variant_has_the_same_cohort_without_defects(
    tmp_path: Path, regenerated: Path
) -> None:
    write_sample_data(tmp_path, clean=True)
    assert pl.read_csv(tmp_path / "defects.csv").height == 0
    clean_ids = pl.read_csv(tmp_path / "ehr_c" / "patients.csv")["STUDY_ID"]
    dirty_ids = pl.read_csv(regenerated / "ehr_c" / "patients.csv")["STUDY_ID"]
    assert clean_ids.equals(dirty_ids)
    assert (tmp_path / "ehr_c" / "events.csv").read_bytes() != (
        regenerated / "ehr_c" / "events.csv"
    ).read_bytes()
