"""Turn CDM table declarations into pandera-polars schemas (the enforcement engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandera.polars as pa
import polars as pl

if TYPE_CHECKING:
    from cartreg.cdm.model import CDM, ColumnSpec, TableSpec

POLARS_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
}

# Check names as they appear in pandera's failure cases, mapped to our rule ids.
CHECK_RULES: dict[str, str] = {
    "not_nullable": "CDM-REQUIRED",
    "isin": "CDM-VOCAB",
    "in_range": "CDM-RANGE",
    "greater_than_or_equal_to": "CDM-RANGE",
    "less_than_or_equal_to": "CDM-RANGE",
    "str_matches": "CDM-PATTERN",
    "multiple_fields_uniqueness": "CDM-UNIQUE",
    "field_uniqueness": "CDM-UNIQUE",
}


def polars_dtype(col: ColumnSpec) -> pl.DataType:
    return POLARS_DTYPES[col.dtype]


def _checks(col: ColumnSpec, cdm: CDM) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if col.vocabulary is not None:
        checks.append(pa.Check.isin(list(cdm.vocabularies[col.vocabulary].codes)))
    if col.min is not None and col.max is not None:
        checks.append(pa.Check.in_range(col.min, col.max))
    elif col.min is not None:
        checks.append(pa.Check.greater_than_or_equal_to(col.min))
    elif col.max is not None:
        checks.append(pa.Check.less_than_or_equal_to(col.max))
    if col.pattern is not None:
        checks.append(pa.Check.str_matches(col.pattern))
    return checks


def build_schema(table: TableSpec, cdm: CDM, *, keys: bool = True) -> pa.DataFrameSchema:
    """A pandera-polars schema enforcing dtype, nullability, vocabularies, ranges, patterns, keys.

    ``keys=False`` leaves out the primary-key uniqueness check (the validator checks keys
    itself, faster). Built once per table and kept on the CDM object.
    """
    cache_key = table.name if keys else f"{table.name}\x1fnokeys"
    cached = cdm.schema_cache.get(cache_key)
    if cached is not None and cached[0] is table:
        hit: pa.DataFrameSchema = cached[1]
        return hit
    columns = {
        col.name: pa.Column(
            polars_dtype(col),
            checks=_checks(col, cdm),
            nullable=not col.required,
            required=True,
            coerce=False,  # polars 2 cannot cast strings to dates: we parse explicitly first
            title=col.name,
            description=col.description,
        )
        for col in table.columns
    }
    schema = pa.DataFrameSchema(
        columns,
        name=table.name,
        unique=(list(table.primary_key) or None) if keys else None,
        strict=False,
        ordered=False,
        description=table.description,
    )
    cdm.schema_cache[cache_key] = (table, schema)
    return schema
