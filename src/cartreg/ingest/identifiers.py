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
* **most** of its distinct values look like person names (a common given name in a name-shaped
  value) or like plain national phone numbers, or are Dutch BSNs or Brazilian CPFs that pass
  their check digits; or
* its name mentions birth (``Geboren``, ``birth``, ``nascita``) and one of its values is a full
  calendar date (a birth year alone is not an identifier).

Values are examined over the whole column, one regex pass per distinct value (a CSV column read
as Categorical has its distinct values at hand), not on a sample. Such columns are never copied
into outputs, quarantine files or messages, and a mapping that reads one is a configuration
error unless it lists the column under ``allow_identifiers``. What this cannot see is written
in docs/security.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import polars as pl

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
        "nompatient nomepaziente nombrepaciente",
        "nachname vorname familienname geburtsname patientenname achternaam voornaam surname "
        "lastname firstname forename givenname prenom apellido cognome sobrenome",
        "last name, first name, given name, family name, middle name, maiden name, full name, "
        "nom de famille, nom de naissance, nom d usage, nom de jeune fille, primer apellido, "
        "segundo apellido, nome completo, primeiro nome, ultimo nome",
    ),
    PHONE: _lexicon(
        "phone telephone tel tele tlf telf tfno tlfno fax telefax mobile mobil mobiel handy "
        "cellulare celular movil gsm telefon telefono telefone telefoon rufnummer",
        "telefon telephon telefoon phone rufnummer handynummer mobilnummer faxnummer cellphone",
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
        "hausnummer city town ort stadt ville commune ciudad localidad municipio citta comune "
        "woonplaats gemeente cidade concelho county residence wohnsitz latitude longitude gps "
        "geolocation geoloc birthplace geburtsort",
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
        "numero dossier, n dossier, no dossier, dossier medical, numero de processo",
    ),
    NATIONAL_ID: _lexicon(
        "ssn sin nino nhs chi medicare medicaid kvnr kvnummer svnr svnummer "
        "versichertennummer versicherungsnummer personalausweis ausweis passport reisepass "
        "passeport pasaporte passaporto paspoort passaporte nir insee secu vitale nss nuss "
        "dni nie nif tsi codicefiscale bsn burgerservicenummer sofinummer cpf cartaocidadao "
        "steuerid",
        "versichertennummer versicherungsnummer krankenversicherungsnummer "
        "sozialversicherung versichertennr codicefiscale burgerservicenummer "
        "verzekeringsnummer polisnummer",
        "social security, security number, kv nr, kv nummer, kv no, sv nr, sv nummer, "
        "versicherten nr, vers nr, codice fiscale, tessera sanitaria, tarjeta sanitaria, "
        "securite sociale, seguridad social, sicurezza sociale, seguranca social, "
        "numero utente, numero sns, carte vitale, health plan, health card, health insurance, "
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
    "spouse partner contact kontakt contacto contatto relative angehoriger vor nach ruf "
    "eerste achter voor primeiro ultimo segundo primer"
)
_FILLERS = _words("de du des d del della di da do dos das van von der den het the of y e et und en")

_BIRTH_TOKENS = _words(
    "birth born birthdate birthday dob geb geboren geburt geburtstag geburtsdatum gebdat "
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
    "dob birthdate birthday geburtsdatum geburtstag gebdat gebdatum ddn fnac fecnac geboortedatum"
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
    return None


def looks_like_identifier_name(column: str) -> bool:
    return name_kind(column) is not None


# --- By value ---------------------------------------------------------------------------------

# Share of a column's distinct values that must look like a weak pattern (a plain number or a
# name) for the column to count, and the fewest such values.
MOSTLY = 0.5
MOSTLY_MIN = 3


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


@dataclass(frozen=True)
class ValueHit:
    kind: str
    value: str | None  # the first distinct value found, to locate its row (never shown)


def _needed(n: pl.Expr) -> pl.Expr:
    """How many of ``n`` distinct values must match a weak pattern."""
    return pl.max_horizontal((n * MOSTLY).ceil().cast(pl.Int64), pl.lit(MOSTLY_MIN))


def value_hits(domains: Mapping[str, pl.Series], birth: Iterable[str] = ()) -> dict[str, ValueHit]:
    """What the distinct values of each column reveal (columns revealing nothing are absent).

    All columns are examined together, one pass of each pattern over their distinct values.
    A full date counts only in the ``birth`` columns (named after birth).
    """
    parts = [
        values.cast(pl.String).to_frame("v").select(pl.lit(name).alias("c"), "v")
        for name, values in domains.items()
        if len(values)
    ]
    if not parts:
        return {}
    v = pl.col("v")
    # Distinct per column already (trimming may merge a few spellings: counts stay close).
    frame = pl.concat(parts).with_columns(v.str.strip_chars()).filter(v.str.len_chars() > 0)
    is_date = v.str.contains(FULL_DATE)
    frame = frame.with_columns(
        v.str.contains(ANY_SUBSTRING).alias("strong"),
        (v.str.contains(PHONE_NATIONAL) & ~is_date).alias("phone"),
        (pl.col("c").is_in(list(birth)) & (is_date | v.str.contains(r"^\d{5}(?:\.0+)?$"))).alias(
            "birth"
        ),
        v.str.contains(NAME_SHAPE).alias("shaped"),
        v.str.contains(r"^\d{9,11}$").alias("digits"),
    )
    if frame.get_column("phone").any():
        # Digits are counted only where the shape fits (counting them everywhere costs more
        # than all the patterns together).
        frame = frame.with_columns(
            (pl.col("strong") | (pl.col("phone") & national_phone_expr(v))).alias("strong")
        )
    summary = (
        frame.group_by("c", maintain_order=True)
        .agg(
            pl.len().alias("n"),
            v.filter("strong").first().alias("strong"),
            v.filter("birth").first().alias("birth"),
            pl.col("shaped").sum().alias("shaped"),
            pl.col("digits").sum().alias("digits"),
        )
        .with_columns(_needed(pl.col("n")).alias("needed"))
    )
    hits: dict[str, ValueHit] = {}
    weak: list[str] = []
    for row in summary.iter_rows(named=True):  # one row per column
        if row["strong"] is not None:
            first = row["strong"]
            kind = next((k for k, p in SUBSTRING_PATTERNS if re.search(p, first)), PHONE)
            hits[row["c"]] = ValueHit(kind, first)
        elif row["birth"] is not None:
            hits[row["c"]] = ValueHit(BIRTH_DATE, row["birth"])
        elif row["shaped"] >= row["needed"] or row["digits"] >= row["needed"]:
            weak.append(row["c"])
    if weak:
        hits.update(_weak_hits(frame.filter(pl.col("c").is_in(weak)), summary))
    return hits


def _weak_hits(frame: pl.DataFrame, summary: pl.DataFrame) -> dict[str, ValueHit]:
    """Columns most of whose distinct values are person names, plain phone numbers, BSNs or
    CPFs (only the columns where enough values have the shape are examined)."""
    v = pl.col("v")
    folded = v.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    names = frame.filter("shaped").select(
        "c", folded.str.contains(GIVEN_NAME_WORD).alias(PERSON_NAME)
    )
    numbers = frame.filter("digits").select(
        "c",
        v.str.contains(PHONE_PLAIN).alias(PHONE),
        (_bsn_valid(v) | _cpf_valid(v)).alias(NATIONAL_ID),
    )
    counts = (
        pl.concat([names, numbers], how="diagonal")
        .group_by("c")
        .agg(pl.col(PERSON_NAME, PHONE, NATIONAL_ID).fill_null(False).sum())
        .join(summary.select("c", "needed"), on="c")
    )
    hits: dict[str, ValueHit] = {}
    for row in counts.iter_rows(named=True):
        for kind in (PERSON_NAME, PHONE, NATIONAL_ID):
            if row[kind] >= row["needed"]:
                hits[row["c"]] = ValueHit(kind, None)
                break
    return hits


# --- Columns of a frame -----------------------------------------------------------------------


def text_leaves(frame: pl.DataFrame) -> dict[str, pl.Series]:
    """The text values of every column, arrays included: ``contacts.email`` holds the e-mail
    fields of every element of the ``contacts`` arrays (exploded as a mapping rule would)."""
    leaves: dict[str, pl.Series] = {}
    for name, dtype in frame.schema.items():
        if name in ("source_file", "source_row"):
            continue
        column = frame.get_column(name)
        if isinstance(dtype, pl.List | pl.Array):
            inner = column.explode().drop_nulls()
            if isinstance(inner.dtype, pl.Struct):
                nested = inner.struct.unnest()
                for sub, values in text_leaves(nested).items():
                    leaves[f"{name}.{sub}"] = values
            else:
                leaves.update(text_leaves(inner.rename(name).to_frame()))
        elif isinstance(dtype, pl.Struct):
            for sub, values in text_leaves(column.struct.unnest()).items():
                leaves[f"{name}.{sub}"] = values
        elif dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
            leaves[name] = column
    return leaves


def distinct_values(values: pl.Series) -> pl.Series:
    """The distinct values of a text column (a Categorical's own categories: no hashing)."""
    if isinstance(values.dtype, pl.Categorical):
        return values.dtype.categories.to_series()
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


RowOf = Callable[[str, str], int | None]


def find_identifiers(
    leaves: Mapping[str, pl.Series],
    *,
    distinct: bool = False,
    extra: Mapping[str, str] | None = None,
    row_of: RowOf | None = None,
) -> dict[str, str]:
    """Identifier-like columns among ``leaves`` (column -> why, e.g. "phone number, by its
    name" or "e-mail address in row 501"), in the order of ``leaves``.

    ``distinct`` says the series already hold distinct values; ``extra`` adds columns known
    from elsewhere (REDCap's ``Identifier?`` flag); ``row_of(column, value)`` locates a value.
    """
    found: dict[str, str] = {}
    for column in leaves:
        kind = name_kind(column)
        if kind is not None:
            found[column] = f"{kind}, by its name"
        elif extra and column in extra:
            found[column] = extra[column]
    rest = {
        c: (values if distinct else distinct_values(values))
        for c, values in leaves.items()
        if c not in found
    }
    hits = value_hits(rest, birth=[c for c in rest if mentions_birth(c)])
    for column, hit in hits.items():
        if hit.value is None:
            found[column] = f"most values look like a {hit.kind}"
            continue
        row = row_of(column, hit.value) if row_of is not None else None
        where = f"in row {row}" if row is not None else "in its values"
        found[column] = f"{hit.kind} {where}"
    for column, why in (extra or {}).items():
        found.setdefault(column, why)
    order = [*leaves, *(extra or {})]
    return {c: found[c] for c in dict.fromkeys(order) if c in found}


def frame_row_of(frame: pl.DataFrame) -> RowOf:
    """``row_of`` for :func:`find_identifiers` over a reader's frame (its ``source_row``)."""

    def row_of(column: str, value: str) -> int | None:
        if column not in frame.columns or "source_row" not in frame.columns:
            return None
        text = pl.col(column).cast(pl.String).str.strip_chars()
        rows = frame.filter(text == value).get_column("source_row")
        return int(rows.min()) if rows.len() else None  # type: ignore[arg-type]

    return row_of


def identifier_reasons(frame: pl.DataFrame, extra: Iterable[str] = ()) -> dict[str, str]:
    """Identifier-like columns of ``frame`` (nested array fields as ``array.field``) -> why."""
    known = {c: "marked as an identifier in the data dictionary" for c in extra}
    leaves = text_leaves(frame)
    # Columns of other types (all-null in an empty export) are judged by their name alone.
    empty = pl.Series([], dtype=pl.String)
    for column, dtype in frame.schema.items():
        nested = isinstance(dtype, pl.List | pl.Array | pl.Struct)
        if column not in leaves and column not in ("source_file", "source_row") and not nested:
            leaves[column] = empty
    return find_identifiers(leaves, extra=known, row_of=frame_row_of(frame))


def identifier_columns(frame: pl.DataFrame, extra: Iterable[str] = ()) -> list[str]:
    """Columns of ``frame`` that look like direct identifiers, by name or by value; an array
    column counts when a field inside it does."""
    holding = {top_level(c, frame.columns) for c in identifier_reasons(frame, extra)}
    return [c for c in frame.columns if c in holding]
