"""Broken mappings are one-line ConfigErrors naming the file and the key, with a suggestion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.errors import ConfigError
from cartreg.ingest import ingest_submission
from cartreg.ingest.mapping import MAPPING_SCHEMA, load_mapping, schema_json
from cartreg.paths import repo_root

FIXTURE = Path(__file__).parent / "fixtures" / "csv_site"


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


def _site(tmp_path: Path, old: str, new: str) -> Path:
    site = tmp_path / "site"
    shutil.copytree(FIXTURE, site)
    text = (site / "mapping.yaml").read_text(encoding="utf-8")
    assert old in text
    (site / "mapping.yaml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return site


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        (
            "ph_status: ph\n",
            "ph_status: phh\n",
            "tables.patients[0].columns.ph_status.from",
            "source column 'phh' not found in patients.csv (did you mean 'ph'?)",
        ),
        (
            "ph_status: ph\n",
            "ph_stat: ph\n",
            "tables.patients[0].columns.ph_stat",
            "'ph_stat' is not a column of CDM table patients (did you mean 'ph_status'?)",
        ),
        (
            'sex: {"1": F}',
            'sex: {"1": FEMALE}',
            "vocabulary_overrides.sex.1",
            "'FEMALE' is not a term of vocabulary 'sex'",
        ),
        (
            "  patients:\n",
            "  patient:\n",
            "tables.patient",
            "unknown CDM table 'patient' (did you mean 'patients'?)",
        ),
        ("defaults:", "default:", "default", "unknown key 'default' (did you mean 'defaults'?)"),
        (
            "- source: events\n",
            "- source: event\n",
            "tables.disease_assessments[0].source",
            "unknown source 'event' (did you mean 'events'?)",
        ),
        (
            "date_formats: [ISO, DMY, MY, Y]",
            "date_formats: [ISO, DYM]",
            "defaults.date_formats[1]",
            "unknown date format 'DYM'",
        ),
        (
            "        product: product\n",
            "",
            "tables.car_t_infusions[0].columns",
            "required CDM column 'product' of car_t_infusions is not mapped",
        ),
        (
            "sex: sex\n",
            "sex: patient_name\n",
            "tables.patients[0].columns.sex.from",
            "looks like a direct identifier",
        ),
    ],
)
def test_broken_mapping_is_one_line_error_with_file_and_key(
    tmp_path: Path, cdm: CDM, old: str, new: str, key: str, expected: str
) -> None:
    site = _site(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{site / 'mapping.yaml'}: {key}: "), message
    assert expected in message


@pytest.mark.parametrize(
    ("written_for", "expected"),
    [
        ("1.0.0", "mapping written for CDM 1.0.0, this is CDM 0.2.0 (a new major version"),
        ("0.9.0", "mapping written for CDM 0.9.0, newer than this cartreg's CDM 0.2.0"),
        ("0.1", "'0.1' is not a version like \"0.2.0\""),
    ],
)
def test_mapping_for_another_major_or_a_newer_cdm_is_refused(
    tmp_path: Path, cdm: CDM, written_for: str, expected: str
) -> None:
    site = _site(tmp_path, "site_id: CSV_T\n", f'site_id: CSV_T\ncdm_version: "{written_for}"\n')
    with pytest.raises(ConfigError) as info:
        load_mapping(site / "mapping.yaml", cdm)
    assert str(info.value).startswith(f"{site / 'mapping.yaml'}: cdm_version: {expected}")


def test_mapping_written_for_an_earlier_minor_cdm_still_runs(tmp_path: Path, cdm: CDM) -> None:
    # CDM 0.2.0 only added columns (derived values, disease status): a 0.1.0 mapping is valid
    site = _site(tmp_path, "site_id: CSV_T\n", 'site_id: CSV_T\ncdm_version: "0.1.0"\n')
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    assert result.manifest["cdm_version"] == cdm.version == "0.2.0"
    assert "remission_date_derivation" in result.tables["progression_events"].columns


def test_bad_yaml_names_the_file(tmp_path: Path, cdm: CDM) -> None:
    site = _site(tmp_path, "site_id: CSV_T", "site_id: [CSV_T")
    with pytest.raises(ConfigError) as info:
        load_mapping(site / "mapping.yaml", cdm)
    assert str(site / "mapping.yaml") in str(info.value)
    assert "\n" not in str(info.value)


def test_override_on_a_column_is_checked_against_its_vocabulary(tmp_path: Path, cdm: CDM) -> None:
    site = _site(tmp_path, "sex: sex\n", "sex: {from: sex, map: {h: MAN}}\n")
    with pytest.raises(ConfigError, match=r"columns\.sex\.map\.h: 'MAN' is not a term"):
        load_mapping(site / "mapping.yaml", cdm)


def test_published_json_schema_is_the_one_the_loader_uses() -> None:
    published = (repo_root() / "schemas" / "mapping.schema.json").read_text(encoding="utf-8")
    assert published == schema_json()
    assert json.loads(published) == MAPPING_SCHEMA


def test_sample_and_fixture_mappings_validate_against_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from cartreg.yamlio import load_yaml

    paths = [
        FIXTURE / "mapping.yaml",
        *sorted((repo_root() / "sample_data").glob("*/mapping.yaml")),
    ]
    for path in paths:
        jsonschema.validate(load_yaml(path), MAPPING_SCHEMA)


# Strict configuration (issue 12): every value has one type and a range; what the loader
# refuses, the published JSON Schema refuses too where a schema can say it.
STRICT_CASES = [
    # (old, new, key, message)
    (
        "file: events.csv",
        "file: events.csv\n    decode: 'no'",
        "sources.events.decode",
        "must be true or false (unquoted), got 'no'",
    ),
    (
        "file: events.csv",
        "file: events.csv\n    delimiter: ';;'",
        "sources.events.delimiter",
        "must be one character",
    ),
    (
        "file: events.csv",
        "file: events.csv\n    delimiter: '\"'",
        "sources.events.delimiter",
        "must be one character other than a quote",
    ),
    (
        "file: events.csv",
        "file: events.csv\n    encoding: utf-99",
        "sources.events.encoding",
        "unknown encoding 'utf-99'",
    ),
    # adversarial audit: accepted, and would have rewritten backslash sequences in the data
    (
        "file: events.csv",
        "file: events.csv\n    encoding: unicode_escape",
        "sources.events.encoding",
        "'unicode_escape' is not a character set a file is saved in",
    ),
    (
        "file: events.csv",
        "file: events.csv\n    encoding: base64",
        "sources.events.encoding",
        "'base64' is not a character set a file is saved in",
    ),
    (
        "file: events.csv",
        "file: events.csv\n    header_row: 0",
        "sources.events.header_row",
        "must be a row number",
    ),
    (
        "date_formats: [ISO, DMY, MY, Y]",
        "date_formats: [ISO, '%Q%Y']",
        "defaults.date_formats[1]",
        "'%Q' is not a strptime directive",
    ),
    (
        "date_formats: [ISO, DMY, MY, Y]",
        "date_formats: ['%']",
        "defaults.date_formats[0]",
        "'%' is not a strptime directive",
    ),
    (
        "date_formats: [ISO, DMY, MY, Y]",
        "date_formats: ['%Y-%m']",
        "defaults.date_formats[0]",
        "the pattern has no day",
    ),
    (
        "n_prior_lines: prior_lines",
        "n_prior_lines: {from: prior_lines, scale: 0}",
        "tables.patients[0].columns.n_prior_lines.scale",
        "must be between 1e-12 and 1e+12, got 0",
    ),
    (
        "n_prior_lines: prior_lines",
        "n_prior_lines: {from: prior_lines, scale: .inf}",
        "tables.patients[0].columns.n_prior_lines.scale",
        "must be between",
    ),
    (
        "where: [{column: event, equals: assessment}]",
        "where: [{column: event, is_null: 'yes'}]",
        "tables.disease_assessments[0].where[0].is_null",
        "must be true or false",
    ),
    (
        'sex: {"1": F}',
        "sex: {true: F}",
        "vocabulary_overrides.sex",
        "the key True is a YAML boolean",
    ),
    (
        "sex: sex\n",
        "sex: {from: sex, map: {~: F}}\n",
        "tables.patients[0].columns.sex.map",
        "the key None is a YAML null",
    ),
    (
        "where: [{column: event, equals: assessment}]",
        "where: 0",
        "tables.disease_assessments[0].where",
        "must be a list, got 0",
    ),
    (
        "specimen: {value: BONE_MARROW}",
        "specimen: {value: {a: 1}}",
        "tables.disease_assessments[0].columns.specimen.value",
        "a constant is text, a number or true/false",
    ),
    (
        "      unpivot:",
        "      explode: [salv, salv]\n      unpivot:",
        "tables.salvage_treatments[0].explode",
        "'salv' is listed twice",
    ),
]


@pytest.mark.parametrize(("old", "new", "key", "expected"), STRICT_CASES)
def test_strict_configuration(
    tmp_path: Path, cdm: CDM, old: str, new: str, key: str, expected: str
) -> None:
    site = _site(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_mapping(site / "mapping.yaml", cdm)
    message = str(info.value)
    assert message.startswith(f"{site / 'mapping.yaml'}: {key}: "), message
    assert expected in message


@pytest.mark.parametrize(
    ("old", "new"),
    # Not expressible in JSON Schema: codec names, which directives a pattern holds, and keys
    # that are not text (JSON keys always are).
    [
        case[:2]
        for case in STRICT_CASES
        if not any(s in case[1] for s in ("encoding", "%Y-%m", "true:", "~:"))
    ]
    + [("tables:\n", "tables: {}\nunused:\n")],
)
def test_json_schema_is_as_strict_as_the_loader(tmp_path: Path, old: str, new: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from cartreg.yamlio import load_yaml

    site = _site(tmp_path, old, new)
    document = load_yaml(site / "mapping.yaml")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, MAPPING_SCHEMA)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("tables: {}\n", "tables", "map at least one CDM table"),
        ("tables:\n  patients: []\n", "tables.patients", "must be a list of rules"),
    ],
)
def test_a_mapping_maps_something(
    tmp_path: Path, cdm: CDM, text: str, key: str, expected: str
) -> None:
    site = _site(tmp_path, "site_id: CSV_T", "site_id: CSV_T")
    path = site / "mapping.yaml"
    path.write_text(path.read_text(encoding="utf-8").split("tables:")[0] + text, "utf-8")
    with pytest.raises(ConfigError, match=rf"{key}: {expected}"):
        load_mapping(path, cdm)


def test_complex_keys_and_huge_files_are_refused(tmp_path: Path, cdm: CDM) -> None:
    site = _site(tmp_path, "site_id: CSV_T", "site_id: CSV_T\n? [a, b]\n: c")
    with pytest.raises(ConfigError, match="a key must be a plain name"):
        load_mapping(site / "mapping.yaml", cdm)
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000, encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than the 1 MiB limit"):
        load_mapping(big, cdm)


def test_a_misspelt_checkbox_field_is_a_configuration_error(cdm: CDM, tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "redcap_site"
    site = tmp_path / "site"
    shutil.copytree(fixture, site)
    mapping = site / "mapping.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(text.replace("field: salv_agents", "field: salv_agent"), "utf-8")
    with pytest.raises(ConfigError, match=r"checkbox.field: no checkbox 'salv_agent'.*salv_agents"):
        ingest_submission(site, mapping, None, cdm=cdm)
