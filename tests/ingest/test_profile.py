"""``cartreg profile``'s vocabulary suggestions: a vocabulary is suggested when the column's name
is about its subject and its values are its terms, never from an overlap of values alone (trial
13: ``Chromosome Ph`` was offered ``mrd_status`` for its positif/négatif, ``Cadre`` was offered
``salvage_agents``). Checked against what each sample site's own mapping maps the column to."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.ingest.mapping import load_mapping
from cartreg.ingest.profile import SourceFrame, profile_files, profile_frame
from cartreg.paths import repo_root

SAMPLE = repo_root() / "sample_data"
# Sites whose exports carry labels (a REDCap export holds codes: nothing to suggest from).
SITES = ("classeur_b", "excel_b", "ehr_c", "json_c", "deid_d")
YES_NO = "yes_no_unknown"


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


def mapped_vocabularies(site: str, cdm: CDM) -> tuple[list[Path], dict[str, set[str]]]:
    """The site's source files, and per source column the vocabularies of the coded CDM
    columns its own mapping fills from it (the answer key, written by hand for the site)."""
    mapping = load_mapping(SAMPLE / site / "mapping.yaml", cdm)
    files: set[str] = set()
    vocabularies: dict[str, set[str]] = {}
    for rules in mapping.tables.values():
        for rule in rules:
            files.add(mapping.sources[rule.source].file)
            for column in rule.columns.values():
                vocabulary = cdm.tables[rule.table].column(column.target).vocabulary
                if column.source is not None and vocabulary is not None:
                    vocabularies.setdefault(column.source, set()).add(vocabulary)
    return [SAMPLE / site / f for f in sorted(files)], vocabularies


@pytest.fixture(scope="module")
def profiles(cdm: CDM) -> dict[str, tuple[pl.DataFrame, dict[str, set[str]]]]:
    out = {}
    for site in SITES:
        files, vocabularies = mapped_vocabularies(site, cdm)
        out[site] = (profile_files(files, cdm), vocabularies)
    return out


def yes_no_answers(values: list[str | None], cdm: CDM) -> bool:
    """Most distinct values are yes/no/unknown answers (what such a suggestion claims)."""
    vocabulary = cdm.vocabularies[YES_NO]
    distinct = {v for v in values if v}
    return bool(distinct) and sum(
        vocabulary.code_for(v) is not None for v in distinct
    ) >= 0.6 * len(distinct)


@pytest.mark.parametrize("site", SITES)
def test_no_suggestion_contradicts_the_sites_mapping(
    site: str, profiles: dict[str, tuple[pl.DataFrame, dict[str, set[str]]]], cdm: CDM
) -> None:
    profile, mapped = profiles[site]
    wrong = []
    for row in profile.filter(pl.col("vocabulary").is_not_null()).iter_rows(named=True):
        expected = mapped.get(row["column"])
        if expected is None or row["vocabulary"] in expected:
            continue
        # yes_no_unknown says what the values are (answers), not what they are about: a yes/no
        # question may feed a qualifier or a status column.
        if row["vocabulary"] == YES_NO:
            continue
        wrong.append(f"{row['column']}: {row['vocabulary']} (mapped to {sorted(expected)})")
    assert not wrong, wrong


@pytest.mark.parametrize("site", SITES)
def test_yes_no_is_suggested_only_for_yes_no_answers(
    site: str, profiles: dict[str, tuple[pl.DataFrame, dict[str, set[str]]]], cdm: CDM
) -> None:
    profile, _ = profiles[site]
    for row in profile.filter(pl.col("vocabulary") == YES_NO).iter_rows(named=True):
        shown = [part.rsplit(" (", 1)[0] for part in str(row["top_values"]).split("; ")]
        assert yes_no_answers(shown, cdm), row


def test_suggestions_still_help(
    profiles: dict[str, tuple[pl.DataFrame, dict[str, set[str]]]],
) -> None:
    """Suggesting nothing would pass the tests above: most mapped coded columns whose values
    are labels still get the right vocabulary."""
    right = {}
    for site, (profile, mapped) in profiles.items():
        rows = profile.filter(pl.col("column").is_in(list(mapped)))
        right[site] = sum(
            row["vocabulary"] in mapped[row["column"]] for row in rows.iter_rows(named=True)
        )
    assert right["classeur_b"] >= 20, right
    assert right["excel_b"] >= 19, right
    assert right["ehr_c"] >= 27, right
    assert right["json_c"] >= 16, right
    assert right["deid_d"] >= 33, right


def test_the_trial_columns(profiles: dict[str, tuple[pl.DataFrame, dict[str, set[str]]]]) -> None:
    profile, _ = profiles["classeur_b"]
    suggested = dict(profile.select("column", "vocabulary").unique("column").iter_rows())
    assert suggested["Chromosome Ph"] == "ph_status"  # was mrd_status (positif/négatif)
    assert suggested["Cadre"] == "treatment_setting"  # was salvage_agents ("essai clinique")
    assert suggested["CD19 avant CAR-T"] is None  # positif is an MRD term too; not MRD
    assert suggested["Traitement"] == "salvage_agents"
    assert suggested["Méthode MRD"] == "mrd_method"
    assert suggested["Réponse"] == "response"
    assert suggested["Sexe"] == "sex"
    assert suggested["Réarrangement KMT2A"] == YES_NO


def _suggestion(column: str, values: list[str], cdm: CDM) -> str | None:
    frame = pl.DataFrame({column: values})
    profile = profile_frame(SourceFrame("x.csv", Path("x.csv"), None, frame), cdm)
    vocabulary = profile.get_column("vocabulary").item()
    return None if vocabulary is None else str(vocabulary)


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        # the same values, named for different subjects
        ("MRD", ["positiv", "negativ"], "mrd_status"),
        ("Ergebnis", ["positiv", "negativ"], None),
        ("Résultat", ["positif", "négatif", "positif"], None),
        ("BCR-ABL1", ["positive", "negative", "Ph-like"], "ph_status"),
        # a name about the subject is not enough: the values must be its terms
        ("Réponse", ["oui", "non"], YES_NO),
        ("response_date", ["2021-01-02", "2021-03-04"], None),
        ("Produkt", ["A", "B"], None),
        # languages
        ("Geschlecht", ["m", "w"], "sex"),
        ("sexo", ["F", "M"], "sex"),
        ("Causa di morte", ["infezione", "infection", "leucemia", "other"], "cause_of_death"),
        ("risposta", ["CR", "CRi"], "response"),
        # values alone, for a subject-free vocabulary only
        ("Bridge", ["ja", "nein"], YES_NO),
        ("Kategorie", ["Flu/Cy", "bendamustine"], None),
    ],
)
def test_name_and_values_must_agree(
    column: str, values: list[str], expected: str | None, cdm: CDM
) -> None:
    assert _suggestion(column, values, cdm) == expected


def test_a_title_row_does_not_reveal_an_identifier_column(tmp_path: Path, cdm: CDM) -> None:
    # Without header_row, a profile takes the title row for the header: the real names are
    # cells, and the names under 'patient_name' (no common given names) were printed.
    import xlsxwriter

    path = tmp_path / "registry.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Patients")
    sheet.write_row(0, 0, ["CAR-T registry export 2025-06-30"])
    sheet.write_row(1, 0, ["study_id", "patient_name", "Nachname", "sex"])
    for i, (name, surname) in enumerate([("Quarterfield W", "Ashcombe"), ("Zorbas T", "Ngata")]):
        sheet.write_row(2 + i, 0, [f"P00{i}", name, surname, "F"])
    book.close()
    profile = profile_files([path], cdm)
    shown = " ".join(profile.get_column("top_values").to_list())
    for value in ("Quarterfield", "Zorbas", "Ashcombe", "Ngata"):
        assert value not in shown
    assert "P001" in shown and "F (2)" in shown  # other columns are still profiled
    hidden = dict(zip(profile["column"], profile["identifier"], strict=True))
    assert hidden["column_2"] and hidden["column_3"] and not hidden["column_4"]
