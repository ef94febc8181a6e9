"""``mapping init`` drafts: the REDCap dictionary as metadata, patient-id columns, vocabularies
from values, one non-conflicting set of date formats, explode/contains/where proposals."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
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
    # a required column: the best candidate of the instrument's rows, else a constant to review
    assert tables["progression_events"][0]["columns"]["event_type"] == {"from": "prog_type"}
    assert tables["transplants"][0]["columns"]["hct_type"] == {"value": "ALLOGENEIC"}
    # nothing is left out unseen
    assert "not proposed for any CDM column" in text and "inf_emd (Extramedullary" in text


def test_workbook_finds_the_patient_id_and_proposes_day_first_dates_only(
    tmp_path: Path, cdm: CDM
) -> None:
    _, draft = _draft(tmp_path, cdm, SAMPLE / "classeur_b" / "registre_CAR-T.xlsx")
    assert {s["patient_id"] for s in draft["sources"].values()} == {"N° patient"}
    assert draft["defaults"]["date_formats"] == ["ISO", "DMY"]
    # "0,111" in MRD (%): numbers are written with a decimal comma
    assert draft["defaults"]["decimal"] == ","
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


# -- every draft passes `mapping check` -------------------------------------------------------

_SITES = sorted(p for p in SAMPLE.iterdir() if (p / "mapping.yaml").is_file())


def _export_files(folder: Path) -> list[Path]:
    suffixes = {".csv", ".xlsx", ".json", ".ndjson"}
    return [f for f in sorted(folder.iterdir()) if f.suffix in suffixes]


def _passes_mapping_check(files: list[Path], folder: Path, draft: Path) -> None:
    from click.testing import CliRunner

    from cartreg.cli.main import cli

    made = CliRunner().invoke(
        cli, ["mapping", "init", *map(str, files), "--out", str(draft), "--force"]
    )
    assert made.exit_code == 0, made.output
    checked = CliRunner().invoke(cli, ["mapping", "check", str(draft), "--submission", str(folder)])
    assert checked.exit_code == 0, checked.output + draft.read_text(encoding="utf-8")


@pytest.mark.parametrize("site", _SITES, ids=[p.name for p in _SITES])
def test_draft_of_every_sample_site_passes_mapping_check(site: Path, tmp_path: Path) -> None:
    _passes_mapping_check(_export_files(site), site, tmp_path / "draft.yaml")


def test_required_code_without_a_column_is_named_by_the_event_kinds(
    tmp_path: Path, cdm: CDM
) -> None:
    _, draft = _draft(tmp_path, cdm, SAMPLE / "classeur_b" / "registre_CAR-T.xlsx")
    follow = draft["tables"]["follow_up"][0]
    assert follow["where"] == [{"column": "Type", "in": ["Dernières nouvelles", "Décès"]}]
    assert follow["columns"]["vital_status"] == {
        "from": "Type",
        "map": {"Décès": "DEAD", "Dernières nouvelles": "ALIVE"},
        "otherwise": "UNKNOWN",
    }
    registry = draft_mapping(sorted((SAMPLE / "registry_a").glob("*.csv")), cdm)
    assert 'hct_type: {value: "ALLOGENEIC"}  # REVIEW: required and no column found' in registry


_KINDS = ["Évaluation", "Rechute", "Décès", "Greffe", "Rattrapage", "Dernières nouvelles"]
_LAYOUT_NAMES = {
    "id": ["N° patient", "Pat.-Nr.", "subject_id", "codice paziente"],
    "kind": ["Type", "Ereignis", "event_type", "Tipo"],
    "date": ["Date", "Datum", "event_date", "Data"],
}


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _LAYOUT_NAMES.items()}),
    kinds=st.lists(st.sampled_from(_KINDS), min_size=2, max_size=6, unique=True),
    extra=st.sampled_from(["Produit", "Réponse", "Cause du décès", "Sexe", "Bemerkung"]),
    day_first=st.booleans(),
)
def test_draft_of_a_synthesized_long_layout_passes_mapping_check(
    tmp_path: Path, names: dict[str, str], kinds: list[str], extra: str, day_first: bool
) -> None:
    """A long sheet (one row per event, a type column) in other languages and spellings."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example
    values = {
        "Produit": "tisagenlecleucel",
        "Réponse": "RC",
        "Cause du décès": "leucémie",
        "Sexe": "F",
        "Bemerkung": "x",
    }
    rows = []
    for p in range(6):
        for k, kind in enumerate(kinds):
            day, month = 13 + p, 1 + k
            date = f"{day:02d}/{month:02d}/2024" if day_first else f"{month:02d}/{day:02d}/2024"
            rows.append(
                {
                    names["id"]: f"P{p:03d}",
                    names["kind"]: kind,
                    names["date"]: date,
                    extra: values[extra] if k % 2 == 0 else None,
                }
            )
    pl.DataFrame(rows).write_csv(folder / "visits.csv")
    _passes_mapping_check([folder / "visits.csv"], folder, folder / "draft.yaml")


def test_comment_names_exactly_the_values_that_are_not_terms(tmp_path: Path, cdm: CDM) -> None:
    text, _ = _draft(tmp_path, cdm, SAMPLE / "classeur_b" / "registre_CAR-T.xlsx")
    (line,) = [x for x in text.splitlines() if x.strip().startswith("product:")]
    products = pl.read_excel(SAMPLE / "classeur_b" / "registre_CAR-T.xlsx", sheet_name="Perfusions")
    distinct = set(products["Produit"].drop_nulls().to_list())
    left = {v for v in distinct if cdm.vocabularies["car_t_products"].code_for(v) is None}
    assert 0 < len(left) < len(distinct)
    assert f"{len(left)} of {len(distinct)} values are not terms of 'car_t_products'" in line
    assert all(f'"{v}"' in line for v in left)
    assert not any(f'"{v}"' in line for v in distinct - left)


def test_french_workbook_draft_maps_what_its_names_and_values_say(tmp_path: Path, cdm: CDM) -> None:
    """What the trial-13 user had to add by hand: dates, counts and prior therapies named in
    French, and the date of each event row of the long ``Visites`` sheet."""
    _, draft = _draft(tmp_path, cdm, SAMPLE / "classeur_b" / "registre_CAR-T.xlsx")
    tables = draft["tables"]
    patients = tables["patients"][0]["columns"]
    assert patients["birth_year"] == {"from": "Année de naissance", "part": "year"}
    assert patients["diagnosis_date"] == {"from": "Date du diagnostic"}  # site formats only
    assert patients["n_prior_lines"] == {"from": "Nombre de lignes antérieures"}
    assert patients["prior_allohct"] == {"from": "Allogreffe antérieure"}
    assert patients["cytogenetic_risk"] == {"from": "Risque cytogénétique"}
    infusions = tables["car_t_infusions"][0]["columns"]
    assert infusions["infusion_date"] == {"from": "Date de perfusion"}
    assert infusions["infusion_number"] == {"from": "N° perfusion"}
    assert infusions["pre_bm_blast_pct"] == {"from": "Blastes médullaires avant LD (%)"}
    assert infusions["reinfusion_reason"] == {"from": "Motif de réinjection"}
    assert tables["disease_assessments"][0]["columns"]["assessment_date"] == {"from": "Date"}
    assert tables["progression_events"][0]["columns"]["progression_date"] == {"from": "Date"}
    follow = tables["follow_up"][0]["columns"]
    assert follow["last_contact_date"] == {"from": "Date"}
    assert follow["disease_status"] == {"from": "Statut maladie"}


def test_local_spellings_that_translate_to_a_code_become_vocabulary_overrides(
    tmp_path: Path, cdm: CDM
) -> None:
    text, draft = _draft(tmp_path, cdm, SAMPLE / "classeur_b" / "registre_CAR-T.xlsx")
    overrides = draft["vocabulary_overrides"]
    assert overrides["sex"] == {"H": "M"}  # homme
    assert overrides["cytogenetic_risk"] == {"haut risque": "HIGH", "inconnu": "UNKNOWN"}
    assert overrides["response"] == {"non évaluée": "NOT_EVALUATED"}
    assert overrides["cause_of_death"] == {"leucémie": "PRIMARY_DISEASE"}
    assert "vocabulary_overrides:  # REVIEW" in text
    german = draft_mapping([SAMPLE / "excel_b" / "CAR-T_Register_Export.xlsx"], cdm)
    assert 'yes_no_unknown: {"unbekannt": UNKNOWN}' in german


def test_h_and_m_without_f_are_read_as_hombre_and_mujer(tmp_path: Path, cdm: CDM) -> None:
    """Spanish H/M: M is mujer. Drafting only H -> M would read every woman as a man."""
    path = tmp_path / "demografia.csv"
    rows = [f"P{i:02d};{'HM'[i % 2]};{1950 + i}" for i in range(10)]
    path.write_text("ID_ESTUDIO;SEXO;ANIO_NAC\n" + "\n".join(rows) + "\n", encoding="utf-8")
    text, draft = _draft(tmp_path, cdm, path)
    assert draft["vocabulary_overrides"]["sex"] == {"H": "M", "M": "F"}
    assert "M is female" in text
    # French H/F keeps F as a term: only H is translated
    path.write_text("ID;Sexe\nP1;H\nP2;F\n", encoding="utf-8")
    _, french = _draft(tmp_path, cdm, path)
    assert french["vocabulary_overrides"]["sex"] == {"H": "M"}
