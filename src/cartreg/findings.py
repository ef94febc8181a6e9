"""The finding record: every stage reports problems in this one shape.

Field names are fixed (later tools and the JSON report read them); see docs/findings.md.
Findings are held in a polars DataFrame so that a million of them cost no Python loop; the
:class:`Finding` dataclass is the same record for code that builds or reads them one at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import polars as pl

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
MASK = "***"

FINDING_FIELDS: tuple[str, ...] = (
    "finding_id",
    "rule_id",
    "severity",
    "category",
    "subcategory",
    "table",
    "column",
    "site_id",
    "source_file",
    "source_row",
    "value",
    "message",
)
# Fields that identify *where* a finding is; the finding id is derived from them alone, so it is
# stable across runs and survives a change of message wording or of the offending value.
_ID_FIELDS = ("rule_id", "site_id", "table", "column", "source_file", "source_row")


@dataclass(frozen=True)
class Finding:
    """One problem found in the data, located down to file and row where it has a location."""

    rule_id: str
    severity: Severity
    category: str
    message: str
    subcategory: str | None = None
    table: str | None = None
    column: str | None = None
    site_id: str | None = None
    source_file: str | None = None
    source_row: int | None = None
    value: str | None = None
    finding_id: str = ""

    def __post_init__(self) -> None:
        if not self.finding_id:
            parts = [getattr(self, f) for f in _ID_FIELDS]
            object.__setattr__(self, "finding_id", finding_id(*parts))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {name: data[name] for name in FINDING_FIELDS}


_ID_SEPARATOR = "\x1f"


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def finding_id(*parts: object) -> str:
    """Stable 16-hex-digit id of a finding from its location fields."""
    return _digest(_ID_SEPARATOR.join("" if p is None else str(p) for p in parts))


def finding_schema() -> dict[str, pl.DataType]:
    import polars as pl

    schema: dict[str, pl.DataType] = {name: pl.String() for name in FINDING_FIELDS}
    schema["source_row"] = pl.Int64()
    return schema


def empty_findings() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema=finding_schema())


def findings_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Complete a frame of findings: add missing fields as nulls, compute ids, fix the order.

    ``frame`` needs at least rule_id, severity, category and message.
    """
    import polars as pl

    schema = finding_schema()
    missing = [
        pl.lit(None, dtype=schema[n]).alias(n) for n in FINDING_FIELDS if n not in frame.columns
    ]
    frame = frame.with_columns(missing).select([pl.col(n).cast(schema[n]) for n in FINDING_FIELDS])
    if frame.height == 0:
        return frame
    # The key text is built by polars; only the hash itself runs per finding (not per data row).
    keys = frame.select(
        pl.concat_str(
            [pl.col(n).cast(pl.String).fill_null("") for n in _ID_FIELDS], separator=_ID_SEPARATOR
        )
    ).to_series()
    ids = [_digest(key) for key in keys.to_list()]
    return frame.with_columns(pl.Series("finding_id", ids, dtype=pl.String))


def rule_columns(rule_id: str, severity: Severity, category: str, **fixed: str) -> list[pl.Expr]:
    """The literal fields shared by every finding of one rule: ``rule_id``, ``severity``,
    ``category`` and any other field given (e.g. ``table="patients"``); the rest of a finding
    comes from the frame, or is null (:func:`findings_frame`)."""
    import polars as pl

    values = {"rule_id": rule_id, "severity": severity, "category": category, **fixed}
    return [pl.lit(v, dtype=pl.String).alias(k) for k, v in values.items()]


def from_records(findings: list[Finding]) -> pl.DataFrame:
    import polars as pl

    if not findings:
        return empty_findings()
    return pl.DataFrame([f.to_dict() for f in findings], schema=finding_schema())


def to_records(frame: pl.DataFrame) -> list[Finding]:
    return [Finding(**row) for row in frame.iter_rows(named=True)]


def sort_findings(frame: pl.DataFrame) -> pl.DataFrame:
    """Deterministic order: severity, then location, then rule."""
    import polars as pl

    return frame.sort(
        [
            pl.col("severity").replace_strict(SEVERITY_ORDER, default=9, return_dtype=pl.Int8),
            "site_id",
            "table",
            "source_file",
            "source_row",
            "column",
            "rule_id",
        ],
        nulls_last=True,
        maintain_order=True,
    )
