"""Validate frames against the CDM and report findings (never raise on bad data).

Steps per table: report missing/unknown columns; convert each column to its CDM dtype
explicitly (polars 2 cannot cast strings to dates, and a failed conversion must be a finding with
its row, not a crash); then run the pandera schema on the *eager* frame (a LazyFrame would be
checked for schema only) and translate pandera's failure cases into findings located by the
lineage columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pandera.errors
import polars as pl
from pandera.backends.polars.register import register_polars_backends

from cartreg.cdm.model import CDM, ColumnSpec, TableSpec, load_cdm
from cartreg.cdm.schema import CHECK_RULES, build_schema, polars_dtype
from cartreg.errors import InputError
from cartreg.exprs import format_text
from cartreg.findings import MASK, empty_findings, findings_frame, sort_findings
from cartreg.progress import OnStep, Step

# pandera registers its polars checks at the first validate, and imports its data-synthesis
# strategies there (with hypothesis, when installed: ~0.2 s). Registered when this module is
# imported, that import is paid with cartreg's others, not inside the first validation.
register_polars_backends()

_ROW = "__cartreg_row"  # position of a row in the frame handed to pandera
_THREADS = 4  # tables validated at once
_CATEGORIES: dict[str, tuple[str, str]] = {
    "CDM-DTYPE": ("conformance", "value"),
    "CDM-REQUIRED": ("conformance", "relational"),
    "CDM-VOCAB": ("conformance", "value"),
    "CDM-RANGE": ("plausibility", "atemporal"),
    "CDM-PATTERN": ("conformance", "value"),
    "CDM-UNIQUE": ("conformance", "relational"),
    "CDM-COLUMN-MISSING": ("conformance", "relational"),
    "CDM-COLUMN-UNKNOWN": ("conformance", "relational"),
}
# A failing cell or row as the validator handles it, from pandera's failure cases or its own.
_CASE_SCHEMA: dict[str, pl.DataType] = {
    "rule_id": pl.String(),
    "column": pl.String(),
    "failure_case": pl.String(),
    _ROW: pl.Int64(),
    "table": pl.String(),
    "site_id": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
}
_TRUE = ["true", "t", "1", "yes", "y"]
_FALSE = ["false", "f", "0", "no", "n"]


def _convert_expr(col: ColumnSpec, dtype: pl.DataType) -> pl.Expr:
    """Expression converting column ``col`` from ``dtype`` to its CDM dtype (failures -> null)."""
    target = polars_dtype(col)
    c = pl.col(col.name)
    if dtype == target:
        return c
    if dtype == pl.String:
        text = c.str.strip_chars()
        text = pl.when(text == "").then(None).otherwise(text)
        if col.dtype == "date":
            return text.str.to_date("%Y-%m-%d", strict=False)
        if col.dtype == "boolean":
            low = text.str.to_lowercase()
            return pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
        if col.dtype == "integer":
            as_float = text.cast(pl.Float64, strict=False)
            integral = as_float.is_not_null() & (as_float == as_float.round(0))
            return pl.when(integral).then(as_float).cast(pl.Int64, strict=False)
        return text.cast(target, strict=False)
    if col.dtype == "date" and isinstance(dtype, pl.Datetime):
        return c.dt.date()
    if col.dtype == "integer" and dtype.is_float():
        return pl.when(c == c.round(0)).then(c).cast(pl.Int64, strict=False)
    return c.cast(target, strict=False)


def _location_columns(frame: pl.DataFrame, table: str) -> list[pl.Expr]:
    def text_or_null(name: str) -> pl.Expr:
        if name in frame.columns:
            return pl.col(name).cast(pl.String)
        return pl.lit(None, dtype=pl.String)

    row = (
        pl.col("source_row").cast(pl.Int64, strict=False)
        if "source_row" in frame.columns
        else pl.lit(None, dtype=pl.Int64)
    )
    return [
        pl.lit(table).alias("table"),
        text_or_null("site_id").alias("site_id"),
        text_or_null("source_file").alias("source_file"),
        row.alias("source_row"),
    ]


def _finding_columns(rule_id: str) -> list[pl.Expr]:
    category, subcategory = _CATEGORIES[rule_id]
    return [
        pl.lit(rule_id).alias("rule_id"),
        pl.lit("error").alias("severity"),
        pl.lit(category).alias("category"),
        pl.lit(subcategory).alias("subcategory"),
    ]


def _table_level(
    rule_id: str, table: str, column: str, message: str, severity: str
) -> pl.DataFrame:
    category, subcategory = _CATEGORIES[rule_id]
    return pl.DataFrame(
        {
            "rule_id": [rule_id],
            "severity": [severity],
            "category": [category],
            "subcategory": [subcategory],
            "table": [table],
            "column": [column],
            "message": [message],
        }
    )


def _masked_value(spec: TableSpec, column: pl.Expr, value: pl.Expr) -> pl.Expr:
    identifiers = [c.name for c in spec.columns if c.identifier]
    if not identifiers:
        return value
    return pl.when(column.is_in(identifiers)).then(pl.lit(MASK)).otherwise(value)


def _convert(
    frame: pl.DataFrame, spec: TableSpec
) -> tuple[pl.DataFrame, pl.DataFrame, set[tuple[str, int]]]:
    """Convert every CDM column to its dtype; return the typed frame, dtype findings, bad cells."""
    exprs = [_convert_expr(c, frame.schema[c.name]).alias(c.name) for c in spec.columns]
    typed = frame.with_columns(exprs)
    failures: list[pl.DataFrame] = []
    for col in spec.columns:
        if frame.schema[col.name] == polars_dtype(col):
            continue
        raw = pl.col(col.name).cast(pl.String).str.strip_chars()
        failed = frame.with_columns(_converted=typed[col.name]).filter(
            raw.is_not_null() & (raw != "") & pl.col("_converted").is_null()
        )
        if failed.height == 0:
            continue
        value = raw if not col.identifier else pl.lit(MASK)
        failures.append(
            failed.select(
                *_finding_columns("CDM-DTYPE"),
                *_location_columns(frame, spec.name),
                pl.lit(col.name).alias("column"),
                value.alias("value"),
                pl.col(_ROW),
                format_text(
                    "'{}' is not a valid {} for column {}{}",
                    value,
                    pl.lit(col.dtype),
                    pl.lit(col.name),
                    pl.lit(" (expected YYYY-MM-DD)" if col.dtype == "date" else ""),
                ).alias("message"),
            )
        )
    if not failures:
        return typed, empty_findings(), set()
    found = pl.concat(failures, how="vertical_relaxed")
    bad_cells = set(zip(found["column"].to_list(), found[_ROW].to_list(), strict=True))
    return typed, found.drop(_ROW), bad_cells


def _duplicate_keys(typed: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """CDM-UNIQUE cases: every row repeating the non-null primary key of an earlier row (the
    first occurrence is the original); a null key is a CDM-REQUIRED finding instead.

    Checked here rather than by pandera: pandera flags every copy of a duplicated key through a
    slower path, and only later copies are findings anyway.
    """
    keys = list(spec.primary_key)
    if not keys:
        return pl.DataFrame(schema=_CASE_SCHEMA)
    # Distinct 64-bit hashes prove distinct keys (the usual case, and the cheapest test); else a
    # repeated hash is a first pass, and the exact rank then drops hash collisions.
    key_hash = (pl.struct(keys) if len(keys) > 1 else pl.col(keys[0])).hash()
    complete = pl.all_horizontal(pl.col(keys).is_not_null())
    rows, hashes = (
        typed.lazy()
        .select(complete.sum().alias("rows"), key_hash.filter(complete).n_unique().alias("hashes"))
        .collect()
        .row(0)
    )
    if rows == hashes:
        return pl.DataFrame(schema=_CASE_SCHEMA)
    # Only the key and lineage columns are carried (a filter of the whole frame copies it).
    lineage = [c for c in ("site_id", "source_file", "source_row") if c in typed.columns]
    scope = typed.lazy().select(_ROW, *dict.fromkeys([*keys, *lineage])).filter(complete)
    repeated = scope.filter(key_hash.is_duplicated())
    later = repeated.filter(pl.int_range(pl.len()).over(keys) > 0).collect()
    return later.select(
        pl.col(_ROW),
        *_location_columns(later, spec.name),
        pl.lit("CDM-UNIQUE").alias("rule_id"),
        pl.lit(",".join(keys)).alias("column"),
        pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="|").alias(
            "failure_case"
        ),
    )


def _pandera_findings(
    typed: pl.DataFrame,
    spec: TableSpec,
    cdm: CDM,
    skip_cells: set[tuple[str, int]],
    skip_columns: set[str],
) -> pl.DataFrame:
    schema = build_schema(spec, cdm, keys=False)
    cases: pl.DataFrame | None = None
    try:
        schema.validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as err:
        if isinstance(err.failure_cases, pl.DataFrame):
            cases = err.failure_cases
    parts: list[pl.DataFrame] = []
    if cases is not None and cases.height:
        check_name = pl.col("check").str.extract(r"^([a-z_]+)", 1)
        cases = cases.with_columns(rule_id=check_name.replace_strict(CHECK_RULES, default=None))
        cases = cases.filter(pl.col("index").is_not_null() & pl.col("rule_id").is_not_null())
        rows = typed.select(pl.col(_ROW), *_location_columns(typed, spec.name))
        joined = cases.join(rows, left_on=pl.col("index").cast(pl.Int64), right_on=_ROW, how="left")
        parts.append(joined.with_columns(pl.col("index").cast(pl.Int64).alias(_ROW)))
    parts.append(_duplicate_keys(typed, spec))
    parts = [p.select(list(_CASE_SCHEMA)).cast(pl.Schema(_CASE_SCHEMA)) for p in parts if p.height]
    if not parts:
        return empty_findings()
    joined = pl.concat(parts, how="vertical")

    if skip_cells or skip_columns:
        skip = pl.DataFrame(
            {"column": [c for c, _ in skip_cells], _ROW: [r for _, r in skip_cells]},
            schema={"column": pl.String, _ROW: pl.Int64},
        )
        required = joined.filter(pl.col("rule_id") == "CDM-REQUIRED")
        required = required.join(skip, on=["column", _ROW], how="anti").filter(
            ~pl.col("column").is_in(list(skip_columns))
        )
        joined = pl.concat(
            [joined.filter(pl.col("rule_id") != "CDM-REQUIRED"), required], how="vertical_relaxed"
        )

    value = _masked_value(spec, pl.col("column"), pl.col("failure_case"))
    vocab_of = {c.name: c.vocabulary for c in spec.columns if c.vocabulary}
    ranges = {c.name: c.range_text for c in spec.columns if c.range_text}
    patterns = {c.name: c.pattern for c in spec.columns if c.pattern}
    rule = pl.col("rule_id")
    column = pl.col("column")
    message = (
        pl.when(rule == "CDM-REQUIRED")
        .then(format_text("required column {} is empty", column))
        .when(rule == "CDM-VOCAB")
        .then(
            format_text(
                "'{}' is not a term of vocabulary {}",
                value,
                column.replace_strict(vocab_of, default="?", return_dtype=pl.String),
            )
        )
        .when(rule == "CDM-RANGE")
        .then(
            format_text(
                "{} = {} is outside its allowed range {}",
                column,
                value,
                column.replace_strict(ranges, default="?", return_dtype=pl.String),
            )
        )
        .when(rule == "CDM-PATTERN")
        .then(
            format_text(
                "'{}' does not match the pattern {} of {}",
                value,
                column.replace_strict(patterns, default="?", return_dtype=pl.String),
                column,
            )
        )
        .otherwise(format_text("duplicate key ({}) = {}: the key must be unique", column, value))
    )
    categories = {r: f"{c}/{s}" for r, (c, s) in _CATEGORIES.items()}
    cat = rule.replace_strict(categories, default="conformance/value", return_dtype=pl.String)
    return joined.select(
        rule.alias("rule_id"),
        pl.lit("error").alias("severity"),
        cat.str.split("/").list.get(0).alias("category"),
        cat.str.split("/").list.get(1).alias("subcategory"),
        "table",
        column.alias("column"),
        "site_id",
        "source_file",
        "source_row",
        pl.when(rule == "CDM-REQUIRED").then(None).otherwise(value).alias("value"),
        message.alias("message"),
    )


def validate_table(
    name: str, frame: pl.DataFrame | pl.LazyFrame, *, cdm: CDM | None = None
) -> pl.DataFrame:
    """Check one frame against CDM table ``name``; returns a frame of finding records.

    Data problems never raise. A LazyFrame is collected first, so data checks always run.
    """
    cdm = cdm or load_cdm()
    spec = cdm.table(name)
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    parts: list[pl.DataFrame] = []

    declared = set(spec.column_names)
    for extra in [c for c in frame.columns if c not in declared]:
        parts.append(
            _table_level(
                "CDM-COLUMN-UNKNOWN",
                name,
                extra,
                f"column {extra} is not part of CDM table {name} and was ignored",
                "warning",
            )
        )
    missing = [c for c in spec.columns if c.name not in frame.columns]
    for col in missing:
        severity = "error" if col.required else "info"
        parts.append(
            _table_level(
                "CDM-COLUMN-MISSING",
                name,
                col.name,
                f"{'required' if col.required else 'optional'} column {col.name} is missing",
                severity,
            )
        )
    frame = frame.select([c for c in frame.columns if c in declared]).with_columns(
        [pl.lit(None, dtype=polars_dtype(c)).alias(c.name) for c in missing]
    )
    frame = frame.with_row_index(_ROW).with_columns(pl.col(_ROW).cast(pl.Int64))

    typed, dtype_findings, bad_cells = _convert(frame, spec)
    parts.append(dtype_findings)
    parts.append(
        _pandera_findings(typed, spec, cdm, bad_cells, {c.name for c in missing if c.required})
    )
    parts = [p for p in parts if p.height]
    if not parts:
        return empty_findings()
    found = pl.concat([findings_frame(p) for p in parts], how="vertical_relaxed")
    return sort_findings(found)


def read_table_file(path: Path) -> pl.DataFrame:
    """Read a harmonized table from Parquet or CSV (CSV as text, converted by the validator)."""
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    except (OSError, pl.exceptions.PolarsError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read table: {first}", where=str(path)) from None


def find_table_files(folder: Path, cdm: CDM) -> dict[str, Path]:
    """The CDM tables present in a folder (``<table>.parquet`` preferred over ``<table>.csv``)."""
    if not folder.is_dir():
        raise InputError(
            "folder not found",
            where=str(folder),
            hint="give a folder of <table>.parquet or .csv files",
        )
    found: dict[str, Path] = {}
    for name in cdm.tables:
        for suffix in (".parquet", ".csv"):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                found[name] = candidate
                break
    if not found:
        raise InputError(
            "no CDM table files found",
            where=str(folder),
            hint=f"expected files named like {next(iter(cdm.tables))}.parquet or .csv",
        )
    return found


def validate_tables(
    tables: Path | str | Mapping[str, pl.DataFrame | pl.LazyFrame],
    *,
    cdm: CDM | None = None,
    on_step: OnStep | None = None,
) -> pl.DataFrame:
    """Validate a folder of table files, or a mapping of table name to frame, against the CDM.

    ``on_step`` hears of each table checked (stage ``schema``)."""
    cdm = cdm or load_cdm()
    if isinstance(tables, str | Path):
        files = find_table_files(Path(tables), cdm)
        frames: Mapping[str, pl.DataFrame | pl.LazyFrame] = {
            name: read_table_file(path) for name, path in files.items()
        }
    else:
        frames = tables
    # Tables are checked side by side: pandera spends much of its time in Python between polars
    # calls, which another table's polars work can fill (~20% off at 1 M rows on 2 cores).
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        jobs = {
            pool.submit(validate_table, name, frame, cdm=cdm): name
            for name, frame in frames.items()
        }
        by_table: dict[str, pl.DataFrame] = {}
        for done, job in enumerate(as_completed(jobs), start=1):
            by_table[jobs[job]] = job.result()
            if on_step is not None:
                on_step(Step("schema", done, len(jobs), jobs[job]))
    results = [by_table[name] for name in frames if by_table[name].height]
    if not results:
        return empty_findings()
    combined: pl.DataFrame = pl.concat(results, how="vertical_relaxed")
    return sort_findings(combined)
