"""Mapping language: ``contains`` (where and column), ``otherwise`` in ``map``, REDCap checkbox
columns decoded like other coded fields, and what ``where`` compares REDCap values against."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.cdm import CDM, load_cdm
from cartreg.errors import ConfigError
from cartreg.ingest import ingest_submission
from cartreg.ingest.mapping import load_mapping
from cartreg.ingest.transforms.lists import contains_any

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# ---- contains --------------------------------------------------------------------------------

_JSON_SITE = {
    "cohort.ndjson": "\n".join(
        json.dumps(r)
        for r in [
            {"id": "J1", "prior": ["allo-HSCT", "Blinatumomab"], "inf": {"day": 0, "p": "kymriah"}},
            {"id": "J2", "prior": ["inotuzumab"], "inf": {"day": 0, "p": "kymriah"}},
            {"id": "J3", "prior": [], "inf": {"day": 0, "p": "kymriah"}},
            {"id": "J4", "prior": None, "inf": {"day": 0, "p": "kymriah"}},
        ]
    )
    + "\n",
    "mapping.yaml": """
mapping_version: "1"
site_id: JSON_T
sources:
  cohort: {file: cohort.ndjson, patient_id: id}
tables:
  patients:
    - source: cohort
      columns:
        prior_allohct: {from: prior, contains: [allo-HSCT, allo-SCT]}
        prior_blinatumomab: {from: prior, contains: blinatumomab}
        prior_inotuzumab: {from: prior, contains: inotuzumab}
  car_t_infusions:
    - source: cohort
      where: [{column: prior, contains: blinatumomab}]
      columns: {infusion_day: inf.day, product: inf.p}
""",
}


def test_contains_reads_json_arrays_of_strings(tmp_path: Path, cdm: CDM) -> None:
    site = _write(tmp_path / "json", _JSON_SITE)
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    patients = result.tables["patients"].sort("patient_key")
    assert patients.select("prior_allohct", "prior_blinatumomab", "prior_inotuzumab").rows() == [
        ("Y", "Y", "N"),
        ("N", "N", "Y"),
        ("N", "N", "N"),  # an empty list: nothing given
        (None, None, None),  # no list at all: unknown
    ]
    assert result.tables["car_t_infusions"]["patient_key"].to_list() == ["JSON_T-J1"]
    assert result.findings.filter(pl.col("severity") != "info").height == 0


def test_contains_reads_delimited_text_cells(tmp_path: Path, cdm: CDM) -> None:
    site = _write(
        tmp_path / "csv",
        {
            "patients.csv": "pid,prior,product\n"
            "1,allo-HSCT; Blinatumomab,Kymriah\n2,inotuzumab | mini-hyper-CVD,Kymriah\n3,,Kymriah\n",
            "mapping.yaml": """
mapping_version: "1"
site_id: CSV_T
sources:
  p: {file: patients.csv, patient_id: pid}
tables:
  patients:
    - source: p
      columns:
        prior_blinatumomab: {from: prior, contains: blinatumomab}
        prior_inotuzumab: {from: prior, contains: [inotuzumab, ino]}
  car_t_infusions:
    - source: p
      where: [{column: prior, contains: [mini-hyper-CVD]}]
      columns: {product: product}
""",
        },
    )
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    patients = result.tables["patients"].sort("patient_key")
    assert patients.select("prior_blinatumomab", "prior_inotuzumab").rows() == [
        ("Y", "N"),
        ("N", "Y"),
        (None, None),
    ]
    assert result.tables["car_t_infusions"]["patient_key"].to_list() == ["CSV_T-2"]


@given(
    items=st.lists(
        st.text(
            alphabet=st.characters(categories=["L", "N"], include_characters="-+/ "),
            min_size=1,
            max_size=8,
        )
        .map(str.strip)
        .filter(bool),
        max_size=5,
    ),
    probe=st.text(alphabet="abcXYZ-", min_size=1, max_size=4),
)
def test_contains_matches_an_element_exactly_ignoring_case_in_lists_and_text(
    items: list[str], probe: str
) -> None:
    expected = any(i.lower() == probe.lower() for i in items)
    frame = pl.DataFrame(
        {"l": [items], "t": ["; ".join(items) if items else None]},
        schema={"l": pl.List(pl.String), "t": pl.String},
    )
    got = frame.select(
        contains_any(pl.col("l"), frame.schema["l"], [probe.upper()]).alias("l"),
        contains_any(pl.col("t"), frame.schema["t"], [probe]).alias("t"),
    ).row(0)
    assert got[0] is expected
    assert got[1] is (expected if items else None)


def test_contains_only_fills_yes_no_columns(tmp_path: Path, cdm: CDM) -> None:
    site = _write(
        tmp_path / "bad",
        {
            **_JSON_SITE,
            "mapping.yaml": _JSON_SITE["mapping.yaml"].replace(
                "prior_inotuzumab: {from: prior, contains: inotuzumab}",
                "ph_status: {from: prior, contains: inotuzumab}",
            ),
        },
    )
    with pytest.raises(ConfigError, match=r"columns\.ph_status\.contains: 'contains' fills yes/no"):
        load_mapping(site / "mapping.yaml", cdm)


# ---- otherwise -------------------------------------------------------------------------------

_PRODUCTS = "pid,product,burden\n1,Kymriah,high\n2,CAR-T academic lab,high\n3,Tecartus,mittel\n"


def _otherwise_site(tmp_path: Path, product_rule: str, burden_rule: str) -> Path:
    return _write(
        tmp_path / "other",
        {
            "infusions.csv": _PRODUCTS,
            "mapping.yaml": f"""
mapping_version: "1"
site_id: CSV_T
sources:
  i: {{file: infusions.csv, patient_id: pid}}
tables:
  car_t_infusions:
    - source: i
      columns:
        product: {product_rule}
        disease_burden: {burden_rule}
""",
        },
    )


def test_otherwise_maps_any_other_value_to_a_code(tmp_path: Path, cdm: CDM) -> None:
    site = _otherwise_site(
        tmp_path,
        "{from: product, otherwise: other_cd19_car_t}",
        "{from: burden, map: {hoch: HIGH}, otherwise: null}",
    )
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    infusions = result.tables["car_t_infusions"].sort("patient_key")
    assert infusions["product"].to_list() == [
        "tisagenlecleucel",
        "other_cd19_car_t",
        "brexucabtagene_autoleucel",
    ]
    assert infusions["product_raw"].to_list()[1] == "CAR-T academic lab"
    # "mittel" is left empty on purpose: no finding, no derivation overriding the decision
    assert infusions["disease_burden"].to_list() == ["HIGH", "HIGH", None]
    assert result.findings.filter(pl.col("rule_id") == "ING-UNMAPPED").height == 0


def test_without_otherwise_an_unknown_value_is_still_a_finding(tmp_path: Path, cdm: CDM) -> None:
    site = _otherwise_site(tmp_path, "product", "burden")
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    unmapped = result.findings.filter(pl.col("rule_id") == "ING-UNMAPPED")
    assert sorted(unmapped["column"].to_list()) == ["disease_burden", "product"]


def test_otherwise_must_be_a_term(tmp_path: Path, cdm: CDM) -> None:
    site = _otherwise_site(tmp_path, "{from: product, otherwise: other_car_t}", "burden")
    with pytest.raises(ConfigError, match=r"product\.otherwise: 'other_car_t' is not a term"):
        load_mapping(site / "mapping.yaml", cdm)


# ---- REDCap: checkbox columns and where ------------------------------------------------------


def _redcap(tmp_path: Path, extra_rules: str, decode: bool = True) -> Path:
    site = tmp_path / "redcap"
    shutil.copytree(FIXTURES / "redcap_site", site)
    mapping = (site / "mapping.yaml").read_text(encoding="utf-8")
    if not decode:
        mapping = mapping.replace(
            "    dictionary: data_dictionary.csv\n",
            "    dictionary: data_dictionary.csv\n    decode: false\n",
        )
    (site / "mapping.yaml").write_text(mapping + extra_rules, encoding="utf-8")
    return site


_CHECKBOX_AND_WHERE = """
  transplants:
    - source: records
      where: [{column: prog_type, in: ["%s"]}, {column: salv_agents___3, equals: "%s"}]
      columns: {hct_date: prog_date, hct_type: {value: ALLOGENEIC}}
"""


@pytest.mark.parametrize("decode", [True, False])
@pytest.mark.parametrize(
    ("prog_type", "ticked"),
    [("2", "1"), ("Refractory / no response", "Checked"), ("refractory / NO response", "1")],
)
def test_where_takes_a_code_or_a_label_of_the_field(
    tmp_path: Path, cdm: CDM, decode: bool, prog_type: str, ticked: str
) -> None:
    site = _redcap(tmp_path, _CHECKBOX_AND_WHERE % (prog_type, ticked), decode=decode)
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    assert result.tables["transplants"]["patient_key"].to_list() == ["REDCAP_T-2"]
    assert result.findings.filter(pl.col("rule_id") == "ING-WHERE-VALUE").height == 0


def test_a_where_value_that_is_no_choice_is_a_warning(tmp_path: Path, cdm: CDM) -> None:
    site = _redcap(tmp_path, _CHECKBOX_AND_WHERE % ("Refractory", "1"))
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    warning = result.findings.filter(pl.col("rule_id") == "ING-WHERE-VALUE").row(0, named=True)
    assert warning["severity"] == "warning"
    assert warning["column"] == "prog_type" and warning["value"] == "Refractory"
    assert warning["message"].startswith("tables.transplants[0].where[0]: 'Refractory' is neither")
    assert "1 = Relapse after CR/CRi; 2 = Refractory / no response" in warning["message"]
    assert result.tables["transplants"].height == 0


_SINGLE_CHECKBOX = """
  disease_assessments:
    - source: records
      where: [{column: redcap_repeat_instrument, equals: progression}]
      columns: {assessment_date: prog_date, emd_present: salv_agents___1}
"""


def test_a_single_checkbox_column_maps_to_a_yes_no_column(tmp_path: Path, cdm: CDM) -> None:
    site = _redcap(tmp_path / "raw", _SINGLE_CHECKBOX)
    raw = pl.read_csv(site / "records.csv", infer_schema=False)["salv_agents___1"]
    assert raw.drop_nulls().to_list() == ["1", "0"]
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    rows = result.tables["disease_assessments"].sort("patient_key")
    # decoded like the other coded fields: 1/0 become Checked/Unchecked, as a label export has
    assert rows.select("emd_present", "emd_present_raw").rows() == [
        ("Y", "Checked"),
        ("N", "Unchecked"),
    ]
    # a label export (decode: false) gives the same result
    labels = _redcap(tmp_path / "labels", _SINGLE_CHECKBOX, decode=False)
    text = (labels / "records.csv").read_text(encoding="utf-8")
    text = text.replace("2021-09-01,1,1,1,0", "2021-09-01,1,Checked,Checked,Unchecked")
    text = text.replace("2022-08-15,2,0,0,1", "2022-08-15,2,Unchecked,Unchecked,Checked")
    (labels / "records.csv").write_text(text, encoding="utf-8")
    again = ingest_submission(labels, labels / "mapping.yaml", None, cdm=cdm)
    assert (
        again.tables["disease_assessments"]
        .sort("patient_key")
        .select("emd_present", "emd_present_raw")
        .rows()
        == rows.select("emd_present", "emd_present_raw").rows()
    )


def test_mapping_check_prints_where_values_that_are_no_choice(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cartreg.cli.main import cli

    site = _redcap(tmp_path, _CHECKBOX_AND_WHERE % ("Refractory", "1"))
    result = CliRunner().invoke(
        cli, ["mapping", "check", str(site / "mapping.yaml"), "--submission", str(site)]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning:" in text and "'Refractory' is neither a code nor a label" in text
