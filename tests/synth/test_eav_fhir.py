"""The long and linked sample layouts (issue 14): an entity-attribute-value extract with a
codebook and a FHIR R4-style bundle, rendered by the simulator from its truth, ingested with
their hand-written mappings and validated.

On the clean renders: no error, no warning the truth itself does not get (so none from the
mapping's limits), and every truth field the export holds equals the simulator's truth, patient by patient. On the
renders with planted defects: each is reported by the rule the answer key names, at its row.

Fields these layouts do not carry (so not compared): KMT2A, cytogenetic
risk, prior HCT as a flag and the prior blinatumomab response; infusion setting, trial, dose,
lymphodepletion, bridging and CD19 before infusion; the marrows' counts (ANC, platelets),
specimen, EMD, CNS status and time-point label; the progression's site, marrow blasts and
remission date (ingest derives the remission from the day-28 marrow); the transplant's disease
status. A salvage response "not evaluated" has no date of its own.

A reinfusion's pre-infusion marrow is, in these exports as in a hospital's, the latest marrow in
the three weeks before it; the simulator records pre-infusion values for the index infusion
only, so a reinfusion is compared on its date and product alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from cartreg.cdm import load_cdm
from cartreg.ingest import ingest_submission
from cartreg.synth import long_linked
from cartreg.synth.answer_key import compare_with_answer_key
from cartreg.synth.cohort import Cohort, SiteInfo, simulate_cohort
from cartreg.synth.defects import Picker, answer_key_frame
from cartreg.synth.render import fhir
from cartreg.synth.render.common import Export, write_export
from cartreg.validation import validate_output

LAYOUTS = long_linked.LAYOUTS
PATIENTS = 40
SEED = 14

# Per table: the rows compared (their key, then the truth fields the layouts carry).
FIELDS: dict[str, tuple[str, ...]] = {
    "patients": (
        "patient_key",
        "sex",
        "birth_year",
        "age_at_index_years",
        "diagnosis_date",
        "diagnosis_icd10",
        "ph_status",
        "n_prior_lines",
        "prior_blinatumomab",
        "prior_inotuzumab",
    ),
    "car_t_infusions": (
        "patient_key",
        "infusion_date",
        "is_index_infusion",
        "product",
        "pre_bm_blast_pct",
        "pre_bm_blast_qualifier",
        "pre_mrd_value",
        "pre_emd_present",
        "disease_burden",
    ),
    "disease_assessments": (
        "patient_key",
        "assessment_date",
        "bm_blast_pct",
        "bm_blast_qualifier",
        "mrd_value",
        "mrd_status",
        "mrd_method",
        "response",
    ),
    "progression_events": (
        "patient_key",
        "progression_date",
        "event_type",
        "antigen_phenotype",
    ),
    "salvage_treatments": (
        "patient_key",
        "start_date",
        "agent",
        "best_response",
        "best_response_date",
    ),
    "transplants": ("patient_key", "hct_date", "hct_type", "donor_type", "intent"),
    "follow_up": (
        "patient_key",
        "data_cut_date",
        "vital_status",
        "last_contact_date",
        "death_date",
        "cause_of_death",
    ),
}


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return simulate_cohort(PATIENTS, len(LAYOUTS), SEED, layouts=tuple(LAYOUTS))


def _site(cohort: Cohort, layout: str) -> SiteInfo:
    return next(s for s in cohort.sites if s.layout == layout)


def _submit(folder: Path, site: SiteInfo, export: Export) -> Path:
    """Write the export and put the layout's mapping next to it."""
    write_export(export, folder)
    (folder / "mapping.yaml").write_text(long_linked.mapping(site), encoding="utf-8")
    return folder


def _comparable(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """The compared fields, floats rounded, rows in a fixed order; a salvage response not
    evaluated carries no date in the truth either."""
    columns = FIELDS[table]
    if table == "car_t_infusions":
        frame = frame.with_columns(
            pl.when(pl.col("is_index_infusion")).then(pl.col(c)).alias(c) for c in columns[4:]
        )
    frame = frame.select(columns).with_columns(
        pl.col(c).round(9) for c in columns if frame.schema[c] == pl.Float64
    )
    return frame.sort(columns, nulls_last=True)


def _truth_findings(truth: dict[str, pl.DataFrame], site: SiteInfo, out: Path) -> pl.DataFrame:
    """The findings of the truth tables themselves, validated as an ingest output."""
    (out / "tables").mkdir(parents=True)
    for name, frame in truth.items():
        frame.write_parquet(out / "tables" / f"{name}.parquet")
    (out / "findings.json").write_text("[]", encoding="utf-8")
    manifest = {"cdm_version": load_cdm().version, "site_id": site.site_id, "sources": []}
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return validate_output(out).findings


def _warned_patients(findings: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(rule, patient) of every warning; a finding without a table row keeps its row number."""
    warnings = findings.filter(pl.col("severity") == "warning")
    rows = pl.concat(
        [
            frame.select(pl.lit(name).alias("table"), "source_file", "source_row", "patient_key")
            for name, frame in tables.items()
        ]
    )
    joined = warnings.join(rows, on=["table", "source_file", "source_row"], how="left")
    return joined.select(
        "rule_id",
        pl.coalesce("patient_key", pl.format("row {}", "source_row")).alias("patient_key"),
    ).unique()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_clean_render_gives_no_finding_and_the_truth_field_by_field(
    layout: str, cohort: Cohort, tmp_path: Path
) -> None:
    site = _site(cohort, layout)
    truth = cohort.site_tables(site.site_id)
    folder = _submit(tmp_path / "site", site, long_linked.build(site, truth))
    out = tmp_path / "out"
    result = ingest_submission(folder, folder / "mapping.yaml", out, cdm=load_cdm())
    for source in result.manifest["sources"]:
        assert source["rows_read"] == source["rows_harmonized"] > 0, source
    findings = validate_output(out).findings
    errors = findings.filter(pl.col("severity") == "error")
    assert errors.height == 0, errors.select("rule_id", "source_row", "message").rows()[:5]
    # every warning is one the truth itself gets (a patient dead before day 28 has no day-28
    # marrow): none comes from what the layout or its mapping cannot carry
    warned = _warned_patients(findings, result.tables)
    assert not warned.filter(pl.col("rule_id").str.starts_with("ING-")).height, warned.rows()
    truth_warned = _warned_patients(_truth_findings(truth, site, tmp_path / "truth"), truth)
    extra = warned.join(truth_warned, on=["rule_id", "patient_key"], how="anti")
    assert extra.height == 0, extra.rows()[:5]
    for table in FIELDS:
        expected = _comparable(truth[table], table)
        got = _comparable(result.tables[table], table)
        assert expected.height > 0, table
        diff = expected.join(got, on=list(FIELDS[table]), how="anti", nulls_equal=True)
        assert got.height == expected.height and diff.height == 0, (table, diff.rows()[:3])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_planted_defect_is_reported_by_the_rule_the_answer_key_names(
    layout: str, cohort: Cohort, tmp_path: Path
) -> None:
    site = _site(cohort, layout)
    tables = cohort.site_tables(site.site_id)
    export = long_linked.build(site, tables)
    planted = long_linked.plant_cell_defects(site, export, tables, Picker(SEED))
    assert len(planted) == 3
    key = answer_key_frame([row for p in planted for row in long_linked.locate(export, p)])
    key.write_csv(tmp_path / "defects.csv")
    folder = _submit(tmp_path / "site", site, export)
    ingest_submission(folder, folder / "mapping.yaml", tmp_path / "out", cdm=load_cdm())
    comparison = compare_with_answer_key(
        validate_output(tmp_path / "out").findings, tmp_path / "defects.csv"
    )
    assert comparison.expected and not comparison.missed, comparison.missed
    assert not comparison.unexpected_errors, comparison.unexpected_errors


def test_fhir_names_and_hospital_numbers_never_reach_the_output(
    cohort: Cohort, tmp_path: Path
) -> None:
    site = _site(cohort, "fhir")
    folder = _submit(tmp_path / "site", site, fhir.build(site, cohort.site_tables(site.site_id)))
    bundle = json.loads((folder / fhir.BUNDLE).read_text(encoding="utf-8"))
    people = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    secrets = {i["value"] for p in people for i in p["identifier"]}
    secrets |= {n["family"] for p in people for n in p["name"]}
    assert len(people) > 0 and len(secrets) > 5
    result = ingest_submission(folder, folder / "mapping.yaml", tmp_path / "out", cdm=load_cdm())
    frames = [*result.tables.values(), *result.quarantine.values(), result.findings]
    text = "\n".join(frame.select(pl.all().cast(pl.String)).write_csv() for frame in frames)
    text += "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "out").glob("*.json"))
    leaked = sorted(s for s in secrets if s in text)
    assert leaked == []
