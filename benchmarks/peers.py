"""One set of single-table checks, expressed in every engine we compare with.

The checks are derived from the CDM declaration of one table (not-null, unique key, vocabulary
membership, numeric ranges, patterns), so every engine checks exactly the same things. Each
builder returns a callable that validates an in-memory frame and returns the number of failing
rows it found (so a run that silently checked nothing would show up as 0 where data has defects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from cartreg.cdm import CDM, load_cdm

TABLE = "disease_assessments"


@dataclass(frozen=True)
class Check:
    kind: str  # not_null | unique | in_set | between | regex
    column: str
    values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    pattern: str | None = None


def shared_checks(cdm: CDM | None = None, table: str = TABLE) -> list[Check]:
    """The checks every engine runs: those the CDM declares for ``table``."""
    cdm = cdm or load_cdm()
    spec = cdm.table(table)
    checks: list[Check] = []
    for col in spec.columns:
        if col.required:
            checks.append(Check("not_null", col.name))
        if col.vocabulary:
            codes = cdm.vocabularies[col.vocabulary].codes
            checks.append(Check("in_set", col.name, values=codes))
        if col.min is not None and col.max is not None:
            checks.append(Check("between", col.name, low=col.min, high=col.max))
        if col.pattern:
            checks.append(Check("regex", col.name, pattern=col.pattern))
    checks += [Check("unique", key) for key in spec.primary_key]
    return checks


def inject_defects(frame: pl.DataFrame) -> pl.DataFrame:
    """1% of rows get one defect each (an out-of-range blast count or an unknown response).

    Each defective row fails exactly one check, so every engine should count the same number of
    failures however it counts them (rows, cells or per check).
    """
    row = pl.int_range(pl.len())
    return frame.with_columns(
        pl.when(row % 200 == 0).then(150.0).otherwise(pl.col("bm_blast_pct")).alias("bm_blast_pct"),
        pl.when(row % 200 == 100)
        .then(pl.lit("BOGUS"))
        .otherwise(pl.col("response"))
        .alias("response"),
    )


def pandera_validator(checks: list[Check], frame: pl.DataFrame) -> Callable[[], int]:
    import pandera.polars as pa

    columns: dict[str, Any] = {}
    for name in frame.columns:
        mine = [c for c in checks if c.column == name]
        pa_checks = []
        for c in mine:
            if c.kind == "in_set":
                pa_checks.append(pa.Check.isin(list(c.values)))
            elif c.kind == "between":
                pa_checks.append(pa.Check.in_range(c.low, c.high))
            elif c.kind == "regex":
                pa_checks.append(pa.Check.str_matches(c.pattern))
        columns[name] = pa.Column(
            frame.schema[name],
            checks=pa_checks,
            nullable=not any(c.kind == "not_null" for c in mine),
            unique=any(c.kind == "unique" for c in mine),
        )
    schema = pa.DataFrameSchema(columns)

    def run() -> int:
        try:
            schema.validate(frame, lazy=True)
            return 0
        except pa.errors.SchemaErrors as err:
            return int(err.failure_cases["index"].n_unique())

    return run


def dataframely_validator(checks: list[Check], frame: pl.DataFrame) -> Callable[[], int]:
    import dataframely as dy

    kinds = {
        pl.String: dy.String,
        pl.Float64: dy.Float64,
        pl.Int64: dy.Int64,
        pl.Boolean: dy.Bool,
        pl.Date: dy.Date,
    }
    attrs: dict[str, Any] = {}
    for name in frame.columns:
        mine = [c for c in checks if c.column == name]
        kwargs: dict[str, Any] = {"nullable": not any(c.kind == "not_null" for c in mine)}
        if any(c.kind == "unique" for c in mine):
            kwargs["primary_key"] = True
            kwargs["nullable"] = False
        for c in mine:
            if c.kind == "between":
                kwargs.update(min=c.low, max=c.high)
            elif c.kind == "regex":
                kwargs["regex"] = c.pattern
            elif c.kind == "in_set":
                values = list(c.values)
                kwargs["check"] = lambda col, values=values: col.is_in(values) | col.is_null()
        column_type = kinds.get(type(frame.schema[name]), dy.Any)
        if column_type in (dy.Bool, dy.Date, dy.Any):
            kwargs = {k: v for k, v in kwargs.items() if k in ("nullable", "primary_key", "check")}
        if column_type is dy.Any:
            kwargs = {}
        if column_type is dy.Int64 and "min" in kwargs:
            kwargs["min"], kwargs["max"] = int(kwargs["min"]), int(kwargs["max"])
        attrs[name] = column_type(**kwargs)
    schema = type("BenchSchema", (dy.Schema,), attrs)

    def run() -> int:
        _, failure = schema.filter(frame)
        return len(failure)

    return run


def pointblank_validator(checks: list[Check], frame: pl.DataFrame) -> Callable[[], int]:
    import pointblank as pb

    def run() -> int:
        v = pb.Validate(data=frame)
        for c in checks:
            if c.kind == "not_null":
                v = v.col_vals_not_null(columns=c.column)
            elif c.kind == "in_set":
                v = v.col_vals_in_set(columns=c.column, set=[*c.values, None])
            elif c.kind == "between":
                v = v.col_vals_between(columns=c.column, left=c.low, right=c.high, na_pass=True)
            elif c.kind == "regex":
                v = v.col_vals_regex(columns=c.column, pattern=c.pattern, na_pass=True)
            elif c.kind == "unique":
                v = v.rows_distinct(columns_subset=[c.column])
        v = v.interrogate()
        return int(sum(v.n_failed().values()))

    return run


def gx_validator(checks: list[Check], frame: pl.DataFrame) -> tuple[Callable[[], int], Any]:
    """Great Expectations 1.x on pandas (it cannot validate polars frames)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    pdf = frame.to_pandas()
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("bench")
    asset = source.add_dataframe_asset("table")
    batch_def = asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name="bench"))
    for c in checks:
        if c.kind == "not_null":
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=c.column))
        elif c.kind == "in_set":
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInSet(column=c.column, value_set=list(c.values))
            )
        elif c.kind == "between":
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeBetween(
                    column=c.column, min_value=c.low, max_value=c.high
                )
            )
        elif c.kind == "regex":
            suite.add_expectation(
                gxe.ExpectColumnValuesToMatchRegex(column=c.column, regex=c.pattern)
            )
        elif c.kind == "unique":
            suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=c.column))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="bench", data=batch_def, suite=suite)
    )

    def run() -> int:
        result = definition.run(
            batch_parameters={"dataframe": pdf}, result_format={"result_format": "SUMMARY"}
        )
        return int(sum(r.result.get("unexpected_count", 0) or 0 for r in result.results))

    return run, pdf
