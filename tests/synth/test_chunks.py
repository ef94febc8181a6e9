"""Large cohorts are simulated and written in chunks: the pieces must form one cohort."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import polars as pl
from polars.testing import assert_frame_equal

from cartreg.synth.cohort import iter_cohort_chunks, simulate_cohort
from cartreg.synth.sample import synthesize


def test_first_chunk_is_the_in_memory_cohort() -> None:
    chunks = list(iter_cohort_chunks(130, 3, seed=9, chunk_size=50))
    assert [c.tables["patients"].height for c in chunks] == [50, 50, 30]
    whole = simulate_cohort(50, 3, seed=9)
    for name, frame in whole.tables.items():
        assert_frame_equal(frame, chunks[0].tables[name])
    keys = pl.concat([c.tables["patients"]["patient_key"] for c in chunks])
    assert keys.n_unique() == 130
    rows = pl.concat([c.tables["disease_assessments"]["source_row"] for c in chunks])
    assert rows.to_list() == list(range(1, rows.len() + 1))


def test_chunked_files_have_one_header_and_every_patient(tmp_path: Path) -> None:
    synthesize(tmp_path, n_patients=130, n_sites=4, seed=9, chunk_size=50)
    patients = pl.read_parquet(tmp_path / "truth" / "patients.parquet")
    assert patients.height == 130 and patients["patient_key"].n_unique() == 130
    per_site = dict(patients.group_by("site_id").len().iter_rows())
    records = (tmp_path / "sites" / "redcap_a" / "records.csv").read_text().splitlines()
    assert sum(1 for line in records if line.startswith("record_id,")) == 1
    ehr = pl.read_csv(tmp_path / "sites" / "ehr_c" / "patients.csv")
    assert ehr.height == per_site["EHR_C"] and ehr["STUDY_ID"].n_unique() == ehr.height
    lines = (tmp_path / "sites" / "deid_d" / "cohort.ndjson").read_text().splitlines()
    assert len(lines) == per_site["DEID_D"]
    sheet = openpyxl.load_workbook(tmp_path / "sites" / "excel_b" / "CAR-T_Register_Export.xlsx")
    # one patient more than the truth: the duplicate copied from REDCAP_A
    assert sheet["Patienten"].max_row == per_site["EXCEL_B"] + 2
    key = pl.read_csv(tmp_path / "defects.csv")
    assert key.height > 0


def test_same_options_give_byte_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        synthesize(tmp_path / name, n_patients=90, n_sites=4, seed=12, chunk_size=40)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".xlsx" for p in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
