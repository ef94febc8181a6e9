"""validate_output on ingest outputs, and the answer-key acceptance test on sample_data/."""

from __future__ import annotations

import csv
import functools
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartreg.errors import InputError
from cartreg.findings import FINDING_FIELDS
from cartreg.paths import repo_root
from cartreg.validation import Report, validate_output

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


# The one rule that compares patients of different sites; every other finding of a site is the
# same whichever sites are validated with it.
CROSS_SITE_RULES = ("PU-001",)


def _stable(report_json: str) -> dict[str, Any]:
    """A JSON report without what depends on the run: its time and the order of the folders."""
    report: dict[str, Any] = json.loads(report_json)
    report.pop("generated_at")
    outputs = report["source"].get("outputs")
    if outputs:
        report["source"]["outputs"] = sorted(outputs, key=lambda o: o["out_dir"])
    return report


def test_every_order_of_the_four_sites_gives_the_same_report(
    sample_outputs: list[Path], tmp_path: Path
) -> None:
    """`cartreg validate A B C D` in all 24 orders. Each order lays the sites' chunks out
    differently; polars' pl.format panicked on some layouts (see cartreg.exprs)."""
    from click.testing import CliRunner

    from cartreg.cli.main import cli

    reports = set()
    for i, order in enumerate(itertools.permutations(sample_outputs)):
        path = tmp_path / f"{i}.json"
        result = CliRunner().invoke(
            cli, ["validate", *map(str, order), "--format", "json", "--report", str(path)]
        )
        assert result.exit_code == 1, (order, result.output)  # the samples have error findings
        reports.add(json.dumps(_stable(path.read_text(encoding="utf-8")), sort_keys=True))
    assert len(reports) == 1


@settings(max_examples=6)
@given(st.data())
def test_a_site_has_the_same_findings_with_any_other_sites(
    sample_outputs: list[Path], data: st.DataObject
) -> None:
    """Two or three of the sites (all four: above), in any order: the report is that of the
    subset in a fixed order, and each site's findings (but for cross-site rules) are those it
    has when validated alone."""
    size = data.draw(st.integers(2, len(sample_outputs) - 1))
    chosen = data.draw(st.permutations(sample_outputs))[:size]
    report = validate_output(chosen, generated_at="fixed")
    assert _stable(report.to_json()) == _stable(_validated(tuple(sorted(chosen))).to_json())
    for out in chosen:
        alone = _validated((out,)).findings.filter(~pl.col("rule_id").is_in(CROSS_SITE_RULES))
        mine = report.findings.filter(
            pl.col("site_id").is_in(alone["site_id"].unique().implode())
            & ~pl.col("rule_id").is_in(CROSS_SITE_RULES)
        )
        assert mine.select(FINDING_FIELDS).equals(alone.select(FINDING_FIELDS))


@functools.cache
def _validated(outs: tuple[Path, ...]) -> Report:
    return validate_output(list(outs), generated_at="fixed")


def test_validation_reports_each_table_and_rule_batch_done(sample_outputs: list[Path]) -> None:
    from cartreg.progress import Step

    steps: list[Step] = []
    report = validate_output(sample_outputs[0], on_step=steps.append)
    schema = [s for s in steps if s.stage == "schema"]
    rules = [s for s in steps if s.stage == "rules"]
    assert sorted(s.done for s in schema) == list(range(1, 8))
    assert {s.total for s in schema} == {7} and len({s.item for s in schema}) == 7
    assert [s.done for s in rules] == sorted(s.done for s in rules)
    assert rules[-1].done == rules[-1].total == len(report.rules)
