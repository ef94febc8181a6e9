"""``mapping init``: a draft mapping proposing CDM targets for source columns.

Evidence, in this order: a REDCap data dictionary (never read as data: it names each field's
form, its choices and which fields are checkboxes), known aliases and CDM column names, and the
values themselves (a coded column is proposed for the vocabulary its values belong to, not for
a column whose name looks alike). Every proposal carries a ``# REVIEW`` comment with its
evidence: the draft is a starting point for a person, never a mapping to run unread.

What the draft works out for the person:

* the patient-id column (by name in any of the usual languages, else the column shared by
  every sheet of a workbook, else the first column with one distinct value per row);
* the source options: ``reader: redcap`` with its ``dictionary``, the JSON ``records`` key;
* one date format per site, never two that contradict each other (DMY or MDY, chosen from
  values such as ``25/03/2021``; a note when nothing tells them apart);
* the ``where`` of each rule: the REDCap instrument of its fields, or the value of an event
  type column (``Type``, ``timeline.event``) in whose rows its fields are filled;
* ``explode`` for arrays of records, ``contains`` for arrays of plain values at the top of a
  record (prior therapies), ``checkbox`` for REDCap checkbox fields whose choices are a
  vocabulary's terms.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
import yaml

from cartreg.cdm import CDM
from cartreg.ingest.harmonize import DERIVED_COLUMNS
from cartreg.ingest.identifiers import identifier_columns
from cartreg.ingest.mapping import is_per_patient
from cartreg.ingest.profile import (
    SourceFrame,
    array_sources,
    date_formats_for,
    read_any,
    vocabulary_match,
)
from cartreg.ingest.readers.fhir import is_fhir_document
from cartreg.ingest.readers.redcap import REDCAP_COLUMNS, dictionary_choices, read_redcap
from cartreg.ingest.readers.redcap import read_dictionary as read_redcap_dictionary
from cartreg.ingest.transforms.dates import parse_dates
from cartreg.ingest.transforms.numbers import decimal_mark
from cartreg.ingest.transforms.reshape import checkbox_columns

# Site spellings seen in exports -> (table, column). Name matching handles the rest.
ALIASES: dict[str, tuple[str, str]] = {
    "gender": ("patients", "sex"),
    "sex": ("patients", "sex"),
    "yob": ("patients", "birth_year"),
    "dob": ("patients", "birth_year"),
    "year_of_birth": ("patients", "birth_year"),
    "ph": ("patients", "ph_status"),
    "bcr_abl": ("patients", "ph_status"),
    "dx_date": ("patients", "diagnosis_date"),
    "prior_lines": ("patients", "n_prior_lines"),
    "car_t_product": ("car_t_infusions", "product"),
    "product": ("car_t_infusions", "product"),
    "cart_date": ("car_t_infusions", "infusion_date"),
    "infusion_date": ("car_t_infusions", "infusion_date"),
    "ld_regimen": ("car_t_infusions", "lymphodepletion_regimen"),
    "response": ("disease_assessments", "response"),
    "relapse_date": ("progression_events", "progression_date"),
    "agent": ("salvage_treatments", "agent"),
    "hct_date": ("transplants", "hct_date"),
    "salv_start": ("salvage_treatments", "start_date"),
    "salvage_start": ("salvage_treatments", "start_date"),
    "vital_status": ("follow_up", "vital_status"),
    "death_date": ("follow_up", "death_date"),
    "last_contact": ("follow_up", "last_contact_date"),
}
# Words of a patient-id column's name, in the languages sites write: a word saying "number or
# id" with one saying whose (N° patient, Pat.-Nr., codice paziente, subject_id), or "id" alone.
_ID_WORDS = {"id", "nr", "no", "n", "num", "number", "numero", "code", "codice", "key", "ident"}
_SUBJECT_WORDS = {
    "patient",
    "patients",
    "patienten",
    "paciente",
    "paziente",
    "pat",
    "pt",
    "pid",
    "subject",
    "subj",
    "record",
    "study",
    "participant",
    "case",
    "pseudo",
    "pseudonym",
    "local",
}
# Names of a column telling what kind of event a row of a long sheet or array is.
_EVENT_TYPE_WORDS = {"event", "type", "kind", "category", "ereignis", "art", "typ", "tipo"}
# Vocabularies shared by many columns: their values alone do not say which column is meant.
_AMBIGUOUS_VOCABULARIES = {"yes_no_unknown", "date_precision", "numeric_qualifier"}
_FILLER_WORDS = {"of", "the", "at", "in", "date", "de", "du", "la", "le", "des", "der", "die"}
_PROGRESSION_WORDS = {"prog", "progression", "relapse", "rechute", "recaida", "rezidiv", "recidiva"}
_NAME_CUTOFF = 0.8
_NESTED_CUTOFF = 0.9
_VALUE_EVIDENCE = 0.5
# Values alone (no name evidence) must be mostly terms of one vocabulary to propose it.
_VALUES_ALONE = 0.6
# A column whose values parse as dates this often counts towards the site's date formats.
_DATE_SHARE = 0.9


@dataclass(frozen=True)
class Proposal:
    table: str
    column: str
    source_column: str
    evidence: str
    formats: tuple[str, ...] = ()
    explode: tuple[str, ...] = ()
    where: str = ""  # rendered YAML list, e.g. '[{column: x, equals: "y"}]'
    contains: tuple[str, ...] = ()
    checkbox: str | None = None  # REDCap checkbox field exploded to rows
    map: str = ""  # rendered YAML mapping of site values to codes
    value: str | None = None  # a constant instead of a source column
    otherwise: str | None = None  # the code of values ``map`` does not name
    overrides: tuple[tuple[str, str], ...] = ()  # (site value, code) for vocabulary_overrides


@dataclass
class DraftSource:
    """A record set to draft rules for, with what is known about it beyond its values."""

    base: SourceFrame
    name: str
    patient_id: str | None
    options: dict[str, str] = field(default_factory=dict)
    # REDCap: field -> form, the repeating forms, choices per coded field, checkbox fields
    forms: dict[str, str] = field(default_factory=dict)
    repeating: set[str] = field(default_factory=set)
    choices: dict[str, dict[str, str]] = field(default_factory=dict)
    checkboxes: set[str] = field(default_factory=set)
    labels: dict[str, str] = field(default_factory=dict)
    # The pattern whose group is the id inside ``patient_id`` (a FHIR reference), if any.
    patient_id_extract: str | None = None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", _ascii(name).lower()).strip("_")


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", _ascii(name).lower()) if w}


def _site_id_from(paths: list[Path]) -> str:
    stem = re.sub(r"[^A-Z0-9_]", "_", paths[0].parent.name.upper()).strip("_") or "SITE"
    if not stem[0].isalpha():
        stem = f"S_{stem}"
    return stem[:16]


def is_id_name(name: str) -> bool:
    """Whether a column name says "patient id" (``N° patient``, ``Pat.-Nr.``, ``subject_id``)."""
    words = _words(name)
    whole = {"id", "pid", "usubjid", "subjid"}  # names that are a patient id on their own
    return bool(words <= whole and words) or bool(words & _ID_WORDS and words & _SUBJECT_WORDS)


def find_patient_id(
    frame: pl.DataFrame, columns: list[str], siblings: list[pl.DataFrame]
) -> str | None:
    """The patient-id column of a record set: by name, else the first column every sibling
    sheet of the same workbook shares, else the first column with one distinct value per row."""
    named = [c for c in columns if is_id_name(c)]
    if named:
        return named[0]
    shared = [
        c
        for c in columns
        if siblings
        and all(c in s.columns for s in siblings)
        and frame.get_column(c).null_count() == 0
    ]
    if shared:
        return shared[0]
    for column in columns:
        values = frame.get_column(column)
        if (
            values.dtype == pl.String
            and values.null_count() == 0
            and values.n_unique() == len(values)
        ):
            return column
    return None


def is_redcap_dictionary(path: Path) -> bool:
    """Whether a file is a REDCap data dictionary (metadata), not data."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return False
    names = {h.strip().strip('"').lower() for h in header.split(",")}
    return bool({"variable / field name", "field_name"} & names) and bool(
        {"field type", "field_type"} & names
    )


def _targets(cdm: CDM) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """CDM columns a mapping may fill, by name, and the first column of each vocabulary."""
    targets: dict[str, tuple[str, str]] = {}
    vocab_targets: dict[str, tuple[str, str]] = {}
    for table in cdm.tables.values():
        for col in table.columns:
            # Row ids are generated by ingest; proposing a source column for them misleads.
            if col.role not in ("declared", "day_offset") or col.name == "patient_key":
                continue
            if col.name in table.primary_key and col.name.endswith("_id"):
                continue
            targets.setdefault(col.name, (table.name, col.name))
            if col.vocabulary is not None:
                vocab_targets.setdefault(col.vocabulary, (table.name, col.name))
    return targets, vocab_targets


def _by_words(
    column: str, label: str, targets: Mapping[str, tuple[str, str]]
) -> tuple[tuple[str, str], str] | None:
    """The CDM column all of whose name's words occur in the column's name or label
    (``last_contact_date`` for "Date of last contact"), the one with most such words."""
    words = _expanded(_words(column) | _words(label))
    if "%" in label or column.endswith("_pct") or "(%)" in column:
        words.add("pct")
    best: tuple[int, str] | None = None
    for name in targets:
        needed = set(name.split("_"))
        meaningful = needed - _FILLER_WORDS
        if len(needed) < 2 or not meaningful or not needed <= words:
            continue
        if best is None or len(needed) > best[0]:
            best = (len(needed), name)
    if best is None:
        return None
    said = f"label '{label}'" if label else f"column name '{column}'"
    return targets[best[1]], f"{said} names '{best[1]}'"


# Abbreviations and words of export names -> the words of CDM column names.
_EXPANSIONS = {
    "inf": "infusion",
    "prog": "progression",
    "salv": "salvage",
    "dx": "diagnosis",
    "asmt": "assessment",
    "fu": "follow",
    "blasts": "blast",
    "marrow": "bm",
    "before": "pre",
    "extramedullary": "emd",
    # the words of the languages sites write column names in (accents are already dropped)
    **dict.fromkeys(("perfusion", "infusione", "infusion"), "infusion"),
    **dict.fromkeys(("diagnostic", "diagnose", "diagnosi", "diagnostico"), "diagnosis"),
    **dict.fromkeys(("naissance", "geburt", "nascita", "nacimiento"), "birth"),
    **dict.fromkeys(("annee", "jahr", "anno", "ano"), "year"),
    **dict.fromkeys(("deces", "tod", "todes", "decesso", "muerte", "fallecimiento"), "death"),
    **dict.fromkeys(("ursache", "causa"), "cause"),
    **dict.fromkeys(("lignes", "linien", "linee", "lineas"), "lines"),
    **dict.fromkeys(("ligne", "linie", "linea"), "line"),
    **dict.fromkeys(
        ("anterieur", "anterieure", "anterieures", "anterieurs", "vorherige", "precedenti"),
        "prior",
    ),
    **dict.fromkeys(("nombre", "anzahl", "numero", "n", "nr"), "number"),
    **dict.fromkeys(("blastes", "blasti", "blastos"), "blast"),
    **dict.fromkeys(("medullaire", "medullaires", "moelle", "midollo", "knochenmark"), "bm"),
    **dict.fromkeys(("avant", "vor", "prima", "antes"), "pre"),
    **dict.fromkeys(("reponse", "risposta", "respuesta", "ansprechen"), "response"),
    **dict.fromkeys(("allogreffe", "allogreffes", "allo"), "allohct"),
    **dict.fromkeys(("risque", "rischio", "riesgo", "risiko"), "risk"),
    **dict.fromkeys(("cytogenetique", "citogenetico", "zytogenetisch"), "cytogenetic"),
    **dict.fromkeys(("rearrangement", "riarrangiamento", "rearreglo"), "rearranged"),
    **dict.fromkeys(("unite", "einheit", "unita", "unidad"), "unit"),
    **dict.fromkeys(("motif", "grund", "motivo"), "reason"),
    **dict.fromkeys(("reinjection", "reinfusione"), "reinfusion"),
    **dict.fromkeys(("methode", "methodik", "metodo"), "method"),
    **dict.fromkeys(("statut", "stato", "estado"), "status"),
    **dict.fromkeys(("maladie", "krankheit", "malattia", "enfermedad"), "disease"),
}


def _expanded(words: set[str]) -> set[str]:
    out = set(words)
    for word in words:
        if word in _EXPANSIONS:
            out.add(_EXPANSIONS[word])
        if word == "nombre" or word == "anzahl":
            out.add("n")  # "Nombre de lignes antérieures": n_prior_lines
        if word == "marrow":
            out.add("assessment")  # "Date of the day-28 marrow": a disease assessment
    return out


def _by_pattern(
    values: pl.Series, cdm: CDM, targets: Mapping[str, tuple[str, str]]
) -> tuple[tuple[str, str], str] | None:
    """A CDM column whose ``pattern`` every value matches (NCT numbers, ICD-10 codes)."""
    present = values.drop_nulls()
    if present.is_empty():
        return None
    for name, (table, column) in targets.items():
        spec = cdm.tables[table].column(column)
        if (
            spec.pattern
            and spec.name != "patient_key"
            and bool(present.str.contains(spec.pattern).all())
        ):
            return (table, column), f"every value matches the pattern of '{name}'"
    return None


# Words of coded values in the languages sites write -> English, whose spellings the
# vocabularies know ("négatif" -> negative, "H" (homme) -> male).
_VALUE_WORDS = {
    **dict.fromkeys(("inconnu", "inconnue", "unbekannt", "sconosciuto", "desconocido"), "unknown"),
    **dict.fromkeys(("autre", "autres", "andere", "anderes", "altro", "otro"), "other"),
    **dict.fromkeys(("positif", "positive", "positiv", "positivo", "positiva"), "positive"),
    **dict.fromkeys(("negatif", "negative", "negativ", "negativo", "negativa"), "negative"),
    **dict.fromkeys(("oui", "ja", "si"), "yes"),
    **dict.fromkeys(("nein",), "no"),
    **dict.fromkeys(("h", "homme", "mann", "maennlich", "mannlich", "maschio", "hombre"), "male"),
    **dict.fromkeys(("femme", "frau", "weiblich", "femmina", "mujer"), "female"),
    **dict.fromkeys(("leucemie", "leukamie", "leukaemie", "leucemia"), "leukemia"),
    **dict.fromkeys(("haut", "hoch", "alto"), "high"),
    **dict.fromkeys(("bas", "niedrig", "basso", "bajo"), "low"),
    **dict.fromkeys(("risque", "risiko", "rischio", "riesgo"), "risk"),
    **dict.fromkeys(
        ("evaluee", "evalue", "evaluiert", "valutata", "valutato", "evaluada"), "evaluated"
    ),
    **dict.fromkeys(("faible", "schwach", "debole", "debil"), "dim"),
}


def _translated_code(value: str, cdm: CDM, vocabulary: str) -> str | None:
    """The code of a local-language spelling, read word by word in English ("non évaluée")."""
    words = re.split(r"[^a-z0-9]+", _ascii(value).lower())
    words = [w for w in words if w]
    if not words:
        return None
    english = [
        ("not" if len(words) > 1 else "no") if w == "non" else _VALUE_WORDS.get(w, w) for w in words
    ]
    if english == words:
        return None
    return cdm.vocabularies[vocabulary].code_for(" ".join(english))


def _overrides(values: pl.Series, cdm: CDM, vocabulary: str) -> tuple[tuple[str, str], ...]:
    """(value, code) for the values that are not terms but whose translation is."""
    distinct = sorted({str(v) for v in values.drop_nulls().to_list() if str(v).strip()})
    vocab = cdm.vocabularies[vocabulary]
    if vocabulary == "sex" and _hombre_mujer(distinct):
        # H (hombre, homme) beside M and no F: M is mujer, not male; reading it as a term
        # would make every woman a man
        return tuple((v, "M" if v.upper() == "H" else "F") for v in distinct if v.upper() in "HM")
    pairs = (
        (v, _translated_code(v, cdm, vocabulary)) for v in distinct if vocab.code_for(v) is None
    )
    return tuple((v, c) for v, c in pairs if c is not None)


def _hombre_mujer(distinct: list[str]) -> bool:
    letters = {v.strip().upper() for v in distinct}
    return {"H", "M"} <= letters and "F" not in letters


def _not_terms(values: pl.Series, cdm: CDM, vocabulary: str, shown: int = 4) -> str:
    """``; 2 of 5 values are not terms of 'v' ("a", "b"): map them`` (empty when all are)."""
    distinct = sorted({str(v) for v in values.drop_nulls().to_list() if str(v).strip()})
    vocab = cdm.vocabularies[vocabulary]
    left = [v for v in distinct if vocab.code_for(v) is None]
    if not left:
        return ""
    listed = ", ".join(_q(v) for v in left[:shown]) + (", …" if len(left) > shown else "")
    return (
        f"; {len(left)} of {len(distinct)} values are not terms of '{vocabulary}' ({listed}):"
        " map them (vocabulary_overrides or map)"
    )


def _value_share(values: pl.Series, cdm: CDM, vocabulary: str) -> float:
    distinct = [v for v in values.drop_nulls().unique().to_list() if str(v).strip()]
    if not distinct:
        return 0.0
    vocab = cdm.vocabularies[vocabulary]
    return sum(vocab.code_for(v) is not None for v in distinct) / len(distinct)


def propose(
    source: SourceFrame,
    cdm: CDM,
    patient_id: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[Proposal]:
    """One proposal per mappable column of a record set.

    Array columns get no proposal themselves: their fields do, in the record sets of
    :func:`array_sources`, each proposal carrying the ``explode`` it needs. ``labels`` (REDCap
    field labels) add their words to a column's name ("Date of last contact").
    """
    frame = source.frame
    columns = [
        c for c in source.own_columns() if not isinstance(frame.schema[c], pl.List | pl.Null)
    ]
    identifiers = set(identifier_columns(frame))
    targets, vocab_targets = _targets(cdm)
    proposals: list[Proposal] = []
    for column in columns:
        if column == patient_id or column in REDCAP_COLUMNS or column.endswith("_complete"):
            continue
        if "___" in column and labels is not None:
            continue  # REDCap checkbox choices: see _redcap_proposals
        key = _norm(column)
        # Inside an array, the field's own name ("response" of "assessments.response") counts.
        leaf = _norm(column.rsplit(".", 1)[-1]) if source.explode else key
        values = frame.get_column(column).cast(pl.String, strict=False)
        target: tuple[str, str] | None = None
        evidence = ""
        if key in ALIASES or leaf in ALIASES:
            alias = key if key in ALIASES else leaf
            target, evidence = ALIASES[alias], f"column name '{column}' is a known alias"
        elif source.explode and leaf in targets:
            target, evidence = targets[leaf], f"field name '{leaf}' is a CDM column"
        elif (patterned := _by_pattern(values, cdm, targets)) is not None:
            target, evidence = patterned
        elif (worded := _by_words(column, (labels or {}).get(column, ""), targets)) is not None:
            target, evidence = worded
        else:
            # The array's name prefixes every field ("assessments_cd19" looks like
            # "assessment_id"), so fields inside arrays need a closer match.
            cutoff = _NESTED_CUTOFF if source.explode else _NAME_CUTOFF
            close = difflib.get_close_matches(key, list(targets), n=1, cutoff=cutoff)
            # Abbreviated names ("prior_blina" for prior_blinatumomab) match as prefixes.
            prefixed = [t for t in targets if len(key) >= 5 and t.startswith(key)]
            if close:
                target, evidence = targets[close[0]], f"column name close to '{close[0]}'"
            elif prefixed:
                best = min(prefixed, key=len)
                target, evidence = targets[best], f"'{column}' abbreviates '{best}'"
        # A coded column goes to the vocabulary its values belong to: a look-alike name
        # ("Status" for ph_status) does not outweigh values that are another vocabulary's.
        vocab, share = vocabulary_match(values, cdm)
        if target is not None:
            spec = cdm.tables[target[0]].column(target[1])
            if (
                spec.vocabulary is not None
                and _value_share(values, cdm, spec.vocabulary) < _VALUE_EVIDENCE
                and vocab is not None
                and vocab != spec.vocabulary
                and vocab in vocab_targets
            ):
                target = vocab_targets[vocab]
                evidence = f"{share:.0%} of distinct values are terms of vocabulary '{vocab}'"
        elif (
            vocab is not None
            and vocab in vocab_targets
            and vocab not in _AMBIGUOUS_VOCABULARIES
            and share >= _VALUES_ALONE
        ):
            target = vocab_targets[vocab]
            evidence = f"{share:.0%} of distinct values are terms of vocabulary '{vocab}'"
        mapped = ""
        if target is None and _asks_about_progression(column, (labels or {}).get(column, "")):
            yes_no = cdm.vocabularies["yes_no_unknown"]
            spelled = {v: yes_no.code_for(v) for v in values.drop_nulls().unique().to_list()}
            if spelled and set(spelled.values()) <= {"Y", "N"}:
                status = {"Y": "PROGRESSED", "N": "PROGRESSION_FREE"}
                target = ("follow_up", "disease_status")
                evidence = "a yes/no question about progression after CAR T"
                mapped = ", ".join(f"{_q(v)}: {status[c]}" for v, c in sorted(spelled.items()) if c)
        if target is None:
            continue
        if column in identifiers and target[1] != "birth_year":
            continue
        spec = cdm.tables[target[0]].column(target[1])
        overrides: tuple[tuple[str, str], ...] = ()
        if spec.vocabulary is not None and not mapped:
            evidence += _not_terms(values, cdm, spec.vocabulary)
            overrides = _overrides(values, cdm, spec.vocabulary)
        formats = tuple(date_formats_for(column, values)) if spec.dtype == "date" else ()
        proposals.append(
            Proposal(
                target[0],
                target[1],
                column,
                evidence,
                formats,
                source.explode,
                map=mapped,
                overrides=overrides,
            )
        )
    return proposals


def _asks_about_progression(column: str, label: str) -> bool:
    return bool((_words(column) | _words(label)) & _PROGRESSION_WORDS)


def _contains_proposals(source: SourceFrame, cdm: CDM) -> list[Proposal]:
    """Arrays of plain values at the top of a record (``prior_therapies``): one yes/no column
    per value that names one (``blinatumomab`` -> ``prior_blinatumomab``)."""
    out: list[Proposal] = []
    for column, dtype in source.frame.schema.items():
        if not isinstance(dtype, pl.List) or isinstance(dtype.inner, pl.Struct | pl.List):
            continue
        elements = source.frame.get_column(column).explode().drop_nulls().unique().sort()
        for value in elements.to_list():
            hits = _yes_no_columns_named(str(value), cdm)
            if len(hits) == 1:
                table, target = hits[0]
                out.append(
                    Proposal(
                        table,
                        target,
                        column,
                        f"array '{column}' holds '{value}'",
                        contains=(str(value),),
                    )
                )
    return out


def _redcap_proposals(source: DraftSource, cdm: CDM) -> list[Proposal]:
    """A REDCap checkbox field whose choice labels are a vocabulary's terms -> ``checkbox:``
    rows; any other checkbox field -> one yes/no proposal per choice that names a column."""
    _, vocab_targets = _targets(cdm)
    out: list[Proposal] = []
    for name in sorted(source.checkboxes):
        labels = pl.Series(list(source.choices.get(name, {}).values()), dtype=pl.String)
        vocab, share = vocabulary_match(labels, cdm)
        # On a repeating instrument, a ticked choice is a row (agents of a salvage line); on a
        # record's own form, each choice is a yes/no item of the patient (prior therapies).
        repeating = source.forms.get(name) in source.repeating
        if repeating and vocab is not None and vocab in vocab_targets and vocab != "yes_no_unknown":
            table, column = vocab_targets[vocab]
            evidence = f"checkbox '{name}': {share:.0%} of its choices are terms of '{vocab}'"
            out.append(Proposal(table, column, "agent", evidence, checkbox=name))
            continue
        for col, code in checkbox_columns(source.base.frame.columns, name).items():
            label = source.choices.get(name, {}).get(code, code)
            hits = _yes_no_columns_named(label, cdm)
            if len(hits) == 1:
                table, target = hits[0]
                evidence = f"checkbox choice '{label}' (Checked/Unchecked)"
                out.append(Proposal(table, target, col, evidence))
            else:
                evidence = f"checkbox choice '{label}': a yes/no column?"
                out.append(Proposal("patients", f"# ({label})", col, evidence))
    return out


def _yes_no_columns_named(text: str, cdm: CDM) -> list[tuple[str, str]]:
    """Yes/no CDM columns whose name contains a word of ``text`` ("Blinatumomab" ->
    prior_blinatumomab, "Allogeneic HCT" -> prior_allohct)."""
    words = [w for w in _words(text) if len(w) >= 3]
    return [
        (t.name, c.name)
        for t in cdm.tables.values()
        for c in t.columns
        if c.role == "declared"
        and c.vocabulary == "yes_no_unknown"
        and any(w in c.name for w in words)
    ]


def _formats(choices: list[tuple[str, ...]], samples: list[pl.Series]) -> tuple[list[str], str]:
    """One list of date formats for the site, and a note when it had to guess.

    ``DMY`` and ``MDY`` are never proposed together: a value whose first part exceeds 12 says
    day-first, one whose second part does says month-first; with no such value, day-first is
    proposed with a note (most sites outside the US write it).
    """
    seen = {f for fmts in choices for f in fmts}
    text = pl.concat(samples).cast(pl.String) if samples else pl.Series([], dtype=pl.String)
    parts = text.str.extract_groups(r"^\s*(\d{1,2})[./-](\d{1,2})[./-]\d{2,4}")
    first = parts.struct.field("1").cast(pl.Int64, strict=False)
    second = parts.struct.field("2").cast(pl.Int64, strict=False)
    day_first = bool((first > 12).any())
    month_first = bool((second > 12).any())
    note = ""
    if "DMY" in seen and "MDY" in seen:
        if month_first and not day_first:
            seen.discard("DMY")
        else:
            seen.discard("MDY")
            if not day_first:
                note = "no date tells day-first from month-first: DMY proposed, check one"
    order = ("ISO", "DMY", "MDY", "MY", "Y", "EXCEL")
    formats = [f for f in order if f in seen and f != "Y"] or ["ISO"]
    return formats, note


def _date_columns(source: SourceFrame) -> list[tuple[tuple[str, ...], pl.Series]]:
    """(formats, values) of the columns of a record set whose values are mostly dates."""
    out = []
    for column in source.own_columns():
        if isinstance(source.frame.schema[column], pl.List):
            continue
        values = source.frame.get_column(column).cast(pl.String, strict=False).drop_nulls()
        if values.is_empty():
            continue
        formats = [f for f in date_formats_for(column, values) if f not in ("Y", "EXCEL")]
        if not formats:
            continue
        parsed = pl.DataFrame({"v": values}).select(
            parse_dates(pl.col("v"), formats).value.is_not_null().mean()
        )
        if (parsed.item() or 0) >= _DATE_SHARE:
            out.append((tuple(formats), values))
    return out


def _read_sources(paths: list[Path]) -> tuple[list[DraftSource], list[str]]:
    """The record sets to draft from, and notes about files that are not data."""
    dictionaries = [p for p in paths if is_redcap_dictionary(p)]
    notes = [
        f"# {p.name} is a REDCap data dictionary: used for the REDCap source, not as data."
        for p in dictionaries
    ]
    out: list[DraftSource] = []
    for path in paths:
        if path in dictionaries:
            continue
        bases = read_any(path)
        is_redcap = path.suffix.lower() == ".csv" and (
            dictionaries or "redcap_repeat_instrument" in bases[0].frame.columns
        )
        if is_redcap:
            out.append(_redcap_source(path, dictionaries[0] if dictionaries else None, len(out)))
            continue
        if is_fhir_document(path):
            out.extend(_fhir_sources(bases, len(out)))
            continue
        sheets = [b.frame for b in bases]
        for base in bases:
            options: dict[str, str] = {}
            if base.sheet:
                options["sheet"] = base.sheet
            records = _records_key(path)
            if records:
                options["records"] = records
            columns = [c for c in base.own_columns() if base.frame.schema[c] == pl.String]
            siblings = [s for s in sheets if s is not base.frame]
            out.append(
                DraftSource(
                    base,
                    f"source_{len(out) + 1}",
                    find_patient_id(base.frame, columns, siblings),
                    options,
                )
            )
    return out, notes


_FHIR_SUBJECTS = ("subject.reference", "patient.reference", "beneficiary.reference")


def _fhir_sources(bases: list[SourceFrame], numbered: int) -> list[DraftSource]:
    """One ``reader: fhir`` source per resourceType; a Patient is its own ``id``, any other
    resource names its patient by reference (``Patient/p-042``)."""
    out: list[DraftSource] = []
    for base in bases:
        resource = base.sheet or ""
        options = {"reader": "fhir", "resource": resource}
        name = f"source_{numbered + len(out) + 1}"
        if resource == "Patient":
            out.append(DraftSource(base, name, "id", options))
            continue
        subject = next((c for c in _FHIR_SUBJECTS if c in base.frame.columns), None)
        out.append(DraftSource(base, name, subject, options, patient_id_extract="^Patient/(.+)$"))
    return out


def _records_key(path: Path) -> str | None:
    """The key of a JSON document's record array (the ``records`` option)."""
    if path.suffix.lower() != ".json":
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    if isinstance(document, dict):
        arrays = [k for k, v in document.items() if isinstance(v, list)]
        return arrays[0] if len(arrays) == 1 else None
    return None


def _redcap_source(path: Path, dictionary: Path | None, index: int) -> DraftSource:
    """A REDCap export read as ingest reads it (choice codes decoded to labels)."""
    read = read_redcap(path, dictionary=dictionary, decode=dictionary is not None)
    base = SourceFrame(path.name, path, None, read.frame)
    options = {"reader": "redcap"}
    forms: dict[str, str] = {}
    choices: dict[str, dict[str, str]] = {}
    checkboxes: set[str] = set()
    labels: dict[str, str] = {}
    patient_id = next(c for c in read.frame.columns if c not in ("source_file", "source_row"))
    if dictionary is not None:
        options["dictionary"] = dictionary.name
        meta = read_redcap_dictionary(dictionary)
        forms = dict(zip(meta["field_name"].to_list(), meta["form_name"].to_list(), strict=True))
        labels = dict(zip(meta["field_name"].to_list(), meta["field_label"].to_list(), strict=True))
        choices, checkboxes = dictionary_choices(meta)
        patient_id = str(meta["field_name"][0])
    instruments = (
        read.frame.get_column("redcap_repeat_instrument")
        if ("redcap_repeat_instrument" in read.frame.columns)
        else pl.Series([], dtype=pl.String)
    )
    repeating = {str(v) for v in instruments.drop_nulls().unique().to_list() if str(v).strip()}
    return DraftSource(
        base,
        f"source_{index + 1}",
        patient_id,
        options,
        forms,
        repeating,
        choices,
        checkboxes,
        {k: str(v) for k, v in labels.items() if v is not None},
    )


def _redcap_where(source: DraftSource, proposal: Proposal) -> str:
    """The rows of the instrument a REDCap field is on."""
    field_name = proposal.checkbox or proposal.source_column.split("___")[0]
    form = source.forms.get(field_name)
    if form is None or not source.repeating:
        return ""
    if form in source.repeating:
        return f'[{{column: redcap_repeat_instrument, equals: "{form}"}}]'
    return "[{column: redcap_repeat_instrument, is_null: true}]"


def _event_type_column(frame: pl.DataFrame, columns: list[str]) -> str | None:
    """A column saying what kind of event each row is (few values, never empty)."""
    for column in columns:
        values = frame.get_column(column)
        if values.dtype != pl.String or values.null_count():
            continue
        if _words(column.rsplit(".", 1)[-1]) & _EVENT_TYPE_WORDS and 2 <= values.n_unique() <= 15:
            return column
    return None


def _event_where(frame: pl.DataFrame, kind: str, fields: list[str]) -> str:
    """The event types in whose rows some of ``fields`` are filled (fields filled in every row,
    such as a date, say nothing)."""
    telling = [f for f in fields if f in frame.columns and frame.get_column(f).null_count()]
    if not telling:
        return ""
    filled = pl.any_horizontal([pl.col(f).is_not_null() for f in telling])
    kinds = sorted(frame.filter(filled).get_column(kind).unique().drop_nulls().to_list())
    if not kinds or len(kinds) == frame.get_column(kind).n_unique():
        return ""
    if len(kinds) == 1:
        return f"[{{column: {_yaml_key(kind)}, equals: {_q(kinds[0])}}}]"
    return f"[{{column: {_yaml_key(kind)}, in: [{', '.join(_q(k) for k in kinds)}]}}]"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _yaml_key(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z_][\w.]*", text) else _q(text)


def draft_mapping(paths: list[Path], cdm: CDM, *, site_id: str | None = None) -> str:
    """YAML text of a draft mapping for the files in ``paths``."""
    sources, notes = _read_sources(paths)
    site = site_id or _site_id_from(paths)
    rules: dict[
        str, list[tuple[DraftSource, tuple[str, ...], str, str | None, list[Proposal]]]
    ] = {}
    date_choices: list[tuple[str, ...]] = []
    date_samples: list[pl.Series] = []
    decimal_marks: list[tuple[str, str]] = []
    for source in sources:
        base = source.base
        proposals = propose(base, cdm, source.patient_id, source.labels if source.forms else None)
        children = array_sources(base)
        # Arrays of plain values at the top of a record are looked into (contains), not
        # exploded into a table of their own.
        top_scalar = {
            c
            for c, t in base.frame.schema.items()
            if isinstance(t, pl.List) and not isinstance(t.inner, pl.Struct | pl.List)
        }
        for child in children:
            if child.explode and child.explode[0] in top_scalar:
                continue
            proposals += propose(child, cdm)
        proposals += _contains_proposals(base, cdm)
        proposals += _redcap_proposals(source, cdm)
        if source.forms:
            # the rows of a REDCap field are those of its instrument
            proposals = [replace(p, where=_redcap_where(source, p)) for p in proposals]
        notes += [
            f"# REVIEW: array '{c}' of {base.path.name} is empty in every record; map it by"
            " hand if later submissions fill it (docs/mapping.md, 'Empty arrays')."
            for c, t in base.frame.schema.items()
            if isinstance(t, pl.List) and not base.frame.get_column(c).list.len().sum()
        ]
        for record_set in (base, *children):
            for parsing, values in _date_columns(record_set):
                date_choices.append(parsing)
                date_samples.append(values)
            decimal_marks += _decimal_marks(record_set)
        for table, explode, where, checkbox in _groups(proposals):
            chosen = [
                p
                for p in proposals
                if p.table == table
                and p.checkbox in (checkbox, None)
                and p.where == where
                and (p.explode == explode or (p.explode and explode[: len(p.explode)] == p.explode))
            ]
            if where == "" and not source.forms:
                where = _rows_of(source, children, explode, chosen)
            rows = _rule_rows(source, children, explode, where)
            chosen += _event_day(cdm, table, explode, children, chosen)
            chosen += _event_date(table, chosen, rows, where)
            chosen += _status_date(chosen)
            chosen += _required(cdm, table, chosen, rows, where)
            rules.setdefault(table, []).append((source, explode, where, checkbox, chosen))
        placed = [p for rs in rules.values() for r in rs if r[0] is source for p in r[4]]
        notes += _unplaced(source, placed, children)
    formats, format_note = _formats(date_choices, date_samples)
    lines = [
        "# Draft mapping written by `cartreg mapping init`. Every line marked REVIEW is a guess:",
        "# check it against docs/mapping.md and the data, then run `cartreg mapping check`.",
        'mapping_version: "0.1"',
        f"site_id: {site}  # REVIEW: registry code of the site",
        f'cdm_version: "{cdm.version}"',
        "defaults:",
        f"  date_formats: [{', '.join(formats)}]  # REVIEW: formats seen in the date columns"
        + (f"; {format_note}" if format_note else ""),
        *_decimal_line(decimal_marks),
        *_override_lines(cdm, [p for rs in rules.values() for r in rs for p in r[4]]),
        "sources:",
    ]
    for source in sources:
        lines.append(f"  {source.name}:")
        lines.append(f"    file: {_q(source.base.path.name)}")
        for option, value in source.options.items():
            lines.append(f"    {option}: {_q(value)}")
        if source.patient_id and source.patient_id_extract:
            lines.append(
                f"    patient_id: {{from: {_q(source.patient_id)}, extract: "
                f"{_q(source.patient_id_extract)}}}  # REVIEW: reference to the patient"
            )
        elif source.patient_id:
            lines.append(
                f"    patient_id: {_q(source.patient_id)}  # REVIEW: local study id column"
            )
        else:
            lines.append('    patient_id: ""  # REVIEW: no id column recognised; name it here')
    with_id = next((s for s in sources if s.patient_id), None)
    if rules:
        lines.append("tables:")
    elif with_id is not None:
        # A mapping maps at least one table: the patients of the id column are what is known.
        lines += [
            "tables:  # REVIEW: no other column was recognised: map them by hand (docs/mapping.md)",
            "  patients:",
            f"    - source: {with_id.name}",
            "      key: [patient_key]",
            "      columns: {}",
        ]
    else:
        lines.append(
            "tables: {}  # REVIEW: no column was recognised: map them by hand (docs/mapping.md)"
        )
    for table in cdm.tables:
        if table not in rules:
            continue
        lines.append(f"  {table}:")
        # A patient found by two rules (or by two elements of an array) of a table with one
        # row per patient is one row: the rules combine by patient.
        combine = is_per_patient(cdm.tables[table]) and (
            len(rules[table]) > 1 or any(r[1] or r[3] for r in rules[table])
        )
        for source, explode, where, checkbox, proposals in rules[table]:
            lines.append(f"    - source: {source.name}")
            if combine:
                lines.append(
                    "      key: [patient_key]  # REVIEW: the rows of a patient are one row"
                )
            if explode:
                path = explode[0] if len(explode) == 1 else f"[{', '.join(explode)}]"
                lines.append(f"      explode: {path}  # REVIEW: one row per array element")
            if checkbox:
                lines.append(
                    f"      checkbox: {{field: {checkbox}, into: agent}}"
                    "  # REVIEW: one row per ticked choice"
                )
            if where:
                lines.append(f"      where: {where}  # REVIEW: the rows this table comes from")
            lines.append("      columns:")
            seen: set[str] = set()
            for p in proposals:
                lines.append(_column_line(p, seen, formats))
    if not any(p.column == "data_cut_date" for r in rules.get("follow_up", []) for p in r[4]):
        lines.append(
            "# REVIEW: no data cut-off column was found: if the export has none, give it in the"
            ' follow_up rule as data_cut_date: {value: "YYYY-MM-DD"} (docs/mapping.md,'
            " 'Exports without a data cut')."
        )
    lines += notes
    return "\n".join(lines) + "\n"


def _decimal_marks(source: SourceFrame) -> list[tuple[str, str]]:
    """(decimal mark, column) of the text columns of a record set whose numbers show one."""
    out = []
    for column in source.own_columns():
        values = source.frame.get_column(column)
        if values.dtype == pl.String:
            mark = decimal_mark(values)
            if mark is not None:
                out.append((mark, column))
    return out


def _decimal_line(marks: list[tuple[str, str]]) -> list[str]:
    """``decimal: ","`` for the defaults when the site's numbers show decimal commas.

    Points elsewhere do not outvote them: a workbook's number cells read as ``45.3`` whatever
    the site types, and ``decimal: ","`` still reads a lone point as a decimal point.
    """
    commas = [column for mark, column in marks if mark == ","]
    if not commas:
        return []
    points = [column for mark, column in marks if mark == "."]
    also = f"; points in {_q(points[0])}: check them" if points else ""
    return [f'  decimal: ","  # REVIEW: decimal commas, e.g. in {_q(commas[0])}{also}']


def _override_lines(cdm: CDM, proposals: list[Proposal]) -> list[str]:
    """``vocabulary_overrides`` for the local spellings of the drafted columns' values that
    translate to a code ("inconnu" -> UNKNOWN, "H" (homme) -> M), each to review."""
    found: dict[str, dict[str, str]] = {}
    for p in proposals:
        if not p.overrides:
            continue
        vocabulary = cdm.tables[p.table].column(p.column).vocabulary
        for value, code in p.overrides if vocabulary else ():
            found.setdefault(str(vocabulary), {}).setdefault(value, code)
    if not found:
        return []
    lines = ["vocabulary_overrides:  # REVIEW: local spellings read as these codes; check each"]
    if any(code == "F" and value.upper() == "M" for value, code in found.get("sex", {}).items()):
        lines.append("  # REVIEW: sex has H and M and no F: read as hombre/mujer, so M is female")
    for vocabulary, pairs in sorted(found.items()):
        inner = ", ".join(f"{_q(v)}: {c}" for v, c in sorted(pairs.items()))
        lines.append(f"  {vocabulary}: {{{inner}}}")
    return lines


def _column_line(p: Proposal, seen: set[str], site_formats: list[str]) -> str:
    if p.column.startswith("# ("):
        name = p.column[3:-1]
        if p.source_column.startswith("{"):  # a required column without a candidate
            return f"        # {name}: {p.source_column}  # REVIEW: {p.evidence}"
        return f"        # {p.source_column}: ({name})  # REVIEW: {p.evidence}"
    prefix = "# " if p.column in seen else ""
    seen.add(p.column)
    if p.value is not None:
        return f"        {prefix}{p.column}: {{value: {_q(p.value)}}}  # REVIEW: {p.evidence}"
    extra = ", part: year" if p.column == "birth_year" else ""
    if p.contains:
        extra += f", contains: {_q(p.contains[0])}"
    if p.map:
        extra += f", map: {{{p.map}}}"
    if p.otherwise:
        extra += f", otherwise: {p.otherwise}"
    # never DMY beside the site's MDY (or the reverse): the site's choice decides
    chosen_order = {"DMY", "MDY"} & set(site_formats)
    own = [f for f in p.formats if f != "Y" and not (f in ("DMY", "MDY") and chosen_order - {f})]
    fmt = f", formats: [{', '.join(own)}]" if own and not set(own) <= set(site_formats) else ""
    return (
        f"        {prefix}{p.column}: {{from: {_q(p.source_column)}{extra}{fmt}}}"
        f"  # REVIEW: {p.evidence}"
    )


def _unplaced(
    source: DraftSource, proposals: list[Proposal], children: list[SourceFrame]
) -> list[str]:
    """A note listing the columns no proposal reads, so none is left out unseen."""
    used = {p.source_column for p in proposals} | {source.patient_id}
    used |= {p.checkbox for p in proposals if p.checkbox}
    identifiers = set(identifier_columns(source.base.frame))
    left = []
    for record_set in (source.base, *children):
        for column in record_set.own_columns():
            field_name = column.split("___")[0]
            if (
                column in used
                or field_name in used
                or column in identifiers
                or column in REDCAP_COLUMNS
                or column.endswith("_complete")
                or isinstance(record_set.frame.schema[column], pl.List)
            ):
                continue
            label = source.labels.get(field_name)
            text = f"{column} ({label})" if label else column
            if text not in left:
                left.append(text)
    if not left:
        return []
    return [
        f"# REVIEW: not proposed for any CDM column, map them if they belong"
        f" ({source.base.label}): " + "; ".join(left)
    ]


def _status_date(chosen: list[Proposal]) -> list[Proposal]:
    """A disease status read from a follow-up form is as of that form's date of contact."""
    columns = {p.column: p for p in chosen}
    if "disease_status" not in columns or "disease_status_date" in columns:
        return []
    contact = columns.get("last_contact_date")
    if contact is None:
        return []
    evidence = "the status is as of the last contact (the form's date)"
    return [replace(contact, column="disease_status_date", evidence=evidence)]


def _rule_rows(
    source: DraftSource, children: list[SourceFrame], explode: tuple[str, ...], where: str
) -> pl.DataFrame:
    """The rows a drafted rule reads: those its ``where`` selects (an instrument's rows for a
    REDCap source, an event type's rows of a long sheet)."""
    frame = next((c.frame for c in children if c.explode == explode), source.base.frame)
    for cond in yaml.safe_load(where) if where else []:
        column = str(cond.get("column"))
        if column not in frame.columns:
            continue
        values = frame.get_column(column).cast(pl.String)
        if "equals" in cond:
            frame = frame.filter(values == str(cond["equals"]))
        elif "in" in cond:
            frame = frame.filter(values.is_in([str(v) for v in cond["in"]]))
        elif cond.get("is_null"):
            frame = frame.filter(values.is_null())
    return frame


# Event kinds (a long sheet's ``Type``) whose rows fix a required code: death rows are DEAD,
# last-news rows ALIVE (a later death has a row of its own).
_KIND_CODES: dict[str, tuple[str, str]] = {
    **{
        word: ("vital_status", "DEAD")
        for word in ("deces", "death", "died", "dead", "tod", "todesfall", "exitus", "decesso")
    },
    **{
        word: ("vital_status", "ALIVE")
        for word in ("nouvelles", "contact", "kontakt", "contatto", "contacto", "suivi")
    },
}


def _fallback(cdm: CDM, vocabulary: str) -> str:
    """UNKNOWN or an "other" term: a constant left unreviewed then shows in the findings."""
    codes = list(cdm.vocabularies[vocabulary].codes)
    for wanted in ("UNKNOWN", "other"):
        if wanted in codes:
            return wanted
    return next((c for c in codes if "other" in c.lower()), codes[0])


def _kind_code(cdm: CDM, vocabulary: str, kind: str) -> str | None:
    """The code of ``vocabulary`` an event kind names ("Décès" -> DEAD), if any."""
    said = [c for w, (v, c) in _KIND_CODES.items() if v == vocabulary and w in _words(kind)]
    return cdm.vocabularies[vocabulary].code_for(kind) or (said[0] if said else None)


def _from_kinds(cdm: CDM, table: str, column: str, vocabulary: str, where: str) -> Proposal:
    """A required coded column no source column fills: the code the rows' event kinds name
    (a constant, or a ``map`` of the kind column), else a constant to set by hand."""
    kind_column, kinds = _where_values(where)
    codes = {k: _kind_code(cdm, vocabulary, k) for k in kinds}
    named = {k: c for k, c in codes.items() if c is not None}
    terms = ", ".join(cdm.vocabularies[vocabulary].codes[:6])
    if named and len(set(codes.values())) == 1:
        code = next(iter(named.values()))
        evidence = f"required and no column found; the rows are '{', '.join(kinds)}' rows"
        return Proposal(table, column, "", evidence, value=code)
    if named and kind_column:
        pairs = ", ".join(f"{_q(k)}: {c}" for k, c in sorted(named.items()))
        evidence = f"required and no column found; the code each event kind names (one of {terms})"
        other = _fallback(cdm, vocabulary)
        return Proposal(table, column, kind_column, evidence, map=pairs, otherwise=other)
    evidence = f"required and no column found; a constant so that the draft runs: set it ({terms})"
    return Proposal(table, column, "", evidence, value=_fallback(cdm, vocabulary))


def _required(
    cdm: CDM, table: str, chosen: list[Proposal], rows: pl.DataFrame, where: str
) -> list[Proposal]:
    """The table's required columns that no proposal fills (ingest quarantines a row without
    them): the column of the rule's rows whose values are mostly the vocabulary's terms, else
    a constant (so that every draft passes ``mapping check``), else a note."""
    have = {p.column for p in chosen}
    out: list[Proposal] = []
    for col in cdm.tables[table].columns:
        if not col.required or col.role != "declared" or col.name in DERIVED_COLUMNS:
            continue
        if col.name in have:
            continue
        candidates: list[tuple[float, str]] = []
        if col.vocabulary is not None:
            for name in rows.columns:
                values = rows.get_column(name)
                if values.dtype != pl.String or values.null_count() == len(values):
                    continue
                share = _value_share(values, cdm, col.vocabulary)
                if share >= _VALUE_EVIDENCE:
                    candidates.append((share, name))
        explode = chosen[0].explode if chosen else ()
        if candidates:
            share, name = max(candidates)
            evidence = f"required; {share:.0%} of its values are terms of '{col.vocabulary}'"
            out.append(Proposal(table, col.name, name, evidence, explode=explode))
            continue
        if col.vocabulary is not None:
            proposal = _from_kinds(cdm, table, col.name, col.vocabulary, where)
            out.append(replace(proposal, explode=explode))
            continue
        hint = "{from: <column>}"
        out.append(
            Proposal(table, f"# ({col.name})", hint, f"required and no column found: {hint}")
        )
    return out


def _where_values(where: str) -> tuple[str | None, list[str]]:
    """The column and values a drafted ``where`` selects rows by (a long sheet's event kinds)."""
    column: str | None = None
    values: list[str] = []
    for cond in yaml.safe_load(where) if where else []:
        picked = [cond["equals"]] if "equals" in cond else list(cond.get("in", []))
        if picked:
            column = str(cond.get("column"))
            values += [str(v) for v in picked]
    return column, values


_DAY_FIELDS = ("day", "days", "day_offset", "days_since_infusion")


def _event_day(
    cdm: CDM,
    table: str,
    explode: tuple[str, ...],
    children: list[SourceFrame],
    chosen: list[Proposal],
) -> list[Proposal]:
    """The day offset of a table's event from the ``day`` field of the array it explodes
    (``timeline.day`` -> ``assessment_day`` in the assessments rule)."""
    if not explode or table not in _EVENT_DAYS:
        return []
    target = _EVENT_DAYS[table]
    if any(p.column == target for p in chosen):
        return []
    frame = next((c.frame for c in children if c.explode == explode), None)
    if frame is None:
        return []
    for array in reversed(explode):
        for name in _DAY_FIELDS:
            if f"{array}.{name}" in frame.columns:
                evidence = f"the day offset of each '{array}' element"
                return [Proposal(table, target, f"{array}.{name}", evidence, explode=explode)]
    return []


# The date of the event each table records (a follow-up row's is its contact).
_EVENT_DATES = {
    "car_t_infusions": "infusion_date",
    "disease_assessments": "assessment_date",
    "progression_events": "progression_date",
    "salvage_treatments": "start_date",
    "transplants": "hct_date",
    "follow_up": "last_contact_date",
}
_DATE_WORDS = {"date", "datum", "data", "fecha", "dt"}
_EVENT_WORDS = {"event", "visit", "visite", "ereignis", "evento", "evenement"}


def _event_date(
    table: str, chosen: list[Proposal], rows: pl.DataFrame, where: str
) -> list[Proposal]:
    """The date of a long sheet's event rows (a ``Date`` column every row fills) as the date of
    the event the rule's table records (``Date`` of the ``Rechute`` rows -> progression_date)."""
    target = _EVENT_DATES.get(table)
    if not where or target is None or any(p.column == target for p in chosen) or rows.is_empty():
        return []
    for column in rows.columns:
        words = _words(column.rsplit(".", 1)[-1]) - _EVENT_WORDS
        if not words or not words <= _DATE_WORDS:
            continue
        values = rows.get_column(column).cast(pl.String, strict=False)
        if values.null_count() > 0.1 * len(values):
            continue
        kinds = ", ".join(_where_values(where)[1])
        evidence = f"the date of each '{kinds}' row"
        formats = tuple(date_formats_for(column, values.drop_nulls()))
        explode = chosen[0].explode if chosen else ()
        return [Proposal(table, target, column, evidence, formats, explode)]
    return []


# The day offset of the event each table records.
_EVENT_DAYS = {
    "car_t_infusions": "infusion_day",
    "disease_assessments": "assessment_day",
    "progression_events": "progression_day",
    "salvage_treatments": "start_day",
    "transplants": "hct_day",
}


def _rows_of(
    source: DraftSource,
    children: list[SourceFrame],
    explode: tuple[str, ...],
    chosen: list[Proposal],
) -> str:
    """The ``where`` selecting the rows of a long sheet or event array that ``chosen`` fill."""
    frame = next((c.frame for c in children if c.explode == explode), source.base.frame)
    own = SourceFrame(source.base.label, source.base.path, None, frame, explode)
    kind = _event_type_column(frame, own.own_columns())
    if kind is None:
        return ""
    first: dict[str, str] = {}
    for p in chosen:
        first.setdefault(p.column, p.source_column)  # later ones are commented alternatives
    return _event_where(frame, kind, list(first.values()))


def _groups(
    proposals: list[Proposal],
) -> list[tuple[str, tuple[str, ...], str, str | None]]:
    """(table, explode, where, checkbox) of the rules drafted per table of a source.

    A table fed by ``salvage`` and ``salvage.agents`` fields gets one rule exploding both (the
    fields of the outer array stay readable after the inner explode). When fields of several
    arrays (or of the record and an array) point at one table, the rule with the most proposals
    wins: the others are usually vocabulary look-alikes (a yes/no field in every array). A
    REDCap checkbox gets a rule of its own.
    """
    checkboxes = sorted({(p.table, p.checkbox, p.where) for p in proposals if p.checkbox})
    plain = [p for p in proposals if not p.checkbox and not p.column.startswith("#")]
    notes = [p for p in proposals if p.column.startswith("#")]
    pairs = sorted({(p.table, p.explode, p.where) for p in plain})
    deepest = [
        (table, explode, where)
        for table, explode, where in pairs
        if not any(
            t == table and explode and len(e) > len(explode) and e[: len(explode)] == explode
            for t, e, _ in pairs
        )
    ]
    best: dict[str, tuple[int, tuple[str, ...], str]] = {}
    for table, explode, where in deepest:
        count = sum(
            p.table == table
            and p.where == where
            and (not p.explode or explode[: len(p.explode)] == p.explode)
            for p in plain
            if p.explode or not explode
        )
        if table not in best or count > best[table][0]:
            best[table] = (count, explode, where)
    out: list[tuple[str, tuple[str, ...], str, str | None]] = [
        (table, explode, where, None)
        for table, (_, explode, where) in best.items()
        if not any(t == table and w == where for t, _, w in checkboxes)
    ]
    for note in notes:
        if not any(t == note.table and w == note.where for t, _, w, _ in out):
            out.append((note.table, (), note.where, None))
    out += [(table, (), where, name) for table, name, where in checkboxes]
    return out
