"""Nested JSON sites written from the docs alone (issue 3): profile, mapping init, empty arrays."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from cartreg.cdm import load_cdm
from cartreg.cli.main import cli
from cartreg.errors import ConfigError
from cartreg.ingest import ingest_submission
from cartreg.ingest.profile import year_plausible


def _patient(pid: str, *, salvage: list[dict[str, object]], last_day: int) -> dict[str, object]:
    return {
        "pseudo_id": pid,
        "sex": "female" if pid.endswith("1") else "male",
        "birth_year": 1980,
        "diagnosis": {"day": -400, "ph": "BCR_ABL1_NEG"},
        "infusions": [
            {
                "day": 0,
                "year": 2023,
                "number": 1,
                "product": "obe-cel",
                "dose": {"value": 1.5, "unit": "CAR_POS_CELLS_PER_KG"},
                "bridging": True,
            }
        ],
        "assessments": [
            {
                "day": 28,
                "response": "CR",
                "below": True,
                "mrd": {"fraction": 0.0001, "method": "FLOW"},
            },
            {
                "day": 90,
                "response": "CR",
                "below": False,
                "mrd": {"fraction": None, "method": "FLOW"},
            },
        ],
        "salvage": salvage,
        "follow_up": {
            "data_cut": "2025-06-30",
            "last_contact_day": last_day,
            "vital_status": "alive",
        },
    }


EMPTY = [_patient("D1", salvage=[], last_day=1915), _patient("D2", salvage=[], last_day=-3)]
FILLED = [
    _patient(
        "D1",
        salvage=[{"day": 40, "line": 1, "agents": ["inotuzumab_ozogamicin", "mini_hcvd"]}],
        last_day=1915,
    ),
    _patient("D2", salvage=[], last_day=-3),
]

MAPPING = """\
mapping_version: "1"
site_id: DEID_T
sources:
  cohort: {file: cohort.ndjson, patient_id: pseudo_id}
tables:
  patients:
    - source: cohort
      columns: {sex: sex, birth_year: birth_year, diagnosis_day: diagnosis.day, ph_status: diagnosis.ph}
  car_t_infusions:
    - source: cohort
      explode: infusions
      columns:
        infusion_day: infusions.day
        infusion_year: infusions.year
        product: infusions.product
        dose_value: infusions.dose.value
        dose_unit: infusions.dose.unit
  disease_assessments:
    - source: cohort
      explode: assessments
      columns:
        assessment_day: assessments.day
        response: assessments.response
        bm_blast_qualifier: {from: assessments.below, map: {"true": LT, "false": null}}
  salvage_treatments:
    - source: cohort
      explode: [salvage, salvage.agents]
      where: [{column: salvage.line, is_null: false}]
      columns:
        start_day: salvage.day
        agent: salvage.agents
  follow_up:
    - source: cohort
      columns:
        data_cut_date: follow_up.data_cut
        last_contact_day: follow_up.last_contact_day
        vital_status: follow_up.vital_status
"""


def _site(root: Path, records: list[dict[str, object]], mapping: str = MAPPING) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cohort.ndjson").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
    )
    (root / "mapping.yaml").write_text(mapping, encoding="utf-8")
    return root


def test_mapping_init_proposes_fields_inside_arrays_with_their_explode(tmp_path: Path) -> None:
    site = _site(tmp_path / "site", FILLED)
    draft = tmp_path / "draft.yaml"
    result = CliRunner().invoke(
        cli,
        [
            "mapping",
            "init",
            str(site / "cohort.ndjson"),
            "--out",
            str(draft),
            "--site-id",
            "NEWSITE",
        ],
    )
    assert result.exit_code == 0, result.output
    text = draft.read_text(encoding="utf-8")
    assert 'patient_id: "pseudo_id"' in text
    assert "explode: assessments" in text and 'assessment_day: {from: "assessments.day"}' in text
    assert (
        "explode: [salvage, salvage.agents]" in text and 'agent: {from: "salvage.agents"}' in text
    )
    assert 'dose_unit: {from: "infusions.dose.unit"}' in text


def test_mapping_init_notes_arrays_empty_in_every_record(tmp_path: Path) -> None:
    site = _site(tmp_path / "site", EMPTY)
    draft = tmp_path / "draft.yaml"
    result = CliRunner().invoke(
        cli, ["mapping", "init", str(site / "cohort.ndjson"), "--out", str(draft)]
    )
    assert result.exit_code == 0, result.output
    assert "array 'salvage' of cohort.ndjson is empty in every record" in draft.read_text(
        encoding="utf-8"
    )


def test_profile_describes_fields_inside_arrays_and_no_year_for_day_offsets(tmp_path: Path) -> None:
    site = _site(tmp_path / "site", FILLED)
    result = CliRunner().invoke(cli, ["profile", str(site / "cohort.ndjson"), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["column"]: r for r in json.loads(result.output)}
    assert rows["assessments"]["inferred_type"] == "array (explode: [assessments])"
    assert rows["assessments.day"]["distinct"] == 2
    assert rows["assessments.mrd.method"]["vocabulary"] == "mrd_method"
    assert rows["salvage.agents"]["inferred_type"] == "coded"
    assert rows["salvage.agents"]["vocabulary"] == "salvage_agents"
    assert rows["follow_up.last_contact_day"]["date_formats"] == ""
    assert "Y" in rows["birth_year"]["date_formats"]
    empty = CliRunner().invoke(
        cli, ["profile", str(_site(tmp_path / "e", EMPTY) / "cohort.ndjson"), "--format", "json"]
    )
    salvage = {r["column"]: r for r in json.loads(empty.output)}["salvage"]
    assert salvage["inferred_type"] == "array (empty in every record)"


@pytest.mark.parametrize(
    ("column", "values", "plausible"),
    [
        ("birth_year", ["1980", "2001", None], True),
        ("last_contact_day", ["1915", "2001"], False),
        ("fu_days", ["1999"], False),
        ("year_of_event", ["1915", "-3"], False),
        ("year_of_event", ["1915", "2101"], False),
        ("year_of_event", ["1899"], False),
        ("hct_year", ["2020", "n/a"], True),
    ],
)
def test_year_plausible(column: str, values: list[str | None], plausible: bool) -> None:
    assert year_plausible(column, pl.Series(values, dtype=pl.String)) is plausible


def test_profile_terminal_output_is_readable_at_80_columns(tmp_path: Path) -> None:
    records = [dict(_patient("D1", salvage=[], last_day=5), note="x" * 300)]
    site = _site(tmp_path / "site", records)
    result = CliRunner().invoke(cli, ["profile", str(site / "cohort.ndjson")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "assessments.response: coded, 0% empty, 1 distinct" in lines
    # The 300-character value is cut (to 60 characters, as every echoed value is).
    assert any(line.strip().startswith("top: xxx") and "…" in line for line in lines)


def test_an_array_empty_in_every_record_yields_zero_rows(tmp_path: Path) -> None:
    site = _site(tmp_path / "empty", EMPTY)
    checked = CliRunner().invoke(
        cli, ["mapping", "check", str(site / "mapping.yaml"), "--submission", str(site)]
    )
    assert checked.exit_code == 0, checked.output
    result = ingest_submission(site, site / "mapping.yaml", tmp_path / "out")
    assert result.tables["salvage_treatments"].height == 0
    assert result.tables["disease_assessments"].height == 4
    assert result.manifest["sources"][0]["rows_quarantined"] == 0
    # The same mapping on next month's submission, where the array has elements.
    filled = _site(tmp_path / "filled", FILLED)
    later = ingest_submission(filled, filled / "mapping.yaml", tmp_path / "out2")
    salvage = later.tables["salvage_treatments"].sort("agent")
    assert salvage.get_column("agent").to_list() == ["inotuzumab_ozogamicin", "mini_hcvd"]
    assert salvage.get_column("start_day").to_list() == [40, 40]


def test_json_booleans_and_numbers_reach_map_keys_as_text(tmp_path: Path) -> None:
    site = _site(tmp_path / "site", EMPTY)
    result = ingest_submission(site, site / "mapping.yaml", tmp_path / "out")
    assessments = result.tables["disease_assessments"].sort("patient_key", "assessment_day")
    assert assessments.get_column("bm_blast_qualifier").to_list() == ["LT", None, "LT", None]
    infusions = result.tables["car_t_infusions"]
    assert infusions.get_column("dose_value").to_list() == [1.5, 1.5]


BAD_RULES = {
    "explode of a single value": ("explode: sex", "agent: sex", "'sex' is not an array"),
    "array read without explode": ("", "agent: assessments", "holds arrays"),
    "array of objects read as a value": (
        "explode: assessments",
        "agent: assessments",
        "holds objects",
    ),
    "inner array not exploded": ("explode: salvage", "agent: salvage.agents", "holds arrays"),
    "where on an array": (
        "explode: salvage\n      where: [{column: salvage.agents, equals: x}]",
        "agent: salvage.line",
        "holds arrays",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RULES), ids=list(BAD_RULES))
def test_unusual_nesting_is_a_config_error_not_an_internal_error(tmp_path: Path, case: str) -> None:
    explode, column, message = BAD_RULES[case]
    mapping = f"""\
mapping_version: "1"
site_id: DEID_T
sources:
  cohort: {{file: cohort.ndjson, patient_id: pseudo_id}}
tables:
  salvage_treatments:
    - source: cohort
      {explode}
      columns:
        {column}
        start_day: {{value: "1"}}
"""
    site = _site(tmp_path / "site", FILLED, mapping)
    with pytest.raises(ConfigError, match=message):
        ingest_submission(site, site / "mapping.yaml", tmp_path / "out", cdm=load_cdm())


def test_integers_too_large_for_int64_are_number_findings(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,sex,lines\nA1,male,1e30\nA2,female,2\n", encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(
        'mapping_version: "1"\nsite_id: BIG_T\nsources:\n  s: {file: p.csv, patient_id: id}\n'
        "tables:\n  patients:\n    - source: s\n      columns: {sex: sex, n_prior_lines: lines}\n",
        encoding="utf-8",
    )
    result = ingest_submission(tmp_path, tmp_path / "mapping.yaml", tmp_path / "out")
    assert result.tables["patients"].sort("patient_key").get_column("n_prior_lines").to_list() == [
        None,
        2,
    ]
    numbers = result.findings.filter(pl.col("rule_id") == "ING-NUMBER")
    assert numbers.get_column("value").to_list() == ["1e30"]


def test_mapping_schema_path_prints_the_installed_schema() -> None:
    result = CliRunner().invoke(cli, ["mapping", "schema-path"])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path.is_absolute() and path.name == "mapping.schema.json"
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "object"


def test_json_numbers_and_booleans_keep_their_text_across_records(tmp_path: Path) -> None:
    from cartreg.ingest.readers.json import read_json_text

    path = tmp_path / "mixed.ndjson"
    path.write_text(
        '{"id": "A", "v": 5, "b": false, "a": [{"x": 1.50}]}\n'
        '{"id": "B", "v": 1.5, "b": "unknown", "a": [{"x": 2}, {"x": true}]}\n',
        encoding="utf-8",
    )
    frame = read_json_text(path).frame
    assert frame.get_column("v").to_list() == ["5", "1.5"]
    assert frame.get_column("b").to_list() == ["false", "unknown"]
    assert frame.get_column("a").to_list() == [[{"x": "1.50"}], [{"x": "2"}, {"x": "true"}]]


def test_objects_with_no_field_are_left_out_of_quarantine(tmp_path: Path) -> None:
    # found by the fuzz run (ndjson seed 408437): ``{}`` in every row crashed the masking of
    # nested quarantine columns, and Parquet cannot store a field-less object
    kept = _patient("P1", salvage=[], last_day=30)
    unkeyed = {**_patient("P2", salvage=[], last_day=30), "pseudo_id": None, "extra": [{}]}
    site = _site(tmp_path / "site", [{**kept, "extra": [{}]}, unkeyed])
    result = ingest_submission(site, site / "mapping.yaml", tmp_path / "out")
    quarantine = pl.read_parquet(tmp_path / "out" / "quarantine" / "cohort.parquet")
    assert "extra" not in quarantine.columns
    assert sum(s["rows_quarantined"] for s in result.manifest["sources"]) == 1
