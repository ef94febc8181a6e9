"""validate_output on ingest outputs, and the answer-key acceptance test on sample_data/."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from cartreg.errors import InputError
from cartreg.paths import repo_root
from cartreg.validation import validate_output

SAMPLES = repo_root() / "sample_data"
SITES = ("redcap_a", "excel_b", "ehr_c", "deid_d", "registry_a", "classeur_b", "json_c")


@pytest.fixture(scope="module")
def sample_outputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from cartreg.ingest import ingest_submission

    root = tmp_path_factory.mktemp("samples")
    outs = []
    for site in SITES:
        out = root / site
        ingest_submission(SAMPLES / site, SAMPLES / site / "mapping.yaml", out)
        outs.append(out)
    return outs


def test_answer_key(sample_outputs: list[Path]) -> None:
    """Every defect is reported by the rule it names at its site, file and row, and no error
    is reported outside the answer key (all sites validated together, for cross-site rules)."""
    with (SAMPLES / "defects.csv").open(encoding="utf-8", newline="") as handle:
        key = {
            (r["site_id"], r["source_file"], int(r["source_row"]), r["rule_id"])
            for r in csv.DictReader(handle)
        }
    report = validate_output(sample_outputs)
    found = report.findings.select("site_id", "source_file", "source_row", "rule_id").rows()
    missing = key - set(found)
    assert not missing, sorted(missing)
    errors = (
        report.findings.filter(severity="error")
        .select("site_id", "source_file", "source_row", "rule_id", "message")
        .rows()
    )
    extra = [e for e in errors if e[:4] not in key]
    assert not extra, extra
    assert "ERROR" not in report.results["status"].to_list()


def test_several_outputs_are_validated_together(tmp_path: Path) -> None:
    from tests.reports.conftest import write_output

    one = write_output(tmp_path / "one")
    two = tmp_path / "two"
    shutil.copytree(one, two)
    report = validate_output([one, two])
    # the same rows twice: the single-output findings doubled, plus duplicate-key findings
    single = validate_output(one)
    assert report.findings.height > single.findings.height
    assert len(report.to_dict()["source"]["outputs"]) == 2


def test_missing_folder_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="output folder not found"):
        validate_output(tmp_path / "nope")


def test_csv_tables_give_the_same_rule_findings(tmp_path: Path) -> None:
    """Text tables (CSV) are converted to CDM dtypes before the rules run."""
    import polars as pl

    from tests.reports.conftest import write_output

    parquet = write_output(tmp_path / "parquet")
    csv_dir = tmp_path / "csv"
    (csv_dir / "tables").mkdir(parents=True)
    for path in (parquet / "tables").glob("*.parquet"):
        pl.read_parquet(path).write_csv(csv_dir / "tables" / f"{path.stem}.csv")
    expected = validate_output(parquet).findings
    got = validate_output(csv_dir).findings
    rule_rows = ["rule_id", "table", "source_file", "source_row"]
    assert (
        got.filter(~pl.col("rule_id").str.starts_with("CDM-"))
        .select(rule_rows)
        .equals(expected.filter(~pl.col("rule_id").str.starts_with("ING-")).select(rule_rows))
    )


def test_library_never_imports_the_cli() -> None:
    src = repo_root() / "src" / "cartreg"
    files = [
        src / "validation.py",
        *(src / "rules").rglob("*.py"),
        *(src / "reports").rglob("*.py"),
        *(src / "interop").rglob("*.py"),
    ]
    offenders = [f.name for f in files if "cartreg.cli" in f.read_text(encoding="utf-8")]
    assert offenders == []


def test_clean_sample_sites_give_no_error_validated_together(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The clean render of all seven sample sites, each ingested with its committed mapping and
    validated together (cross-site rules included), reports no error finding."""
    from cartreg.ingest import ingest_submission
    from cartreg.synth.sample import write_sample_data

    root = tmp_path_factory.mktemp("clean")
    write_sample_data(root / "sites", clean=True)
    outs = []
    for site in SITES:
        shutil.copy(SAMPLES / site / "mapping.yaml", root / "sites" / site / "mapping.yaml")
        out = root / "out" / site
        ingest_submission(root / "sites" / site, root / "sites" / site / "mapping.yaml", out)
        outs.append(out)
    report = validate_output(outs)
    errors = report.findings.filter(severity="error")
    assert errors.height == 0, errors.select("site_id", "rule_id", "message").rows()[:5]
    assert set(report.findings["site_id"]) <= {s.upper() for s in SITES}
