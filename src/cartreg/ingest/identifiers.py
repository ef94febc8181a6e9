"""Columns that look like direct identifiers (names, MRN/SSN/phone/e-mail, full birth dates).

Such columns are never copied into outputs, quarantine files or messages unless the mapping lists
them under ``allow_identifiers``; detection uses the column name and a sample of values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

_NAME_PATTERNS = re.compile(
    r"(^|[^a-z])("
    r"(first|last|given|family|middle|sur|full|patient|pt|maiden)[ _.-]?name|surname|initials|"
    r"mrn|medical[ _.-]?record|ssn|social[ _.-]?security|nhs[ _.-]?(no|number)|"
    r"phone|telephone|tel|mobile|fax|e[ _.-]?mail|address|street|zip|zip[ _.-]?code|"
    r"postcode|postal|"
    r"dob|birth[ _.-]?date|date[ _.-]?of[ _.-]?birth|insurance|passport"
    r")([^a-z]|$)",
    re.IGNORECASE,
)
_VALUE_PATTERNS = (
    r"^\d{3}-\d{2}-\d{4}$",  # US SSN
    r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$",  # e-mail
    r"^\+?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}$",  # phone
)
SAMPLE_ROWS = 500


# A bare "name" column is a person's name; "ITEM_NAME" or "drug name" is not.
_BARE_NAMES = {"name", "names", "nom", "nombre", "nome"}


def looks_like_identifier_name(column: str) -> bool:
    bare = column.strip().lower() in _BARE_NAMES
    return bare or bool(_NAME_PATTERNS.search(column))


def identifier_columns(frame: pl.DataFrame, extra: Iterable[str] = ()) -> list[str]:
    """Columns of ``frame`` that look like direct identifiers, by name or by value."""
    flagged = {c for c in frame.columns if looks_like_identifier_name(c)}
    flagged |= {c for c in extra if c in frame.columns}
    text_columns = [
        c
        for c, t in frame.schema.items()
        if (t == pl.String or isinstance(t, pl.Categorical))
        and c not in flagged
        and c not in ("source_file", "source_row")
    ]
    if text_columns:
        sample = frame.head(SAMPLE_ROWS).with_columns(pl.col(pl.Categorical).cast(pl.String))
        hits = sample.select(
            [
                pl.any_horizontal(
                    [
                        pl.col(c).str.strip_chars().str.contains(p).fill_null(False)
                        for p in _VALUE_PATTERNS
                    ]
                )
                .any()
                .alias(c)
                for c in text_columns
            ]
        ).row(0)
        flagged |= {c for c, hit in zip(text_columns, hits, strict=True) if hit}
    return [c for c in frame.columns if c in flagged]
