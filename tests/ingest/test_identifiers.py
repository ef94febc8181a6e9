"""Identifier columns by name (seven languages) and by value (every row), one test per detector."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.cdm import load_cdm
from cartreg.ingest.identifiers import (
    Evidence,
    Leaf,
    identifier_columns,
    identifier_reasons,
    name_kind,
    name_tokens,
    value_evidence,
)
from cartreg.ingest.mapping import load_mapping
from cartreg.ingest.pipeline import read_source
from cartreg.redact import BIRTH_DATE, EMAIL, LABELLED_NUMBER, NATIONAL_ID, PERSON_NAME, PHONE

ROOT = Path(__file__).resolve().parents[2]
SITES = sorted(ROOT.glob("sample_data/*/mapping.yaml")) + sorted(
    (ROOT / "tests" / "ingest" / "fixtures").glob("*/mapping.yaml")
)
# Columns of the fixtures that are identifiers on purpose; every other source column is not.
EXPECTED = {
    ("csv_site", "baseline"): {"patient_name", "dob"},
    ("redcap_site", "records"): {"mrn"},
    # a FHIR Patient carries the person: names and the full birth date (read as a year only)
    ("fhir_site", "patient"): {"name", "name.family", "birthDate"},
}

IDENTIFIER_NAMES = [
    # German
    "Nachname", "Vorname", "Geburtsdatum", "Telefonnummer", "KV_Nummer", "Hausarzt_Adresse",
    "pat_Nachname", "Geb.-Datum", "GebDatum", "Straße", "PLZ", "Handynummer", "E-Mail",
    "Versichertennummer", "Fallnummer", "Geburtsmonat", "Geburtsort",
    # French
    "nom", "prénom", "NomPatient", "date_de_naissance", "téléphone", "courriel", "adresse",
    "code_postal", "numero_securite_sociale", "NIR", "lieu_de_naissance", "IPP",
    # Spanish
    "apellido", "nombre", "fecha_nacimiento", "telefono", "correo_electronico", "direccion",
    "DNI", "NHC", "numero_historia_clinica", "tarjeta_sanitaria",
    # Italian
    "cognome", "nome_paziente", "data_di_nascita", "dataNascita", "codice_fiscale",
    "indirizzo", "CAP", "cartella_clinica", "tessera_sanitaria",
    # Dutch
    "achternaam", "voornaam", "geboortedatum", "telefoonnummer", "woonplaats", "postcode",
    "BSN", "burgerservicenummer", "ziekenhuisnummer",
    # Portuguese
    "sobrenome", "nome_completo", "data_nascimento", "data_de_nascimento", "telefone",
    "endereco", "CEP", "CPF", "numero_utente", "prontuario",
    # English
    "patient_name", "FirstName", "last_name", "DOB", "DateOfBirth", "birth_date", "phone",
    "mobile", "email", "address", "zip_code", "MRN", "MRNNumber", "medical_record_number",
    "ssn", "social_security_number", "NHS_number", "insurance_number", "IBAN", "ip_address",
    "url", "photo", "license_plate", "Name", "mother_name", "initials",
    # fields of nested records, flattened (the fuzz run's Parquet seed 196413)
    "nested.patient_name", "nested.nested.patient_name", "kontakt.Nachname", "patient.name",
    "contact.email", "person.0.phone",
    # spellings the lexicon missed (hostile-input review): abbreviations, compounds and
    # synonyms in the seven languages
    "Handynr", "TelNr", "Ehename", "Fall-ID", "Hausnr",
    "nom_marital", "nom_usuel", "nom_epouse", "rue", "portable",
    "nombre_de_pila", "num_historia", "NASS", "residencia",
    "nominativo", "residenza", "codfisc", "cod_fisc",
    "Patiëntnaam", "voorletters", "tussenvoegsel", "geslachtsnaam", "familienaam",
    "geboorteplaats",
    "nome_proprio", "contato_nome", "nome_social", "Telemóvel", "processo_clinico",
    "num_processo", "NISS", "cartao_sus", "numero_cartao_sns", "num_utente", "logradouro",
    "bairro",
    "fname", "LNAME", "PAT_FIRST_NM", "last_nm", "nhsno", "bdate",
]  # fmt: skip

# Columns a CDM mapping reads every day: dates of care, day offsets, products, study ids.
ORDINARY_NAMES = [
    "ITEM_NAME", "drug_name", "product_name", "center_name", "nom_produit", "nombre_farmaco",
    "STUDY_ID", "record_id", "pseudo_id", "patient_id", "Pat.-Nr.", "Pat-Nr", "PID",
    "EVENT_DATE", "DIAG_DATE", "dx_date", "Diagnosedatum", "date_diagnostic",
    "fecha_diagnostico", "data_diagnosi", "infusion_date", "Infusionsdatum", "death_date",
    "DATA_CUT_DATE", "BIRTH_YEAR", "birth_year", "yob", "Geburtsjahr", "annee_de_naissance",
    "anno_di_nascita", "ano_nacimiento", "geboortejaar", "birth_weight", "country_of_birth",
    "last_contact_day", "days_from_infusion", "BM_BLAST_PCT", "CNS_STATUS", "cns",
    "product_lot_or_batch", "lot", "batch", "cell_dose", "CELLS_PER_KG", "PROTOCOL_NCT",
    "trial_id", "CAUSE_OF_DEATH", "insurance_type", "Krankenkasse", "ANC_PER_UL",
    "DONOR_TYPE", "timepoint", "mrd_status", "redcap_data_access_group", "age", "sex",
    "nested.sex", "nested.birth_year", "drug.name", "product.product_name", "site.center_name",
    "Pat.-Nr.", "dose.value",
]  # fmt: skip


@pytest.mark.parametrize("column", IDENTIFIER_NAMES)
def test_identifier_names_in_every_language(column: str) -> None:
    assert name_kind(column) is not None, name_tokens(column)


@pytest.mark.parametrize("column", ORDINARY_NAMES)
def test_ordinary_column_names_are_not_identifiers(column: str) -> None:
    assert name_kind(column) is None


@pytest.mark.parametrize(
    ("column", "tokens"),
    [
        ("pat_Nachname", ["pat", "nachname"]),
        ("NomPatient", ["nom", "patient"]),
        ("prénom", ["prenom"]),
        ("MRNNumber", ["mrn", "number"]),
        ("Geb.-Datum", ["geb", "datum"]),
        ("eMail", ["e", "mail"]),
        ("Straße", ["strasse"]),
        ("phone2", ["phone", "2"]),
    ],
)
def test_name_tokens(column: str, tokens: list[str]) -> None:
    assert name_tokens(column) == tokens


@pytest.mark.parametrize("mapping", SITES, ids=lambda p: p.parent.name)
def test_sample_sites_and_fixtures_have_no_unexpected_identifier(mapping: Path) -> None:
    """Every source column of the four sample sites and of the fixtures, values included."""
    site = load_mapping(mapping, load_cdm())
    for spec in site.sources.values():
        frame = read_source(spec, mapping.parent).frame
        found = set(identifier_reasons(frame))
        assert found == EXPECTED.get((mapping.parent.name, spec.name), set()), found


def _frame(**columns: list[str | None]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    return pl.DataFrame({"source_row": list(range(2, n + 2)), **columns})


def _filler(n: int, planted: str, at: int) -> list[str | None]:
    return [planted if i == at else f"note {i % 7}" for i in range(n)]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("hans.mueller@example.de", EMAIL),
        ("+49 30 1234567", PHONE),
        ("(0221) 123 45 67", PHONE),
        ("555-123-4567", PHONE),
        ("MRN 12345678", LABELLED_NUMBER),
        ("seen on ward, mrn: 00123456, CR at d28", LABELLED_NUMBER),
        ("Pat.-Nr.: 4711-0815", LABELLED_NUMBER),
        ("123-45-6789", NATIONAL_ID),
        ("RSSMRA85T10A562S", NATIONAL_ID),
        ("A123456789", NATIONAL_ID),
        ("123.456.789-09", NATIONAL_ID),
        ("1 85 05 78 006 084 36", NATIONAL_ID),
    ],
)
def test_one_value_in_row_501_is_enough(value: str, kind: str) -> None:
    frame = _frame(comment=_filler(700, value, 500))
    assert identifier_reasons(frame) == {"comment": f"{kind} in row 502"}


def test_every_row_is_examined_not_a_sample() -> None:
    frame = _frame(contact=_filler(200_000, "x.y@example.org", 199_999))
    assert identifier_reasons(frame)["contact"].endswith("in row 200001")


def test_a_categorical_column_is_judged_by_its_own_values() -> None:
    values = pl.Series(_filler(600, "a@b.example", 550), dtype=pl.Categorical)
    frame = pl.DataFrame({"source_row": list(range(600)), "kontakt": values})
    assert identifier_columns(frame) == ["kontakt"]


def test_full_birth_date_in_a_birth_named_column_in_any_language() -> None:
    for column in ("Geboren", "naissance", "nascita", "birth", "Geburt_Patient"):
        frame = _frame(**{column: ["1970", "1981", "04.05.1970"]})
        assert identifier_reasons(frame) == {column: f"{BIRTH_DATE} in row 4"}
    # A year of birth is no identifier, nor is a full date of care in another column.
    assert identifier_reasons(_frame(Geburtsjahr=["1970", "1981"], dx=["2020-01-04"] * 2)) == {}


def test_person_name_column_by_value() -> None:
    names = ["Müller, Hans", "Maria Rossi", "DUPONT Jean", "Ana Silva", "van Dijk, Sanne"]
    frame = _frame(Kontaktperson=names, response=["CR", "Complete Remission", "PR", "NR", "CRi"])
    assert identifier_reasons(frame) == {"Kontaktperson": f"most values look like a {PERSON_NAME}"}


def test_plain_number_columns_need_most_values_and_their_check_digits() -> None:
    # 11-proof BSNs and plain mobile numbers; cell doses of the same length are no identifier.
    bsn = ["111222333", "123456782", "398259793", "190748333", "222222222"]
    phones = ["0612345678", "0623456789", "01711234567"]
    doses = ["100000000", "200000000", "350000000", "123456789"]
    leaves = {c: Leaf(pl.Series(v), None) for c, v in {"a": bsn, "b": phones, "c": doses}.items()}
    reasons = {c: e.reason() for c, e in value_evidence(leaves).items()}
    assert reasons == {
        "a": f"most values look like a {NATIONAL_ID}",
        "b": f"most values look like a {PHONE}",
        "c": None,
    }


def test_array_fields_are_examined(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "source_row": [1, 2],
            "contacts": [[{"kind": "home", "value": "+33 6 12 34 56 78"}], []],
            "events": [[{"day": "3", "response": "CR"}], [{"day": "9", "response": "PR"}]],
        }
    )
    assert set(identifier_reasons(frame)) == {"contacts.value"}
    assert identifier_columns(frame) == ["contacts"]


@given(
    st.sampled_from(["M", "F", "2020-01-05", "12.5", "<5", "Kymriah", "CR", "-99", "UNK", "D28"]),
    st.integers(min_value=1, max_value=50),
)
def test_ordinary_values_never_flag_a_column(value: str, n: int) -> None:
    assert identifier_reasons(_frame(col=[value] * n)) == {}


def test_evidence_of_parts_merges_into_the_evidence_of_the_whole() -> None:
    late = Evidence(kind=EMAIL, row=900, cells=10, weak={PERSON_NAME: 2})
    early = Evidence(kind=PHONE, row=12, cells=5, weak={PERSON_NAME: 1})
    nothing = Evidence(cells=4)
    merged = late.merge(nothing).merge(early)
    assert (merged.kind, merged.row, merged.cells, merged.weak) == (
        PHONE,
        12,
        19,
        {PERSON_NAME: 3},
    )
    assert merged.reason() == f"{PHONE} in row 12"
    assert Evidence(cells=5, weak={PERSON_NAME: 3}).reason() == (
        f"most values look like a {PERSON_NAME}"
    )
    assert Evidence(cells=7, weak={PERSON_NAME: 3}).reason() is None
