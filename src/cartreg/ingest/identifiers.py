"""Columns that hold direct identifiers, found by their name in the consortium's languages and by
their values over every row.

A source column is identifier-like when

* its **name** says so, in English, German, French, Spanish, Italian, Dutch or Portuguese
  (``Nachname``, ``NomPatient``, ``date_de_naissance``, ``KV_Nummer``, ``codice_fiscale``,
  ``BSN``, ``CPF``, ...): names are split into words (``pat_Nachname``, camelCase, accents
  dropped) and compound words are searched for their stems (``Telefonnummer``);
* **any** of its values holds an e-mail address, a phone number written with its country code
  or separators, a national identity, insurance or account number of a known format, a record
  number written with its label (``MRN 12345678`` in free text), an IP address or a URL;
* **most** of its filled cells (and at least three) look like person names (a common given
  name in a name-shaped value) or like plain national phone numbers, or are Dutch BSNs or
  Brazilian CPFs that pass their check digits; or
* its name mentions birth (``Geboren``, ``birth``, ``nascita``) and one of its values is a full
  calendar date (a birth year alone is not an identifier).

Values are examined over the whole column, one regex pass per distinct value (a CSV column read
as Categorical has its distinct values at hand), not on a sample; the result is
:class:`Evidence` that parts of a split export merge. Such columns are never copied
into outputs, quarantine files or messages, and a mapping that reads one is a configuration
error unless it lists the column under ``allow_identifiers``. What this cannot see is written
in docs/security.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from cartreg.ingest.readers.base import category_values
from cartreg.redact import (
    ACCOUNT,
    ADDRESS,
    ANY_SUBSTRING,
    BIOMETRIC,
    BIRTH_DATE,
    EMAIL,
    FULL_DATE,
    GIVEN_NAME_WORD,
    LICENCE,
    NAME_SHAPE,
    NATIONAL_ID,
    PERSON_NAME,
    PHONE,
    PHONE_NATIONAL,
    PHONE_PLAIN,
    POSTCODE,
    RECORD_NUMBER,
    SUBSTRING_PATTERNS,
    WEB,
    national_phone_expr,
    strip_accents,
)

# --- By name ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    """Words naming one kind of identifier: whole ``tokens``, ``stems`` searched inside a word
    (compounds such as Telefonnummer), and ``phrases`` of consecutive words."""

    tokens: frozenset[str] = frozenset()
    stems: tuple[str, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _lexicon(tokens: str = "", stems: str = "", phrases: str = "") -> Lexicon:
    return Lexicon(
        frozenset(tokens.split()),
        tuple(stems.split()),
        tuple(tuple(p.split()) for p in phrases.split(",") if p.strip()),
    )


# Stems are long and distinctive (a stem inside an unrelated word would hide a real column);
# short words are whole tokens only. "cns" (central nervous system), "cf", "cell", "lot" and
# "batch" are deliberately absent: they name clinical columns. So are "patient number",
# "Pat.-Nr." and "patient id": registries use them for their own study numbers.
LEXICON: dict[str, Lexicon] = {
    PERSON_NAME: _lexicon(
        "surname surnames lastname firstname forename forenames givenname familyname "
        "maidenname fullname nachname nachnamen vorname vornamen familienname geburtsname "
        "madchenname maedchenname rufname prenom prenoms apellido apellidos cognome cognomi "
        "achternaam voornaam voornamen roepnaam meisjesnaam sobrenome apelido initials "
        "initialen iniciales iniziali initiales patientname patname ptname patientenname "
        "nompatient nomepaziente nombrepaciente fname lname ehename nominativo voorletters "
        "tussenvoegsel geslachtsnaam familienaam patientnaam patientennaam",
        "nachname vorname familienname geburtsname patientenname achternaam voornaam surname "
        "lastname firstname forename givenname prenom apellido cognome sobrenome familienaam "
        "geslachtsnaam patientnaam",
        "last name, first name, given name, family name, middle name, maiden name, full name, "
        "first nm, last nm, middle nm, nombre de pila, "
        "nom de famille, nom de naissance, nom d usage, nom de jeune fille, primer apellido, "
        "segundo apellido, nome completo, primeiro nome, ultimo nome",
    ),
    PHONE: _lexicon(
        "phone telephone tel tele tlf telf tfno tlfno fax telefax mobile mobil mobiel handy "
        "cellulare celular movil gsm telefon telefono telefone telefoon rufnummer handynr "
        "telnr mobilnr faxnr telemovel portable",
        "telefon telephon telefoon phone rufnummer handynummer mobilnummer faxnummer cellphone "
        "telemovel",
        "cell phone, cell number, numero de portable, numero portable",
    ),
    EMAIL: _lexicon(
        "email emails mail courriel correo emailadresse emailadres mailadresse mailadres",
        "email courriel mailadres",
        "e mail, correo electronico, posta elettronica, adresse mail",
    ),
    ADDRESS: _lexicon(
        "address addr adress adresse adres addresses street strasse anschrift wohnort "
        "domicile domicilio direccion indirizzo endereco morada rua calle straat huisnummer "
        "hausnummer hausnr city town ort stadt ville commune ciudad localidad municipio citta "
        "comune woonplaats gemeente cidade concelho county residence residenza residencia "
        "wohnsitz latitude longitude gps geolocation geoloc birthplace geburtsort "
        "geboorteplaats rue logradouro bairro",
        "adress strasse anschrift wohnort direccion indirizzo endereco woonplaats wohnsitz "
        "geburtsort",
        "lieu de naissance, lugar de nacimiento, luogo di nascita, place of birth, "
        "local de nascimento, plaats van geboorte",
    ),
    POSTCODE: _lexicon(
        "zip zipcode postcode postalcode postal plz postleitzahl cap cep codpostal postnummer",
        "postleitzahl postcode zipcode codigopostal codepostal",
        "code postal, codigo postal, codice postale, zip code, post code",
    ),
    RECORD_NUMBER: _lexicon(
        "mrn mrno ipp nda nhc fallnummer fallnr aufnahmenummer dossiernummer "
        "ziekenhuisnummer prontuario nosologico krankenblattnummer",
        "medicalrecord fallnummer aufnahmenummer ziekenhuisnummer prontuario nosologico "
        "historiaclinica krankenblatt",
        "medical record, record number, hospital number, hospital no, fall nr, fall nummer, "
        "historia clinica, numero historia, numero de historia, cartella clinica, "
        "numero dossier, n dossier, no dossier, dossier medical, numero de processo, "
        "numero processo, num processo, n processo, nr processo, processo clinico, "
        "num historia, n historia, nr historia, fall id",
    ),
    NATIONAL_ID: _lexicon(
        "ssn sin nino nhs chi medicare medicaid kvnr kvnummer svnr svnummer "
        "versichertennummer versicherungsnummer personalausweis ausweis passport reisepass "
        "passeport pasaporte passaporto paspoort passaporte nir insee secu vitale nss nuss "
        "dni nie nif tsi codicefiscale codfisc bsn burgerservicenummer sofinummer cpf "
        "cartaocidadao steuerid niss nass egk nhsno nhsnumber cartaosus",
        "versichertennummer versicherungsnummer krankenversicherungsnummer "
        "sozialversicherung versichertennr codicefiscale burgerservicenummer "
        "verzekeringsnummer polisnummer",
        "social security, security number, kv nr, kv nummer, kv no, sv nr, sv nummer, "
        "versicherten nr, vers nr, codice fiscale, tessera sanitaria, tarjeta sanitaria, "
        "securite sociale, seguridad social, sicurezza sociale, seguranca social, "
        "numero utente, num utente, n utente, nr utente, numero sns, n sns, num sns, "
        "cartao sus, cartao sns, cod fisc, carte vitale, health plan, health card, "
        "health insurance, "
        "insurance number, insurance no, insurance id, policy number, policy no, member id, "
        "beneficiary number, national id, id card, identity card, identity number, "
        "numero de securite, cartao de cidadao, carta d identita, documento de identidad",
    ),
    ACCOUNT: _lexicon(
        "iban bic kontonummer rekeningnummer",
        "kontonummer rekeningnummer",
        "account number, bank account, numero de cuenta, numero de compte, "
        "numero di conto, numero da conta",
    ),
    WEB: _lexicon(
        "url urls website homepage webseite ip ipaddress",
        "ipaddress website homepage",
        "ip address, ip adresse, web site",
    ),
    BIOMETRIC: _lexicon(
        "photo photos foto fotos picture portrait fingerprint fingerprints biometric "
        "biometrics retina iris voiceprint",
        "fingerprint fingerabdruck biometr",
        "full face",
    ),
    LICENCE: _lexicon(
        "vin kennzeichen fuhrerschein fuehrerschein serialnumber seriennummer",
        "fuhrerschein fuehrerschein kennzeichen seriennummer serialnumber",
        "license plate, licence plate, driver license, drivers license, driving licence, "
        "permis de conduire, serial number, numero de serie, vehicle id",
    ),
}

# "name", "nom", ... are a person's name when nothing but people and fillers surround them:
# "NomPatient", "name of the patient", "Name" yes; "ITEM_NAME", "drug name", "nom_produit" no.
_GENERIC_NAMES = _words("name names namen nom noms nombre nombres nome nomi naam")
_PERSON_WORDS = _words(
    "patient patients pat pt pte patienten paziente pazienti paciente pacientes patiente "
    "doente utente proband person persoon persona personne first last given family middle "
    "maiden full complete completo completa complet legal preferred birth naissance jeune "
    "fille usage mother mutter mere madre pai mae father vater pere padre vader moeder "
    "spouse partner contact kontakt contacto contatto contato relative angehoriger vor nach ruf "
    "marital epouse epoux usuel proprio social "
    "eerste achter voor primeiro ultimo segundo primer"
)
_FILLERS = _words("de du des d del della di da do dos das van von der den het the of y e et und en")

_BIRTH_TOKENS = _words(
    "birth born birthdate birthday bdate dob geb geboren geburt geburtstag geburtsdatum gebdat "
    "gebdatum naissance naiss ne nee ddn nacimiento nac fnac fecnac nascita nasc nascimento "
    "geboorte geboortedatum"
)
_BIRTH_STEMS = ("birth", "geburt", "naissance", "nacimiento", "nascita", "nascimento", "geboorte")
_DATE_WORDS = _words("date datum fecha data dt dat day tag jour dia giorno dag")
_DATE_STEMS = ("datum", "date", "fecha", "data", "monat", "maand")
_MONTH_WORDS = _words("month monat mois mes mese maand mm")
_YEAR_WORDS = _words("year yr yy yyyy jahr annee an ano anno jaar yob")
# Birth-named columns that are a date by their name alone.
_BIRTH_DATES = _words(
    "dob bdate birthdate birthday geburtsdatum geburtstag gebdat gebdatum ddn fnac fecnac "
    "geboortedatum"
)
# Place of birth is a place; birth weight or order is no identifier.
_BIRTH_PLACE = _words(
    "place ort lieu lugar luogo plaats local city stadt ville ciudad citta cidade"
)
_BIRTH_OTHER = _words("weight gewicht poids peso order rang country land pays pais paese")


def name_tokens(column: str) -> list[str]:
    """The words of a column name: ``pat_Nachname`` -> pat, nachname; ``NomPatient`` ->
    nom, patient; ``prénom`` -> prenom; ``MRNNumber`` -> mrn, number."""
    text = strip_accents(column)
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", text)
    text = re.sub(r"([A-Za-z])(\d)", r"\1 \2", text)
    text = re.sub(r"(\d)([A-Za-z])", r"\1 \2", text)
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def _has_phrase(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))


def _matches(lexicon: Lexicon, tokens: list[str]) -> bool:
    if any(t in lexicon.tokens for t in tokens):
        return True
    if any(stem in t for t in tokens for stem in lexicon.stems):
        return True
    return any(_has_phrase(tokens, p) for p in lexicon.phrases)


def mentions_birth(column: str) -> bool:
    """Whether a column name speaks of birth (its full dates are then birth dates)."""
    tokens = name_tokens(column)
    return any(t in _BIRTH_TOKENS or any(s in t for s in _BIRTH_STEMS) for t in tokens)


def _birth_kind(tokens: list[str]) -> str | None:
    if not any(t in _BIRTH_TOKENS or any(s in t for s in _BIRTH_STEMS) for t in tokens):
        return None
    if any(t in _BIRTH_DATES for t in tokens):
        return BIRTH_DATE
    if any(t in _BIRTH_PLACE for t in tokens):
        return (
            ADDRESS if not {"weight", "gewicht", "poids", "peso", "order"} & set(tokens) else None
        )
    rest = [t for t in tokens if t not in _BIRTH_TOKENS and not any(s in t for s in _BIRTH_STEMS)]
    dated = any(t in _DATE_WORDS or t in _MONTH_WORDS for t in tokens) or any(
        s in t for t in tokens for s in _DATE_STEMS
    )
    if dated and not any(t in _YEAR_WORDS for t in rest):
        return BIRTH_DATE
    return None  # "birth_year", "Geburt": decided by their values


def name_kind(column: str) -> str | None:
    """The kind of identifier a column's name announces, or None."""
    tokens = name_tokens(column)
    if not tokens:
        return None
    birth = _birth_kind(tokens)
    if birth is not None:
        return birth
    for kind, lexicon in LEXICON.items():
        if _matches(lexicon, tokens):
            return kind
    generic = [t for t in tokens if t in _GENERIC_NAMES]
    others = [t for t in tokens if t not in _GENERIC_NAMES and t not in _FILLERS]
    if generic and all(t in _PERSON_WORDS or t.isdigit() for t in others):
        return PERSON_NAME
    record, _, field = column.rpartition(".")
    if record and field[:1].isalpha():
        return _field_kind(record, field)
    return None


def _field_kind(record: str, field: str) -> str | None:
    """The kind a field of a nested record announces (``nested.patient_name``, a flattened
    struct): its own name decides, but a bare ``name`` only under a record of a person
    (``patient.name``, not ``drug.name``)."""
    kind = name_kind(field)
    if kind == PERSON_NAME and all(t in _GENERIC_NAMES for t in name_tokens(field)):
        context = [t for t in name_tokens(record) if t not in _FILLERS and not t.isdigit()]
        return kind if all(t in _PERSON_WORDS for t in context) else None
    return kind


# --- By value ---------------------------------------------------------------------------------

# A weak pattern (a name, a plain number) marks a column when at least this share of its
# non-empty cells, and at least ``MOSTLY_MIN`` cells, look so.
MOSTLY = 0.5
MOSTLY_MIN = 3
WEAK_KINDS = (PERSON_NAME, PHONE, NATIONAL_ID)


def _bsn_valid(text: pl.Expr) -> pl.Expr:
    """Dutch BSN: nine digits passing the "11-proof" (9*d1 + 8*d2 + ... + 2*d8 - d9)."""
    digits = [text.str.slice(i, 1).cast(pl.Int64, strict=False) for i in range(9)]
    total = sum(((9 - i) * d for i, d in enumerate(digits[:8])), pl.lit(0)) - digits[8]
    return text.str.contains(r"^\d{9}$") & (total % 11 == 0) & (total > 0)


def _cpf_valid(text: pl.Expr) -> pl.Expr:
    """Brazilian CPF: eleven digits with its two check digits."""
    digits = [text.str.slice(i, 1).cast(pl.Int64, strict=False) for i in range(11)]
    first = sum(((10 - i) * d for i, d in enumerate(digits[:9])), pl.lit(0)) * 10 % 11 % 10
    second = sum(((11 - i) * d for i, d in enumerate(digits[:10])), pl.lit(0)) * 10 % 11 % 10
    return text.str.contains(r"^\d{11}$") & (first == digits[9]) & (second == digits[10])


@dataclass
class Evidence:
    """What the values of one column show. Evidence from parts of a file (the patient ranges
    of a split export) merges into the evidence of the whole file."""

    kind: str | None = None  # of the earliest value that identifies on its own
    row: int | None = None  # the row holding it
    cells: int = 0  # non-empty cells
    weak: dict[str, int] = field(default_factory=dict)  # weak kind -> cells that look so

    def merge(self, other: Evidence) -> Evidence:
        earliest = min(
            (self, other), key=lambda e: (e.kind is None, math.inf if e.row is None else e.row)
        )
        weak = {k: self.weak.get(k, 0) + other.weak.get(k, 0) for k in {*self.weak, *other.weak}}
        return Evidence(earliest.kind, earliest.row, self.cells + other.cells, weak)

    def reason(self) -> str | None:
        """Why the column is an identifier, or None."""
        if self.kind is not None:
            return f"{self.kind} in row {self.row}" if self.row is not None else self.kind
        needed = max(MOSTLY_MIN, math.ceil(self.cells * MOSTLY))
        for kind in WEAK_KINDS:
            if self.weak.get(kind, 0) >= needed:
                return f"most values look like a {kind}"
        return None


@dataclass(frozen=True)
class Leaf:
    """The text values of a column (or of a field inside arrays) and the row of each."""

    values: pl.Series
    rows: pl.Series | None


def _flags(domains: Mapping[str, pl.Series], birth: Collection[str]) -> pl.DataFrame:
    """Per distinct value of every column (``c``, ``v``): the kind it reveals on its own
    (``strong``) and the weak kind it may count for (``weak``); only values with either."""
    parts = [
        values.cast(pl.String).to_frame("v").select(pl.lit(name).alias("c"), "v")
        for name, values in domains.items()
        if len(values)
    ]
    empty = pl.DataFrame(
        schema={"c": pl.String, "v": pl.String, "strong": pl.String, "weak": pl.String}
    )
    if not parts:
        return empty
    v = pl.col("v")
    trimmed = v.str.strip_chars()
    # One pass of each cheap test over every value; the costlier ones (full dates, digit
    # counts, name shapes, check digits) only run on the few values the cheap ones let through.
    frame = pl.concat(parts).with_columns(
        v.str.contains(ANY_SUBSTRING).alias("any"),
        trimmed.str.contains(PHONE_NATIONAL).alias("phone"),
        (~v.str.contains(r"\d") & v.str.contains(r"[^\W\d_]")).alias("letters"),
        trimmed.str.contains(r"^\d{9,11}$").alias("digits"),
        pl.col("c").is_in(list(birth)).alias("birth"),
    )
    strong = pl.concat(
        [
            frame.filter("any").select("c", "v", pl.lit("?").alias("strong")),
            frame.filter("phone")
            .filter(national_phone_expr(trimmed) & ~trimmed.str.contains(FULL_DATE))
            .select("c", "v", pl.lit(PHONE).alias("strong")),
            frame.filter("birth")
            .filter(trimmed.str.contains(FULL_DATE) | trimmed.str.contains(r"^\d{5}(?:\.0+)?$"))
            .select("c", "v", pl.lit(BIRTH_DATE).alias("strong")),
        ]
    ).unique(["c", "v"], keep="first", maintain_order=True)
    folded = trimmed.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    names = frame.filter("letters").filter(trimmed.str.contains(NAME_SHAPE))
    plain = frame.filter("digits")
    weak = pl.concat(
        [
            names.filter(folded.str.contains(GIVEN_NAME_WORD)).select(
                "c", "v", pl.lit(PERSON_NAME).alias("weak")
            ),
            plain.filter(trimmed.str.contains(PHONE_PLAIN)).select(
                "c", "v", pl.lit(PHONE).alias("weak")
            ),
            plain.filter(_bsn_valid(trimmed) | _cpf_valid(trimmed)).select(
                "c", "v", pl.lit(NATIONAL_ID).alias("weak")
            ),
        ]
    )
    frame = pl.concat([strong, weak], how="diagonal")
    return frame.select("c", "v", "strong", "weak") if frame.height else empty


# Code-system namespaces (FHIR ``coding.system``, ``identifier.system``): URLs that name a
# terminology or an authority, never a person.
TERMINOLOGY_URL = (
    r"^(?i:https?://(?:terminology\.hl7\.org|hl7\.org|loinc\.org|snomed\.info|"
    r"unitsofmeasure\.org|www\.whocc\.no|id\.who\.int|icd\.who\.int|www\.nlm\.nih\.gov|"
    r"www\.ama-assn\.org|www\.cms\.gov|fhir\.[a-z0-9.-]+)(?:/\S*)?)$"
)


def value_evidence(leaves: Mapping[str, Leaf], birth: Collection[str] = ()) -> dict[str, Evidence]:
    """The :class:`Evidence` of each column, computed on its distinct values (one pass of each
    pattern for all columns together) and counted back onto rows only where a value matched.

    ``birth`` names the columns whose full dates are birth dates.
    """
    domains = {c: distinct_values(leaf.values) for c, leaf in leaves.items()}
    flags = _flags(domains, birth)
    evidence = {c: Evidence(cells=_cells(leaf.values)) for c, leaf in leaves.items()}
    for (column,), hits in flags.group_by("c"):
        leaf, found = leaves[str(column)], evidence[str(column)]
        # Matched on the values as read (a Categorical compares codes, not text).
        strong = hits.filter(
            pl.col("strong").is_not_null()
            & ~pl.col("v").str.contains(TERMINOLOGY_URL)  # the whole value is such a URL
        )
        where = leaf.values.is_in(strong.get_column("v").implode()).fill_null(False)
        positions = where.arg_true()
        # A Categorical's categories can outlive its rows (rows a reader rejected): a value
        # found only there is in no row.
        if positions.len():
            if leaf.rows is not None:
                # The earliest row holding such a value (parts of a split file come in any order).
                at = int(positions[leaf.rows.gather(positions).arg_min() or 0])
                found.row = int(leaf.rows[at])
            else:
                at = int(positions[0])
            first = str(leaf.values[at])
            kind = strong.filter(pl.col("v") == first).get_column("strong")[0]
            if kind == "?":
                kind = next((k for k, p in SUBSTRING_PATTERNS if re.search(p, first)), PHONE)
            found.kind = kind
        for (kind,), matching in hits.filter(pl.col("weak").is_not_null()).group_by("weak"):
            cells = leaf.values.is_in(matching.get_column("v").implode()).sum()
            found.weak[str(kind)] = int(cells)
    return evidence


def _cells(values: pl.Series) -> int:
    """Filled cells of a text column (readers leave empty cells null)."""
    return values.len() - values.null_count()


# --- Columns of a frame -----------------------------------------------------------------------


_ROW = "\x00row"  # the row of a nested value (no field of a source is named so)


def text_leaves(frame: pl.DataFrame, rows: pl.Series | None = None) -> dict[str, Leaf]:
    """The text values of every column, arrays included: ``contacts.email`` holds the e-mail
    fields of every element of the ``contacts`` arrays (exploded as a mapping rule would)."""
    if rows is None and "source_row" in frame.columns:
        rows = frame.get_column("source_row")
    leaves: dict[str, Leaf] = {}
    for name, dtype in frame.schema.items():
        if name in ("source_file", "source_row", _ROW):
            continue
        if isinstance(dtype, pl.List | pl.Array | pl.Struct):
            row = pl.lit(rows) if rows is not None else pl.int_range(pl.len())
            nested = frame.select(row.alias(_ROW), pl.col(name))
            if not isinstance(dtype, pl.Struct):
                nested = nested.explode(name).drop_nulls(name)
            struct = isinstance(nested.schema[name], pl.Struct)
            fields = nested.select(pl.col(name).struct.unnest()) if struct else nested.select(name)
            for sub, leaf in text_leaves(fields, nested.get_column(_ROW)).items():
                path = f"{name}.{sub}" if struct else sub
                leaves[path] = Leaf(leaf.values, leaf.rows if rows is not None else None)
        elif dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
            leaves[name] = Leaf(frame.get_column(name), rows)
    return leaves


def distinct_values(values: pl.Series) -> pl.Series:
    """The distinct values of a text column (a Categorical's own categories: no hashing)."""
    if isinstance(values.dtype, pl.Categorical):
        return category_values(values)
    if isinstance(values.dtype, pl.Enum):
        return values.dtype.categories
    return values.cast(pl.String).unique()


def top_level(column: str, columns: Iterable[str]) -> str:
    """The frame column holding ``column``: itself, or the array holding a field
    (``contacts`` for ``contacts.email``)."""
    names = set(columns)
    if column in names:
        return column
    parts = column.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in names:
            return prefix
    return column


DICTIONARY = "marked as an identifier in the data dictionary"


def named_identifiers(columns: Iterable[str], extra: Iterable[str] = ()) -> dict[str, str]:
    """Columns identifier-like by their name (or listed in ``extra``, REDCap's
    ``Identifier?`` flag) -> why."""
    found = {c: f"{kind}, by its name" for c in columns if (kind := name_kind(c)) is not None}
    for column in extra:
        found.setdefault(column, DICTIONARY)
    return found


def decide(
    named: Mapping[str, str], evidence: Mapping[str, Evidence], order: Iterable[str]
) -> dict[str, str]:
    """Identifier-like columns (in ``order``) -> why: by name, else by their values."""
    found = dict(named)
    for column, seen in evidence.items():
        why = seen.reason()
        if why is not None and column not in found:
            found[column] = why
    return {c: found[c] for c in dict.fromkeys([*order, *found]) if c in found}


def frame_evidence(frame: pl.DataFrame, skip: Collection[str] = ()) -> dict[str, Evidence]:
    """:class:`Evidence` of every text column of ``frame`` but ``skip``, arrays included."""
    leaves = {c: leaf for c, leaf in text_leaves(frame).items() if c not in skip}
    birth = [c for c in leaves if mentions_birth(c)]
    return value_evidence(leaves, birth)


def identifier_reasons(frame: pl.DataFrame, extra: Iterable[str] = ()) -> dict[str, str]:
    """Identifier-like columns of ``frame`` (nested array fields as ``array.field``) -> why,
    e.g. "phone number, by its name" or "e-mail address in row 501".
    """
    columns = [c for c in frame.columns if c not in ("source_file", "source_row")]
    leaves = [*text_leaves(frame), *columns]
    named = named_identifiers(dict.fromkeys(leaves), extra)
    return decide(named, frame_evidence(frame, named), leaves)


def identifier_columns(frame: pl.DataFrame, extra: Iterable[str] = ()) -> list[str]:
    """Columns of ``frame`` that look like direct identifiers, by name or by value; an array
    column counts when a field inside it does."""
    holding = {top_level(c, frame.columns) for c in identifier_reasons(frame, extra)}
    return [c for c in frame.columns if c in holding]
