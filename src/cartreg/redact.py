"""What cartreg may echo of a source value: identifier-looking text masked, long text cut.

Every place that shows a raw value to a person or writes it to a report goes through here:
finding values and messages (all four report formats and ``findings.json``), ``*_raw`` columns,
quarantine cells, ``cartreg profile`` and one-line error messages. A value is masked as
``***`` when it looks like an e-mail address, a phone number, a national identity, insurance or
account number, a medical record number written with its prefix (``MRN 12345678``), an IP
address, a URL or a person's name (a known given name in a name-shaped value); values reported
for columns that are not date columns are also masked when they are full calendar dates (a
birth date shifted into another column). What is left is cut to :data:`MAX_VALUE_CHARS`.

The patterns are the ones :mod:`cartreg.ingest.identifiers` uses to find identifier columns by
value. They are written in the syntax shared by Python's ``re`` and polars' Rust regex (no
look-around), so a Python string and a polars column are masked alike. This module imports
polars only inside its functions: error messages use it before polars is loaded.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import TYPE_CHECKING

from cartreg.findings import MASK

if TYPE_CHECKING:
    import polars as pl

MAX_VALUE_CHARS = 60  # a finding value or ``*_raw`` cell: a code, a date, a number, a short text
MAX_CELL_CHARS = 200  # a quarantine cell: room for a comment, not for a whole merged row
MAX_MESSAGE_CHARS = 400
MAX_QUOTED_CHARS = 40  # a value quoted inside a one-line error message
ELLIPSIS = "…"

# --- Kinds of identifier (shown in findings and errors as the reason a column is hidden) ------

PERSON_NAME = "person name"
BIRTH_DATE = "birth date"
PHONE = "phone number"
EMAIL = "e-mail address"
ADDRESS = "address or place of residence"
POSTCODE = "postal code"
RECORD_NUMBER = "medical record number"
LABELLED_NUMBER = "record or insurance number written with its label"
NATIONAL_ID = "national identity or insurance number"
ACCOUNT = "account number"
WEB = "URL or IP address"
BIOMETRIC = "photo or biometric"
LICENCE = "licence, vehicle or device number"

# --- Patterns that identify a person wherever they appear (substring matches) ----------------

EMAIL_PATTERN = r"[^\s@<>()\[\]\\,;:\"]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z][A-Za-z0-9\-]+"
URL_PATTERN = r"(?:[Hh][Tt][Tt][Pp][Ss]?://|[Ww][Ww][Ww]\.)[^\s\"'<>]+"
IPV4 = r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b"
# A phone number written with its country code: + and 8 to 15 digits, separators between.
PHONE_INTERNATIONAL = r"\+\(?\d(?:[\s.\-/()]{0,2}\d){7,14}"
# North American: (555) 123-4567, 555-123-4567, 555.123.4567 (separators required).
PHONE_NANP = r"\(?\b[2-9]\d{2}\)?[\s.\-]\d{3}[\s.\-]\d{4}\b"
US_SSN = r"\b\d{3}-\d{2}-\d{4}\b"
BR_CPF = r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b"
BE_NATIONAL = r"\b\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}\b"
# French NIR with its spaces: sex, year, month, department, commune, order, key.
FR_NIR = r"\b[12] \d{2} (?:0[1-9]|1[0-2]|[2-9]\d) (?:\d{2}|2[ABab]) \d{3} \d{3}(?: \d{2})?\b"
IT_CODICE_FISCALE = r"\b[A-Za-z]{6}\d{2}[ABCDEHLMPRSTabcdehlmprst]\d{2}[A-Za-z]\d{3}[A-Za-z]\b"
DE_KVNR = r"\b[A-Z]\d{9}\b"  # German health-insurance number (Krankenversichertennummer)
UK_NHS_SPACED = r"\b\d{3} \d{3} \d{4}\b"
IBAN = r"\b[A-Z]{2}\d{2} ?[A-Z0-9]{4}(?: ?\d{4}){2,7}(?: ?\d{1,3})?\b"
# A record, patient, case or insurance number written after its label, in any of the
# consortium's languages: "MRN 12345678", "Pat.-Nr.: 4711-0815", "NHC 123456", "n° dossier 12345".
_NUMBER_LABELS = (
    r"mrn|mr#|med\.? ?rec(?:ord)?\.?(?: ?(?:no|nr|num|number))?|"
    r"medical record(?: number| no)?|record (?:no|number)|hospital (?:no|number)|"
    r"pat(?:ient(?:en)?)?\.? ?-? ?(?:nr|no|num|nummer|number)\.?|fall ?-? ?(?:nr|nummer)\.?|"
    r"aufnahme ?-? ?(?:nr|nummer)|ipp|nip|nda|nhc|n\.?h\.?c\.?|historia cl[ií]nica|"
    r"n[°º]\.? ?(?:de )?dossier|dossier|nosologico|cartella(?: clinica)?|prontu[aá]rio|"
    r"nhs(?: no| number)?|chi(?: no| number)?|ssn|nir|insee|kvnr|kv ?-? ?(?:nr|nummer)|"
    r"sv ?-? ?(?:nr|nummer)|versicherten ?-? ?(?:nr|nummer)|versichertennummer|"
    r"bsn|cpf|dni|nie|nss|nuss|codice fiscale|tessera sanitaria|tarjeta sanitaria|"
    r"n[uú]mero (?:de )?(?:utente|sns|seguridad social|historia)|ziekenhuisnummer|"
    r"pati[eë]ntnummer|medicare|medicaid|policy (?:no|number)|member id"
)
LABELLED_NUMBER_PATTERN = (
    rf"(?i:\b(?:{_NUMBER_LABELS})\s*[:#=]?\s*[A-Za-z]{{0,3}}[\s\-/]?\d(?:[\s\-/.]?\d){{4,}})"
)

SUBSTRING_PATTERNS: tuple[tuple[str, str], ...] = (
    (EMAIL, EMAIL_PATTERN),
    (WEB, URL_PATTERN),
    (LABELLED_NUMBER, LABELLED_NUMBER_PATTERN),
    (NATIONAL_ID, US_SSN),
    (NATIONAL_ID, BR_CPF),
    (NATIONAL_ID, BE_NATIONAL),
    (NATIONAL_ID, FR_NIR),
    (NATIONAL_ID, IT_CODICE_FISCALE),
    (NATIONAL_ID, DE_KVNR),
    (ACCOUNT, IBAN),
    (PHONE, PHONE_INTERNATIONAL),
    (PHONE, PHONE_NANP),
    (PHONE, UK_NHS_SPACED),  # or an NHS number: masked either way
    (WEB, IPV4),
)
ANY_SUBSTRING = "|".join(f"(?:{p})" for _, p in SUBSTRING_PATTERNS)

# --- Patterns for a whole value (after trimming) ----------------------------------------------

# A national phone number with a trunk prefix and separators: 030/1234567, 06 12 34 56 78,
# (0221) 123 45 67. Full dates have the same shape and are excluded by ``FULL_DATE``.
PHONE_NATIONAL = r"^\(?0[1-9]\d{0,4}\)?(?:[\s./\-]{1,2}\d{2,8}){1,5}$"
PHONE_PLAIN = r"^0[1-9]\d{7,9}$"  # 0612345678: a phone only when most of a column looks so
PHONE_MIN_DIGITS = 8

_MONTHS = (
    r"jan|feb|febr|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|january|february|march|april|"
    r"june|july|august|september|october|november|december|januar|jaenner|j[aä]nner|februar|"
    r"m[aä]rz|mai|juni|juli|okt|oktober|dez|dezember|janv|janvier|f[eé]v|f[eé]vr|f[eé]vrier|"
    r"mars|avr|avril|juin|juil|juillet|ao[uû]t|d[eé]c|d[eé]cembre|ene|enero|febrero|marzo|abr|"
    r"abril|mayo|junio|julio|ago|agosto|septiembre|setiembre|oct|octubre|noviembre|dic|"
    r"diciembre|gen|gennaio|febbraio|aprile|maggio|giu|giugno|lug|luglio|set|settembre|ott|"
    r"ottobre|novembre|dicembre|mrt|maart|mei|okt|fev|fevereiro|marco|março|maio|junho|julho|"
    r"out|outubro|dez|dezembro|janeiro"
)
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?)?"
FULL_DATE = (
    r"(?i:^(?:"
    r"\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}"  # 1970-05-04
    r"|\d{1,2}[\-/.]\d{1,2}[\-/.](?:\d{4}|\d{2})"  # 04.05.1970, 5/4/70
    r"|(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # 19700504
    rf"|\d{{1,2}}\.?[\s\-/]*(?:{_MONTHS})\.?[\s\-/,]*(?:\d{{4}}|\d{{2}})"  # 4 May 1970, 04-MAY-70
    rf"|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"  # May 4, 1970
    rf"){_TIME}$)"
)

# A person's name: one to five words of letters (hyphen, apostrophe, period allowed, one comma)
# holding a common given name of the consortium's languages. Words that are also clinical or
# common words (Frank, Grace, Rosa, Ida as in FLAG-IDA, ...) are left out on purpose.
_GIVEN_NAMES = (
    # English
    "james john robert michael william david richard joseph thomas charles christopher daniel "
    "matthew anthony donald steven paul andrew joshua kenneth kevin brian george edward ronald "
    "timothy jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin scott "
    "brandon benjamin samuel gregory alexander raymond patrick jack dennis jerry tyler aaron "
    "adam henry nathan douglas zachary peter kyle walter ethan jeremy harold keith roger noah "
    "gerald carl terry sean arthur lawrence jesse dylan bryan billy bruce albert willie gabriel "
    "logan alan wayne ralph randy eugene vincent russell elijah louis bobby philip johnny joe "
    "roy bob tom ian sam lee mary patricia jennifer linda elizabeth barbara susan jessica sarah "
    "karen nancy lisa betty margaret sandra ashley kimberly emily donna michelle dorothy carol "
    "amanda melissa deborah stephanie rebecca sharon laura cynthia kathleen amy shirley angela "
    "helen anna brenda pamela nicole emma samantha katherine christine debra rachel catherine "
    "carolyn janet ruth maria heather diane julie joyce olivia kelly christina lauren joan "
    "evelyn judith megan cheryl andrea hannah martha jacqueline frances teresa kathryn sara "
    "janice alice julia judy denise marilyn beverly charlotte marie diana brittany natalie "
    "sophia alexis lori kayla jane ann "
    # German
    "hans klaus juergen jurgen wolfgang andreas stefan uwe dieter guenter gunter horst helmut "
    "manfred werner gerhard bernd karl heinz rainer ralf joachim joerg jorg holger dirk "
    "matthias markus martin sebastian tobias florian lukas leon felix jonas maximilian moritz "
    "finn elias ursula monika petra sabine renate helga karin brigitte ingrid gisela erika "
    "christa gabriele susanne birgit claudia heike stefanie katharina lena lea mia sophie "
    "johanna greta frieda ilse hildegard gertrud elke anke silke ute doris inge jutta dagmar "
    "kerstin tanja melanie katrin friedrich heinrich wilhelm otto kurt fritz ernst "
    # French
    "jean pierre michel philippe alain nicolas christophe francois bernard laurent frederic "
    "pascal sebastien julien stephane olivier thierry jacques antoine guillaume mathieu "
    "maxime alexandre romain hugo lucas jules raphael nathalie isabelle sylvie francoise "
    "valerie sandrine veronique monique celine chantal martine camille manon chloe ines louise "
    "juliette amelie aurelie elodie emilie "
    # Spanish
    "jose antonio manuel francisco juan javier carlos jesus alejandro miguel rafael pedro "
    "pablo sergio fernando jorge luis alberto alvaro adrian diego raul enrique ramon ignacio "
    "andres joaquin santiago carmen josefa isabel cristina marta lucia elena paula raquel "
    "manuela rocio sofia beatriz nuria silvia irene patricia montserrat concepcion "
    # Italian
    "giuseppe giovanni mario luigi francesco angelo vincenzo pietro salvatore carlo domenico "
    "bruno paolo michele giorgio aldo luciano marco alessandro lorenzo matteo leonardo "
    "riccardo davide federico simone stefano roberto fabio giuseppina giovanna carmela "
    "caterina francesca antonietta giulia alessia martina valentina federica paola roberta "
    # Dutch
    "johannes cornelis hendrik willem pieter gerrit jacobus klaas bram daan lars thijs ruben "
    "jeroen sander maarten joost wouter bart niels wilhelmina hendrika geertje sanne lotte "
    "femke anouk marieke esther "
    # Portuguese
    "joao paulo rui tiago ricardo goncalo diogo duarte rodrigo afonso guilherme matheus joana "
    "mariana ines catarina francisca leonor matilde luisa fernanda adriana juliana camila "
    "larissa leticia"
)
GIVEN_NAMES = frozenset(_GIVEN_NAMES.split())
_GIVEN = "|".join(sorted(GIVEN_NAMES))
_LETTERS = r"[^\W\d_]"
_WORD = rf"{_LETTERS}+(?:[.'\-]\s?{_LETTERS}+)*\.?"
NAME_SHAPE = rf"^{_WORD}(?:(?:\s*,\s*|\s+){_WORD}){{0,4}}$"  # titles (Dr.) are words too
# Applied to the lower-case, accent-free value.
GIVEN_NAME_WORD = rf"\b(?:{_GIVEN})\b"


def strip_accents(text: str) -> str:
    """``Prénom`` -> ``Prenom``, ``Straße`` -> ``Strasse``."""
    decomposed = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# --- Python strings ----------------------------------------------------------------------------


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # Compiled on first use: error messages import this module, `cartreg --help` need not pay.
    return re.compile(pattern)


def looks_like_name(text: str) -> bool:
    """A name-shaped value holding a common given name (``Müller, Hans``, ``Dr. Alice Smith``)."""
    value = text.strip()
    return bool(
        value
        and _compiled(NAME_SHAPE).match(value)
        and _compiled(GIVEN_NAME_WORD).search(strip_accents(value).lower())
    )


def looks_like_identifier(text: str, *, date_column: bool = False) -> bool:
    """Whether a whole value would be masked (see the module docstring)."""
    value = text.strip()
    if _compiled(ANY_SUBSTRING).search(value) or looks_like_name(value):
        return True
    is_date = bool(_compiled(FULL_DATE).match(value))
    if not is_date and _compiled(PHONE_NATIONAL).match(value):
        return sum(c.isdigit() for c in value) >= PHONE_MIN_DIGITS
    return is_date and not date_column


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


RECORD = r"^\s*[\{\[]"  # a JSON object or list: a whole record, not a value


def redact_value(text: str | None, *, date_column: bool = False) -> str | None:
    """A raw value as it may be shown: masked if it looks like an identifier, a long record
    (``{...}``, ``[...]``) reduced to its brackets, anything else cut."""
    if text is None:
        return None
    if looks_like_identifier(text, date_column=date_column):
        return MASK
    if re.match(RECORD, text) and len(text) > MAX_QUOTED_CHARS:
        return "{…}" if text.lstrip().startswith("{") else "[…]"
    return cut(text)


_QUOTED = r"\{[^{}]*\}|\[[^\[\]]*\]|'[^']*'|\"[^\"]*\""


def _shorten_quoted(match: re.Match[str]) -> str:
    quoted = match.group(0)
    inner = quoted[1:-1]
    if quoted[0] in "{[":
        # A record or a list echoed by a parser: at most its shape.
        if (
            len(quoted) > MAX_QUOTED_CHARS
            or _compiled(_QUOTED).search(inner)
            or _compiled(ANY_SUBSTRING).search(inner)
        ):
            return quoted[0] + ELLIPSIS + quoted[-1]
        return quoted
    # Dates in messages are the clinical dates a message is about: only other patterns count.
    if looks_like_identifier(inner, date_column=True):
        return quoted[0] + MASK + quoted[-1]
    return quoted[0] + cut(inner, MAX_QUOTED_CHARS) + quoted[-1]


def redact_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message with identifier-looking parts masked, quoted values and echoed records cut
    short, the whole capped at ``limit`` characters."""
    shortened = _compiled(_QUOTED).sub(_shorten_quoted, text)
    return cut(_compiled(ANY_SUBSTRING).sub(MASK, shortened), limit)


# --- polars columns ----------------------------------------------------------------------------


def looks_like_name_expr(value: pl.Expr) -> pl.Expr:
    """:func:`looks_like_name` for a column of trimmed text."""
    import polars as pl

    folded = value.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    shaped = value.str.contains(NAME_SHAPE)
    # The given-name search only runs on name-shaped values.
    return (
        pl.when(shaped)
        .then(folded.str.contains(GIVEN_NAME_WORD))
        .otherwise(pl.lit(False))
        .fill_null(False)
    )


def national_phone_expr(text: pl.Expr) -> pl.Expr:
    """Trimmed text shaped like a national phone number (full dates have that shape too)."""
    shaped = text.str.contains(PHONE_NATIONAL) & (text.str.count_matches(r"\d") >= PHONE_MIN_DIGITS)
    return shaped.fill_null(False)


def identifier_value_expr(value: pl.Expr, *, dates: bool | pl.Expr = True) -> pl.Expr:
    """True where a text value looks like an identifier; full dates count when ``dates`` holds
    (a boolean, or a boolean expression per row)."""
    import polars as pl

    text = value.cast(pl.String).str.strip_chars()
    is_date = text.str.contains(FULL_DATE).fill_null(False)
    phone = national_phone_expr(text) & ~is_date
    hit = text.str.contains(ANY_SUBSTRING).fill_null(False) | phone | looks_like_name_expr(text)
    if dates is True:
        return hit | is_date
    if dates is False:
        return hit
    return hit | (is_date & dates)


def cut_expr(value: pl.Expr, limit: int = MAX_VALUE_CHARS) -> pl.Expr:
    import polars as pl

    return (
        pl.when(value.str.len_chars() > limit)
        .then(value.str.slice(0, limit - 1) + pl.lit(ELLIPSIS))
        .otherwise(value)
    )


def redact_series(
    values: pl.Series, *, dates: bool = True, limit: int = MAX_VALUE_CHARS
) -> pl.Series:
    """``values`` with identifier-looking ones masked and the rest cut to ``limit``."""
    frame = redact_columns(values.to_frame(), [values.name], dates=dates, limit=limit)
    return frame.to_series()


def redact_columns(
    frame: pl.DataFrame, columns: list[str], *, dates: bool = True, limit: int = MAX_VALUE_CHARS
) -> pl.DataFrame:
    """``frame`` with the text ``columns`` redacted as :func:`redact_series` does (and cast
    to String).

    The patterns run once per distinct value of all the columns together: columns repeat
    their codes and dates a lot, and one pass costs less than one per column.
    """
    import polars as pl

    text = frame.select(pl.col(columns).cast(pl.String))
    if not columns or frame.height == 0:
        return frame.with_columns(text)
    distinct = (
        text.select(pl.concat_list(pl.all()).explode().drop_nulls().unique().alias("v"))
        if len(columns) > 1
        else text.select(pl.first().drop_nulls().unique().alias("v"))
    )
    shown = distinct.with_columns(redact_expr(pl.col("v"), dates=dates, limit=limit).alias("s"))
    changed = shown.filter(pl.col("v") != pl.col("s"))
    if changed.height == 0:
        return frame.with_columns(text)
    mapping = dict(changed.iter_rows())
    return frame.with_columns(pl.col(c).cast(pl.String).replace(mapping) for c in columns)


def redact_expr(
    value: pl.Expr, *, dates: bool | pl.Expr = True, limit: int = MAX_VALUE_CHARS
) -> pl.Expr:
    """A value as it may be shown (see :func:`redact_value`), row by row: for frames already
    reduced to distinct values (a lookup table of codes)."""
    import polars as pl

    text = value.cast(pl.String)
    record = text.str.contains(RECORD) & (text.str.len_chars() > MAX_QUOTED_CHARS)
    return (
        pl.when(identifier_value_expr(text, dates=dates))
        .then(pl.lit(MASK))
        .when(record)
        .then(pl.when(text.str.contains(r"^\s*\{")).then(pl.lit("{…}")).otherwise(pl.lit("[…]")))
        .otherwise(cut_expr(text, limit))
    )


def redact_text_series(texts: pl.Series, limit: int = MAX_MESSAGE_CHARS) -> pl.Series:
    """:func:`redact_text` of every message, computed once per distinct message."""
    import polars as pl

    text = texts.cast(pl.String)
    distinct = text.drop_nulls().unique()
    # Only messages with a pattern, a quote or a bracket, or too long, can change.
    changed = distinct.to_frame("v").filter(
        pl.col("v").str.contains(ANY_SUBSTRING)
        | pl.col("v").str.contains(r"['\"{\[]")
        | (pl.col("v").str.len_chars() > limit)
    )
    if changed.is_empty():
        return text
    mapping = {v: redact_text(v, limit) for v in changed.get_column("v").to_list()}
    return text.replace(mapping).alias(texts.name)


def redact_findings(findings: pl.DataFrame) -> pl.DataFrame:
    """Findings as they may be shown: values through :func:`redact_expr` (full dates masked
    except in date columns), messages through :func:`redact_text`."""
    import polars as pl

    if findings.height == 0:
        return findings
    keys = ["value", "__dates"]
    dates = ~pl.col("column").fill_null("").str.contains(r"(?i)date$")
    out = findings.with_columns(dates.alias("__dates"))
    pairs = out.select(keys).unique().filter(pl.col("value").is_not_null())
    # Values repeat (a code, a date): each distinct one is judged once.
    shown = pairs.with_columns(
        redact_expr(pl.col("value"), dates=pl.col("__dates")).alias("__shown")
    ).filter(pl.col("__shown") != pl.col("value"))
    if shown.height:
        out = out.join(shown, on=keys, how="left", maintain_order="left").with_columns(
            pl.coalesce("__shown", "value").alias("value")
        )
    messages = redact_text_series(out.get_column("message"))
    return out.with_columns(messages.alias("message")).select(findings.columns)
