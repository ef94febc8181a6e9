"""Loading the CDM from YAML: implied columns, and one-line errors for invalid declarations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cartreg.cdm import load_cdm
from cartreg.errors import ConfigError
from cartreg.paths import schemas_dir

EXPECTED_TABLES = [
    "patients",
    "car_t_infusions",
    "disease_assessments",
    "progression_events",
    "salvage_treatments",
    "transplants",
    "follow_up",
]


def test_bundled_cdm_loads_with_every_table_and_lineage() -> None:
    cdm = load_cdm()
    assert list(cdm.tables) == EXPECTED_TABLES
    for table in cdm.tables.values():
        names = table.column_names
        assert {"site_id", "source_file", "source_row"} <= set(names), table.name
        assert table.primary_key, table.name
        for col in table.columns:
            if col.vocabulary and col.role == "declared":
                assert f"{col.name}_raw" in names, col.name
            if col.dtype == "date":
                assert f"{col.name}_precision" in names, col.name


def test_derivable_columns_carry_their_provenance_siblings() -> None:
    cdm = load_cdm()
    derivable = {(t.name, c.name) for t in cdm.tables.values() for c in t.columns if c.derivable}
    assert derivable == {
        ("patients", "age_at_index_years"),
        ("patients", "age_at_index_min_years"),
        ("patients", "age_at_index_max_years"),
        ("car_t_infusions", "disease_burden"),
        ("progression_events", "remission_date"),
    }
    for table, name in derivable:
        spec = cdm.tables[table]
        how = spec.column(f"{name}_derivation")
        source = spec.column(f"{name}_derived_from")
        assert (how.role, how.vocabulary, how.sibling_of) == ("derivation", "derivation", name)
        assert (source.role, source.dtype, source.sibling_of) == ("derived_from", "string", name)
    # the day offset of a derived date follows the date's provenance columns
    names = cdm.tables["progression_events"].column_names
    assert names.index("remission_date_derived_from") < names.index("remission_day")
    assert cdm.derivation_param("disease_burden", "blast_threshold_pct") == 5
    assert cdm.derivation_param("remission", "count_crh_as_cr") is False


def test_every_event_table_carries_a_day_offset() -> None:
    cdm = load_cdm()
    for name in EXPECTED_TABLES[1:]:
        assert any(c.role == "day_offset" for c in cdm.table(name).columns), name


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), dest)
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture text not found in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "tables/patients.yaml",
            "name: birth_year\n    dtype: integer",
            "name: birth_year\n    dtype: integr",
            r"patients.yaml: columns\[2\]\(birth_year\).dtype: unknown dtype 'integr' \(did you mean 'integer'\?\)",
        ),
        (
            "tables/patients.yaml",
            "vocabulary: ph_status",
            "vocabulary: ph_stat",
            r"patients.yaml: columns\[\d+\]\(ph_status\).vocabulary: vocabulary 'ph_stat' does not exist \(did you mean 'ph_status'\?\)",
        ),
        (
            "tables/patients.yaml",
            "  - name: birth_year\n",
            "  - name: sex\n",
            r"patients.yaml: columns\[2\].name: duplicate column 'sex'",
        ),
        (
            "tables/patients.yaml",
            "  - name: birth_year\n",
            "  - name: sex_raw\n",
            r"patients.yaml: columns\[2\].name: duplicate column 'sex_raw' \(already defined as sibling of sex\)",
        ),
        (
            "tables/follow_up.yaml",
            "    required: true\n    description: Patient followed.",
            "    required: true\n    nullable: false\n    description: Patient followed.",
            r"follow_up.yaml: columns\[0\]\(patient_key\).nullable: unknown key 'nullable'",
        ),
        (
            "tables/transplants.yaml",
            "primary_key: [hct_id]",
            "primary_key: [hct_key]",
            r"transplants.yaml: primary_key: primary key column 'hct_key' is not a column",
        ),
        (
            "tables/transplants.yaml",
            "table: transplants\n",
            "table: transplants\ntable: transplants\n",
            r"transplants.yaml: line 3, column 1: invalid YAML: duplicate key 'table'",
        ),
        (
            "cdm.yaml",
            "    blast_threshold_pct: 5 ",
            "    blast_threshold_pct: five ",
            r"cdm.yaml: derivations.disease_burden.blast_threshold_pct: must be a number, got 'five'",
        ),
        (
            "cdm.yaml",
            "  remission:\n",
            "  remision:\n",
            r"cdm.yaml: derivations.remision: unknown derivation 'remision' \(did you mean 'remission'\?\)",
        ),
        (
            "cdm.yaml",
            "    count_crh_as_cr: false",
            "    count_crh: false",
            r"cdm.yaml: derivations.remission.count_crh: unknown key 'count_crh'",
        ),
        (
            "tables/patients.yaml",
            "    derivable: true\n",
            "    derivable: true\n    derived: true\n",
            r"patients.yaml: columns\[\d+\]\(age_at_index_years\).derived: unknown key 'derived' \(did you mean 'derivable'\?\)",
        ),
        (
            "vocabularies/sex.yaml",
            "  - code: F",
            "  - code: M",
            r"sex.yaml: terms\[1\].code: duplicate term code 'M'",
        ),
    ],
)
def test_invalid_schema_yaml_fails_with_one_line_naming_file_and_key(
    schemas_copy: Path, file: str, old: str, new: str, expected: str
) -> None:
    _edit(schemas_copy / file, old, new)
    with pytest.raises(ConfigError, match=expected) as info:
        load_cdm(schemas_copy)
    assert "\n" not in str(info.value)


def test_invalid_schema_via_cli_exits_2_without_traceback(schemas_copy: Path) -> None:
    _edit(schemas_copy / "tables/patients.yaml", "dtype: integer", "dtype: int32")
    proc = subprocess.run(
        [sys.executable, "-m", "cartreg", "--schemas", str(schemas_copy), "schema", "docs"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "patients.yaml" in lines[0] and "dtype" in lines[0] and "int32" in lines[0]


def test_schemas_folder_from_environment(
    schemas_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edit(schemas_copy / "cdm.yaml", "cdm_version: ", "cdm_version: ")
    monkeypatch.setenv("CARTREG_SCHEMAS", str(schemas_copy))
    assert load_cdm().path == schemas_copy
