"""The seven sample sites: exact row reconciliation, answer-key ingest defects, and the clean
variant harmonizing to exactly what each site's export tells (the generating cohort for the
four original layouts, the layout's site truth for the registry-style ones), field by field,
with the derived values and their provenance."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.ingest import IngestResult, ingest_submission
from cartreg.paths import repo_root

SAMPLE = repo_root() / "sample_data"
ORIGINAL = ("redcap_a", "excel_b", "ehr_c", "deid_d")
REGISTRY_STYLE = ("registry_a", "classeur_b", "json_c")
SITES = ORIGINAL + REGISTRY_STYLE
DAYS_ONLY = ("deid_d", "json_c")
AGE_BOUNDS = ("age_at_index_min_years", "age_at_index_max_years")


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


@pytest.fixture(scope="module")
def ingested(cdm: CDM) -> dict[str, IngestResult]:
    return {
        s: ingest_submission(SAMPLE / s, SAMPLE / s / "mapping.yaml", None, cdm=cdm) for s in SITES
    }


@pytest.mark.parametrize("site", SITES)
def test_every_source_row_is_accounted_for(site: str, ingested: dict[str, IngestResult]) -> None:
    result = ingested[site]
    assert result.manifest["site_id"] == site.upper()
    for source in result.manifest["sources"]:
        assert source["rows_read"] > 0
        assert source["rows_read"] == source["rows_harmonized"] + source["rows_quarantined"]
        quarantined = result.quarantine[source["source"]]
        assert quarantined.height == source["rows_quarantined"]


def test_answer_key_ingest_defects_are_found(ingested: dict[str, IngestResult]) -> None:
    key = pl.read_csv(SAMPLE / "defects.csv", infer_schema=False).filter(
        pl.col("rule_id").str.starts_with("ING-")
    )
    assert key.height > 0
    findings = pl.concat([r.findings for r in ingested.values()]).select(
        "site_id", "source_file", pl.col("source_row").cast(pl.String), "rule_id"
    )
    missed = key.join(findings, on=["site_id", "source_file", "source_row", "rule_id"], how="anti")
    assert missed.height == 0, missed.rows()


def test_a_larger_cohort_gives_no_ingest_error_beyond_its_planted_defects(
    cdm: CDM, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The sample mappings are the sites' own: a cohort ten times the sample's (with spellings
    the sample never drew, e.g. every reinfusion reason) harmonizes with the planted defects as
    its only ingest errors."""
    from click.testing import CliRunner

    from cartreg.cli.main import cli

    out = tmp_path_factory.mktemp("cohort")
    args = ["synth", "--patients", "2000", "--sites", "4", "--seed", "7", "--out", str(out)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    key = pl.read_csv(out / "defects.csv", infer_schema=False).filter(
        pl.col("rule_id").str.starts_with("ING-")
    )
    columns = ["site_id", "source_file", "source_row", "rule_id"]
    errors = []
    for site in ORIGINAL:
        result = ingest_submission(
            out / "sites" / site, SAMPLE / site / "mapping.yaml", None, cdm=cdm
        )
        errors.append(
            result.findings.filter(pl.col("severity") == "error").select(
                "site_id", "source_file", pl.col("source_row").cast(pl.String), "rule_id"
            )
        )
    found = pl.concat(errors).unique()
    assert found.join(key, on=columns, how="anti").rows() == []  # nothing unplanted
    assert key.join(found, on=columns, how="anti").rows() == []  # every planted one


def _comparable_columns(cdm: CDM, table: str, deidentified: bool) -> list[str]:
    spec = cdm.tables[table]
    offsets = {c.sibling_of for c in spec.columns if c.role == "day_offset"}
    columns = []
    for col in spec.columns:
        # Provenance of derived values and the age bounds are checked on their own (below).
        if col.role in ("lineage", "raw", "derivation", "derived_from") or col.name in AGE_BOUNDS:
            continue
        # A de-identified site gives day offsets only: its event dates cannot be recovered.
        dated = col.name in offsets or (col.role == "precision" and col.sibling_of in offsets)
        if deidentified and dated:
            continue
        columns.append(col.name)
    return columns


def _differences(
    expected: pl.DataFrame, got: pl.DataFrame, key: list[str], columns: list[str]
) -> list[str]:
    joined = expected.select(columns).join(
        got.select(columns), on=key, how="full", suffix="__got", coalesce=True, nulls_equal=True
    )
    problems = []
    for column in columns:
        if column in key:
            continue
        a, b = pl.col(column), pl.col(f"{column}__got")
        if expected.schema[column] == pl.Float64:
            same = ((a - b).abs() <= 1e-9 * a.abs().clip(1.0)).fill_null(False) | (
                a.is_null() & b.is_null()
            )
        else:
            same = a.eq_missing(b)
        bad = joined.filter(~same)
        if bad.height:
            problems.append(
                f"{column}: {bad.height} rows, e.g. {bad.select(*key, column, f'{column}__got').row(0)}"
            )
    return problems


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, cdm: CDM) -> dict[str, IngestResult]:
    """Each clean site rendered from the seeds, ingested with its committed mapping."""
    synth = pytest.importorskip("cartreg.synth.sample")
    folder = tmp_path_factory.mktemp("clean")
    synth.write_sample_data(folder, clean=True)
    out = {}
    for site in SITES:
        shutil.copy(SAMPLE / site / "mapping.yaml", folder / site / "mapping.yaml")
        out[site] = ingest_submission(folder / site, folder / site / "mapping.yaml", None, cdm=cdm)
    return out


@pytest.mark.parametrize("site", SITES)
def test_clean_sample_harmonizes_to_the_truth_field_by_field(
    site: str, clean: dict[str, IngestResult], cdm: CDM
) -> None:
    from cartreg.synth.registry_style import registry_style_cohort
    from cartreg.synth.sample import sample_cohort, sample_site_truth

    result = clean[site]
    errors = result.findings.filter(pl.col("severity") == "error")
    assert errors.height == 0, errors.select("rule_id", "source_row", "message").rows()[:5]
    expected_tables = sample_site_truth(site.upper())
    problems: list[str] = []
    for table, spec in cdm.tables.items():
        expected, got = expected_tables[table], result.tables[table]
        if expected.height != got.height:
            problems.append(f"{table}: {got.height} rows, truth has {expected.height}")
        columns = _comparable_columns(cdm, table, deidentified=site in DAYS_ONLY)
        problems += [
            f"{table}.{p}" for p in _differences(expected, got, list(spec.primary_key), columns)
        ]
    cohort = registry_style_cohort() if site in REGISTRY_STYLE else sample_cohort()
    true_patients = cohort.site_tables(site.upper())["patients"]
    problems += _age_bound_problems(site, true_patients, result.tables["patients"])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("site", REGISTRY_STYLE)
def test_registry_style_sites_get_derived_values_with_provenance(
    site: str, clean: dict[str, IngestResult]
) -> None:
    tables = clean[site].tables
    relapses = tables["progression_events"].filter(pl.col("event_type") == "RELAPSE_AFTER_CR")
    assert relapses.height > 0
    # no site of this kind gives the remission: every one was derived, from an assessment row
    assert relapses["remission_date_derivation"].to_list() == (
        ["FIRST_REMISSION_ASSESSMENT"] * relapses.height
    )
    assessment_ids = set(tables["disease_assessments"]["assessment_id"])
    assert set(relapses["remission_date_derived_from"]) <= assessment_ids
    index = tables["car_t_infusions"].filter(pl.col("is_index_infusion"))
    assert set(index["disease_burden_derivation"]) == {"PRE_INFUSION_BLASTS"}
    assert (index["disease_burden_derived_from"] == index["infusion_id"]).all()
    follow = tables["follow_up"]
    assert set(follow["disease_status"]) == {"PROGRESSED", "PROGRESSION_FREE"}
    assert follow["disease_status_day"].null_count() == 0


def _age_bound_problems(site: str, truth: pl.DataFrame, got: pl.DataFrame) -> list[str]:
    """Every patient with a birth year gets age bounds from it, and they contain the true age."""
    joined = truth.select("patient_key", "birth_year", true_age="age_at_index_years").join(
        got, on="patient_key"
    )
    with_year = joined.filter(pl.col("birth_year").is_not_null())
    # The simulated age is reported truncated to 0.1 year, so it may sit just under the bound.
    low = pl.col("age_at_index_min_years") - 0.1
    bad = with_year.filter(
        ~pl.col("true_age").is_between(low, "age_at_index_max_years")
        | (pl.col("age_at_index_min_years_derivation") != "BIRTH_YEAR")
        | (pl.col("age_at_index_max_years_derived_from") != pl.format("{}-INF1", "patient_key"))
    )
    if with_year.is_empty() or bad.height:
        return [f"{site} patients age bounds: {bad.height} of {with_year.height} rows wrong"]
    return []
