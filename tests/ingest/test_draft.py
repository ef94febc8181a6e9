"""``mapping init`` drafts: the REDCap dictionary as metadata, patient-id columns, vocabularies
from values, one non-conflicting set of date formats, explode/contains/where proposals."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.cdm import CDM, load_cdm
from cartreg.ingest.draft import _formats, draft_mapping, find_patient_id, is_id_name
from cartreg.ingest.mapping import load_mapping
from cartreg.paths import repo_root
from cartreg.yamlio import load_yaml

SAMPLE = repo_root() / "sample_data"


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


def _draft(tmp_path: Path, cdm: CDM, *files: Path) -> tuple[str, dict]:  # type: ignore[type-arg]
    text = draft_mapping(list(files), cdm, site_id="DRAFT_T")
    path = tmp_path / "draft.yaml"
    path.write_text(text, encoding="utf-8")
    load_mapping(path, cdm)  # every draft is a loadable mapping
    return text, load_yaml(path)


def test_redcap_dictionary_is_metadata_and_instruments_become_wheres(
    tmp_path: Path, cdm: CDM
) -> None:
    folder = SAMPLE / "registry_a"
    text, draft = _draft(tmp_path, cdm, *sorted(folder.glob("*.csv")))
    (source,) = draft["sources"].values()  # the dictionary is not a data source
    assert source["reader"] == "redcap"
    assert source["dictionary"] == "CARTRegistry_DataDictionary_2025-07-01.csv"
    assert source["patient_id"] == "record_id"
    tables = draft["tables"]
    assert tables["progression_events"][0]["where"] == [
        {"column": "redcap_repeat_instrument", "equals": "progression"}
    ]
    assert tables["patients"][0]["where"] == [
        {"column": "redcap_repeat_instrument", "is_null": True}
    ]
    # a checkbox on a repeating instrument is rows; on the record's own form, yes/no items
    salvage = tables["salvage_treatments"][0]
    assert salvage["checkbox"] == {"field": "salv_agents", "into": "agent"}
    assert salvage["where"] == [{"column": "redcap_repeat_instrument", "equals": "salvage"}]
    patients = tables["patients"][0]["columns"]
    assert patients["prior_blinatumomab"] == {"from": "prior_tx___2"}
    assert patients["prior_allohct"] == {"from": "prior_tx___1"}
    follow = tables["follow_up"][0]["columns"]
    assert follow["disease_status"]["map"] == {"Yes": "PROGRESSED", "No": "PROGRESSION_FREE"}
    assert follow["last_contact_date"] == {"from": "fu_date"}  # from the field label
    assert follow["disease_status_date"] == {"from": "fu_date"}  # the form's date
    assert "no data cut-off column was found" in text
    infusions = tables["car_t_infusions"][0]["columns"]
    assert infusions["trial_id"] == {"from": "inf_nct"}  # values match the NCT pattern
    assert infusions["pre_bm_blast_pct"] == {"from": "inf_blasts"}  # "Marrow blasts before …"
    # a required column: the best candidate of the instrument's rows, else a note saying so
    assert tables["progression_events"][0]["columns"]["event_type"] == {"from": "prog_type"}
    assert "# hct_type: {value: one of ALLOGENEIC, AUTOLOGOUS}" in text
    # nothing is left out unseen
    assert "not proposed for any CDM column" in text and "inf_emd (Extramedullary" in text


def test_workbook_finds_the_patient_id_and_proposes_day_first_dates_only(
    tmp_path: Path, cdm: CDM
) -> None:
    _, draft = _draft(tmp_path, cdm, SAMPLE / "classeur_b" / "registre_CAR-T.xlsx")
    assert {s["patient_id"] for s in draft["sources"].values()} == {"N° patient"}
    assert draft["defaults"]["date_formats"] == ["ISO", "DMY"]
    visits = draft["tables"]["progression_events"][0]
    assert visits["where"] == [{"column": "Type", "in": ["Rechute", "Réfractaire"]}]
    german = draft_mapping([SAMPLE / "excel_b" / "CAR-T_Register_Export.xlsx"], cdm)
    assert 'patient_id: "Pat.-Nr."' in german
    # "Status" (lebt/verstorben) is the vital status by its values, not ph_status by its name
    assert (
        'vital_status: {from: "Status"}' in german and 'ph_status: {from: "Status"}' not in german
    )


def test_json_document_records_contains_explode_and_event_types(tmp_path: Path, cdm: CDM) -> None:
    _, draft = _draft(tmp_path, cdm, SAMPLE / "json_c" / "export_cart_registry.json")
    (source,) = draft["sources"].values()
    assert (source["records"], source["patient_id"]) == ("subjects", "subject_id")
    tables = draft["tables"]
    patients = tables["patients"][0]["columns"]
    assert patients["prior_blinatumomab"] == {
        "from": "prior_therapies",
        "contains": "blinatumomab",
    }
    assert "salvage_treatments" not in [
        t for t, rules in tables.items() if rules[0].get("contains")
    ]
    marrow = tables["disease_assessments"][0]
    assert marrow["explode"] == "timeline"
    assert marrow["where"] == [{"column": "timeline.event", "equals": "marrow"}]
    assert marrow["columns"]["assessment_day"] == {"from": "timeline.day"}
    assert tables["salvage_treatments"][0]["explode"] == ["timeline", "timeline.agents"]


@pytest.mark.parametrize(
    "name", ["N° patient", "Pat.-Nr.", "subject_id", "STUDY_ID", "codice paziente", "ID", "pid"]
)
def test_patient_id_names_in_several_languages(name: str) -> None:
    assert is_id_name(name)


@pytest.mark.parametrize("name", ["infusion_id", "Trial ID", "N° perfusion", "record"])
def test_other_ids_are_not_patient_ids(name: str) -> None:
    assert not is_id_name(name)


def test_patient_id_falls_back_to_the_column_every_sheet_shares() -> None:
    patients = pl.DataFrame({"Nom de code": ["A", "B"], "Sexe": ["F", "H"]})
    visits = pl.DataFrame({"Nom de code": ["A", "A", "B"], "Date": ["1", "2", "3"]})
    assert find_patient_id(patients, list(patients.columns), [visits]) == "Nom de code"


_DAY = st.integers(1, 28)
_MONTH = st.integers(1, 12)


@given(dates=st.lists(st.tuples(_DAY, _MONTH, st.integers(2000, 2025)), min_size=1, max_size=8))
def test_dmy_and_mdy_are_never_proposed_together(dates: list[tuple[int, int, int]]) -> None:
    values = pl.Series([f"{d:02d}/{m:02d}/{y}" for d, m, y in dates])
    formats, note = _formats([("ISO", "DMY", "MDY")], [values])
    assert not {"DMY", "MDY"} <= set(formats)
    if any(d > 12 for d, _, _ in dates):
        assert "DMY" in formats and not note
    elif all(d == m for d, m, _ in dates) or all(d <= 12 for d, _, _ in dates):
        assert "DMY" in formats and note


def test_month_first_values_give_mdy() -> None:
    values = pl.Series(["03/25/2021", "04/02/2021"])
    assert _formats([("DMY", "MDY")], [values]) == (["MDY"], "")
