"""What may be echoed of a raw value: identifier-looking values masked, long text cut."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.cdm import load_cdm
from cartreg.errors import ConfigError, InputError
from cartreg.findings import MASK, findings_frame
from cartreg.redact import (
    GIVEN_NAMES,
    MAX_VALUE_CHARS,
    looks_like_identifier,
    looks_like_name,
    redact_findings,
    redact_series,
    redact_text,
    redact_value,
)

IDENTIFYING = [
    "hans.mueller@example.de",
    "+49 30 1234567",
    "+33 6 12 34 56 78",
    "030/1234567",
    "06 12 34 56 78",
    "(555) 123-4567",
    "123-45-6789",
    "123.456.789-09",
    "RSSMRA85T10A562S",
    "A123456789",
    "DE89 3704 0044 0532 0130 00",
    "MRN 12345678",
    "Pat.-Nr.: 4711-0815",
    "NHC 1234567",
    "192.168.1.20",
    "https://portal.example.org/patient/17",
    "Müller, Hans",
    "Alice Smith",
    "MARIA ROSSI",
    "Dr. Jean Dupont",
    "van Dijk, Sanne",
]
# Values a site has to see to fix its export.
ORDINARY = [
    "2018", "03.2019", "1000000", "45,5", "<5%", "0.01", "UNK", "-99", "Kymriah", "tisa-cel",
    "Flu/Cy", "Complete Remission", "CR", "CD19-negative", "CD19 POSITIVE", "NCT02374333",
    "P001", "CT00001", "EHR_C-CT00001", "BLINATUMOMAB 35 MCG INJ", "19-28z CAR T (protocol)",
    "CELLS/KG", "1 000 000", "+5", "D28", "NOT DETECTED", "Blinatumomab, Inotuzumab", "FLAG-IDA",
]  # fmt: skip
FULL_DATES = ["1970-05-04", "04.05.1970", "5/4/70", "19700504", "4 May 1970", "May 4, 1970"]


@pytest.mark.parametrize("value", IDENTIFYING)
def test_identifying_values_are_masked(value: str) -> None:
    assert redact_value(value) == MASK
    assert redact_value(f"  {value} ") == MASK


@pytest.mark.parametrize("value", ORDINARY)
def test_ordinary_values_are_shown(value: str) -> None:
    assert redact_value(value) == value


@pytest.mark.parametrize("value", FULL_DATES)
def test_full_dates_are_masked_outside_date_columns(value: str) -> None:
    assert redact_value(value) == MASK
    assert redact_value(value, date_column=True) == value


def test_vocabulary_terms_are_never_taken_for_names() -> None:
    cdm = load_cdm()
    words = {
        word
        for vocab in cdm.vocabularies.values()
        for term in vocab.terms
        for word in (term.code, term.label, *term.synonyms)
    }
    assert not [w for w in words if looks_like_name(w)]


def test_long_values_are_cut() -> None:
    shown = redact_value("x" * 500)
    assert shown is not None and len(shown) == MAX_VALUE_CHARS and shown.endswith("…")


def test_polars_and_python_agree() -> None:
    values = [*IDENTIFYING, *ORDINARY, *FULL_DATES, None]
    series = redact_series(pl.Series(values, dtype=pl.String))
    assert series.to_list() == [redact_value(v) for v in values]


@given(
    st.sampled_from(sorted(GIVEN_NAMES)),
    st.from_regex(r"[A-Z][a-z]{3,10}", fullmatch=True),
    st.sampled_from(["{g} {s}", "{s}, {g}", "{S} {G}", "Dr. {g} {s}"]),
)
def test_names_with_a_common_given_name_are_masked(
    given_name: str, surname: str, form: str
) -> None:
    text = form.format(g=given_name.title(), s=surname, G=given_name.upper(), S=surname.upper())
    assert looks_like_identifier(text)


@given(st.emails())
def test_every_email_is_masked(email: str) -> None:
    assert redact_value(f"contact: {email}") == MASK


def test_messages_lose_records_and_identifiers_but_keep_their_sense() -> None:
    raw = 'could not append value: {"name": "Hans Müller", "dob": "1970-05-04"} of type struct'
    assert redact_text(raw) == "could not append value: {…} of type struct"
    text = redact_text("value 'Müller, Hans' in column 'Nachname'; call +49 30 1234567")
    assert text == "value '***' in column 'Nachname'; call ***"
    assert len(redact_text("y" * 5000)) <= 400


def test_errors_never_echo_what_a_parser_saw() -> None:
    row = ",".join(["P001", "Müller, Hans", "hans@example.de", "x" * 500])
    error = InputError(
        f"unreadable line: '{row}'", hint=f"saw {{'email': 'hans@example.de', 'n': {row!r}}}"
    )
    text = str(error)
    assert "hans@example.de" not in text and "Müller" not in text and len(text) < 200
    config = ConfigError("bad value 'a.b@example.org'", path="m.yaml", key="tables.x")
    assert str(config) == "m.yaml: tables.x: bad value '***'"


def test_findings_keep_dates_of_date_columns_and_mask_the_rest() -> None:
    findings = findings_frame(
        pl.DataFrame(
            {
                "rule_id": ["ING-DATE", "ING-UNMAPPED", "ING-UNMAPPED", "ING-NUMBER", "X"],
                "severity": "error",
                "category": "conformance",
                "column": ["diagnosis_date", "sex", "sex", "bm_blast_pct", None],
                "value": ["2020-13-45", "Müller, Hans", "1970-05-04", "z" * 100, None],
                "message": ["ok", "ok", "ok", "ok", "from a@b.example: ok"],
            }
        )
    )
    shown = redact_findings(findings)
    assert shown.get_column("value").to_list() == [
        "2020-13-45",
        MASK,
        MASK,
        "z" * (MAX_VALUE_CHARS - 1) + "…",
        None,
    ]
    assert shown.get_column("message").to_list()[-1] == "from ***: ok"
    assert shown.columns == findings.columns
    assert shown.get_column("finding_id").equals(findings.get_column("finding_id"))


def test_a_record_echoed_as_a_value_keeps_only_its_brackets() -> None:
    row = '{"patient_key": "S-P001", "birth_date": "1970-05-04", "sex": "F"}'
    assert redact_value(row) == "{…}"
    assert redact_series(pl.Series([row, "[1, 2]", "[" + "x, " * 30 + "]"])).to_list() == [
        "{…}",
        "[1, 2]",
        "[…]",
    ]
