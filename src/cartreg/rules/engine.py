"""Run data-quality rules over the CDM tables.

Every rule yields violated rows, a denominator, a percent and a status in the fixed priority
ERROR > NOT_APPLICABLE > FAILED > PASSED against its threshold (overridable per site). The
status is computed per site, then for the rule (FAILED if any site failed). Rules are collected
in a few polars batches; per-site counting, waivers and findings are vectorized.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.cdm import CDM, load_cdm
from cartreg.exprs import format_text
from cartreg.findings import SEVERITY_ORDER, empty_findings, findings_frame, sort_findings
from cartreg.progress import OnStep, Step
from cartreg.rules.checks import REGISTRY, VIOLATION_COLUMNS, CheckContext, CheckOutput
from cartreg.rules.checks.base import SEVERITY, Rows, per_site
from cartreg.rules.frames import conform
from cartreg.rules.model import Rule, load_rules
from cartreg.rules.overrides import Override, check_rule_ids
from cartreg.rules.waivers import Waiver, WaiverLookup, waiver_frame

STATUSES = ("ERROR", "NOT_APPLICABLE", "FAILED", "PASSED")

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "rule_id": pl.String(),
    "name": pl.String(),
    "category": pl.String(),
    "subcategory": pl.String(),
    "severity": pl.String(),
    "status": pl.String(),
    "num_violated": pl.Int64(),
    "num_waived": pl.Int64(),
    "num_denominator": pl.Int64(),
    "pct_violated": pl.Float64(),
    "threshold_pct": pl.Float64(),
    "not_applicable_reason": pl.String(),
    "error": pl.String(),
}
SITE_RESULT_SCHEMA: dict[str, pl.DataType] = {
    "rule_id": pl.String(),
    "site_id": pl.String(),
    "status": pl.String(),
    "num_violated": pl.Int64(),
    "num_waived": pl.Int64(),
    "num_denominator": pl.Int64(),
    "pct_violated": pl.Float64(),
    "threshold_pct": pl.Float64(),
}
_WAIVED_EXTRA = ("justification", "expires")
PATIENT_KEY = "patient_key"


@dataclass(frozen=True)
class RuleRun:
    """The outcome of running rules: one result row per rule, per (rule, site), and findings."""

    results: pl.DataFrame
    site_results: pl.DataFrame
    findings: pl.DataFrame
    waived: pl.DataFrame
    rules: tuple[Rule, ...]
    expired_waivers: tuple[Waiver, ...] = field(default=())


def _identifiers(cdm: CDM) -> frozenset[str]:
    return frozenset(
        f"{t.name}.{c.name}" for t in cdm.tables.values() for c in t.columns if c.identifier
    )


def _not_applicable(
    rule: Rule, present: Mapping[str, set[str]], heights: Mapping[str, int]
) -> str | None:
    for table, columns in rule.requires.items():
        if table not in present:
            return f"table {table} was not provided"
        # An empty related table is data (e.g. no assessments at all); only an empty primary
        # table leaves nothing to count.
        if table == rule.primary_table and heights.get(table, 0) == 0:
            return f"table {table} has no rows"
        missing = [c for c in columns if c not in present[table]]
        if missing:
            return f"column {table}.{missing[0]} was not provided"
    return None


def _result_row(
    rule: Rule, status: str, *, reason: str | None = None, error: str | None = None
) -> dict[str, Any]:
    return {
        "rule_id": rule.id,
        "name": rule.name,
        "category": rule.category,
        "subcategory": rule.subcategory,
        "severity": rule.severity,
        "status": status,
        "num_violated": 0,
        "num_waived": 0,
        "num_denominator": 0,
        "pct_violated": None,
        "threshold_pct": rule.threshold_pct,
        "not_applicable_reason": reason,
        "error": error,
    }


# Rules collected together. One batch of all rules keeps every rule's intermediate frames (and
# the shared sub-plans polars caches) alive at once: at 10 M event rows that was ~1.7 GB more
# peak memory than batches of this size, which were not slower at 1 M rows.
BATCH_RULES = 20


def _count_rows(
    counted: Mapping[str, Rows], tables: Mapping[str, pl.LazyFrame]
) -> tuple[list[pl.DataFrame], set[str]]:
    """Per-site counts of the rules' :class:`Rows` denominators, one pass over each table.

    One grouping per rule was ~0.3 s of ~80 rules at 1 M rows; here each table is grouped once,
    with a sum of every rule's mask. Returns the counts (``site_id``, ``n``, ``rule_id``) and
    the rules counted. A table whose pass fails is left out: its rules are then counted one by
    one, which tells the rule that broke.
    """
    by_table: dict[str, list[str]] = {}
    for rid, rows in counted.items():
        by_table.setdefault(rows.table, []).append(rid)
    plans = {
        table: tables[table]
        .select(pl.col("site_id"), *[counted[rid].mask.alias(rid) for rid in rids])
        .group_by("site_id")
        .agg(pl.col(rids).sum())
        for table, rids in by_table.items()
    }
    try:
        wide = dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))
    except Exception:
        wide = {}
        for table, plan in plans.items():
            try:
                wide[table] = plan.collect()
            except Exception:
                continue
    counts = [
        frame.with_columns(pl.col("site_id").cast(pl.String))
        .unpivot(index="site_id", variable_name="rule_id", value_name="n")
        # As per_site counts: sites with no row in scope are not listed.
        .filter(pl.col("n") > 0)
        .select("site_id", pl.col("n").cast(pl.Int64), "rule_id")
        for frame in wide.values()
    ]
    return counts, {rid for table in wide for rid in by_table[table]}


def _denominator_frame(output: CheckOutput, tables: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    found = output.denominator
    return per_site(found.frame(CheckContext(tables))) if isinstance(found, Rows) else found


def _collect(
    outputs: dict[str, CheckOutput],
    tables: Mapping[str, pl.LazyFrame],
    on_batch: Callable[[list[str]], None] | None = None,
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, dict[str, str]]:
    """Collect the rules in batches; when a batch fails, per rule to tell which one broke.

    Returns each rule's violations, the denominators of all (``site_id``, ``n``, ``rule_id``)
    and the errors. ``on_batch`` hears of the ids of each batch collected."""
    rows = {rid: o.denominator for rid, o in outputs.items() if isinstance(o.denominator, Rows)}
    denominators, counted = _count_rows(rows, tables)

    def frames_of(rid: str) -> list[pl.LazyFrame]:
        if rid in counted:
            return [outputs[rid].violations]
        return [outputs[rid].violations, _denominator_frame(outputs[rid], tables)]

    def keep(rid: str, done: list[pl.DataFrame]) -> None:
        violations[rid] = done[0]
        if rid not in counted:
            denominators.append(done[1].with_columns(pl.lit(rid).alias("rule_id")))

    ids = list(outputs)
    violations: dict[str, pl.DataFrame] = {}
    errors: dict[str, str] = {}
    for start in range(0, len(ids), BATCH_RULES):
        batch = ids[start : start + BATCH_RULES]
        frames = {rid: frames_of(rid) for rid in batch}
        try:
            done = iter(pl.collect_all([f for rid in batch for f in frames[rid]]))
        except Exception:
            for rid in batch:
                try:
                    keep(rid, pl.collect_all(frames[rid]))
                except Exception as exc:
                    errors[rid] = _first_line(exc)
        else:
            for rid in batch:
                keep(rid, [next(done) for _ in frames[rid]])
        if on_batch is not None:
            on_batch(batch)
    d_schema = {"site_id": pl.String(), "n": pl.Int64(), "rule_id": pl.String()}
    stacked = (
        pl.concat([d.select(list(d_schema)) for d in denominators], how="vertical_relaxed")
        .cast(pl.Schema(d_schema))
        # A rule that broke has no denominator, as if it had not run.
        .filter(~pl.col("rule_id").is_in(list(errors)))
        if denominators
        else pl.DataFrame(schema=d_schema)
    )
    return violations, stacked, errors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


@dataclass(frozen=True)
class PreparedTables:
    """CDM tables ready for the rules: conformed and collected once (keys as categoricals),
    with the columns each table was given and its row count."""

    frames: dict[str, pl.LazyFrame]
    present: dict[str, set[str]]
    heights: dict[str, int]


def prepare_tables(tables: Mapping[str, pl.DataFrame | pl.LazyFrame], cdm: CDM) -> PreparedTables:
    """Conform the CDM tables given and collect them once (``patient_key`` as a categorical)."""
    known = {name: frame for name, frame in tables.items() if name in cdm.tables}
    present = {name: set(frame.lazy().collect_schema().names()) for name, frame in known.items()}
    lazies = {name: conform(frame, name, cdm) for name, frame in known.items()}
    # Absent tables still get an empty, typed frame so that joins in any rule resolve.
    for name in cdm.tables:
        if name not in lazies:
            lazies[name] = conform(pl.DataFrame(), name, cdm).filter(pl.lit(False))
    # Most rules join tables on the patient key: as a categorical (one global dictionary) those
    # joins hash integers instead of strings. Cast once here, not in every rule's plan.
    done = pl.collect_all([_categorical_keys(lf) for lf in lazies.values()])
    lazies = {name: frame.lazy() for name, frame in zip(lazies, done, strict=True)}
    heights = {name: frame.height for name, frame in zip(lazies, done, strict=True)}
    return PreparedTables(lazies, present, heights)


def _categorical_keys(lf: pl.LazyFrame) -> pl.LazyFrame:
    # site_id too: every rule counts its denominator per site (per_site), a grouping that
    # hashes integers on a categorical and every row's text on a string.
    schema = lf.collect_schema()
    keys = [k for k in (PATIENT_KEY, "site_id") if schema.get(k) == pl.String]
    return lf.with_columns(pl.col(k).cast(pl.Categorical()) for k in keys) if keys else lf


def run_rules(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame] | PreparedTables,
    *,
    rules: Sequence[Rule] | None = None,
    cdm: CDM | None = None,
    overrides: Sequence[Override] | None = None,
    waivers: Sequence[Waiver] | None = None,
    as_of: dt.date | None = None,
    rules_dir: Path | str | None = None,
    waive: WaiverLookup | None = None,
    on_step: OnStep | None = None,
) -> RuleRun:
    """Run ``rules`` (default: the bundled catalog) over CDM ``tables`` (name -> frame, or
    as :func:`prepare_tables` made them ready).

    ``as_of`` is the day waiver expiry is judged against (default: the day of the call);
    ``waive`` picks further findings to waive once they are known (waived registry queries).
    ``on_step`` hears of the rules done (stage ``rules``; rules that cannot apply count at once).
    """
    cdm = cdm or load_cdm()
    rule_list = tuple(rules) if rules is not None else load_rules(rules_dir, cdm=cdm)
    check_rule_ids(overrides or (), (r.id for r in rule_list))
    ready = tables if isinstance(tables, PreparedTables) else prepare_tables(tables, cdm)
    lazies, present, heights = ready.frames, ready.present, ready.heights
    ctx = CheckContext(lazies, _identifiers(cdm))

    fixed: dict[str, dict[str, Any]] = {}
    outputs: dict[str, CheckOutput] = {}
    for rule in rule_list:
        reason = _not_applicable(rule, present, heights)
        if reason:
            fixed[rule.id] = _result_row(rule, "NOT_APPLICABLE", reason=reason)
            continue
        try:
            outputs[rule.id] = REGISTRY[rule.check_type].build(ctx, rule.params)
        except Exception as exc:
            fixed[rule.id] = _result_row(rule, "ERROR", error=_first_line(exc))
    done = len(rule_list) - len(outputs)

    def on_batch(batch: list[str]) -> None:
        nonlocal done
        done += len(batch)
        if on_step is not None:
            on_step(Step("rules", done, len(rule_list), batch[-1]))

    if on_step is not None and done:
        on_step(Step("rules", done, len(rule_list)))
    collected, denominators, errors = _collect(outputs, lazies, on_batch)
    by_id = {r.id: r for r in rule_list}
    for rid, message in errors.items():
        fixed[rid] = _result_row(by_id[rid], "ERROR", error=message)

    violations = _stack(collected, by_id)
    today = as_of or dt.date.today()
    active = [w for w in waivers or () if w.active(today)]
    expired = tuple(w for w in waivers or () if not w.active(today))
    findings = _to_findings(violations)
    findings, waived = _apply_waivers(findings, active, waive)

    site_results = _site_results(findings, waived, denominators, by_id, overrides or ())
    results = _rule_results(site_results, collected, fixed, rule_list)
    failed_sites = site_results.filter(pl.col("status") == "FAILED").select("rule_id", "site_id")
    reported = findings.join(failed_sites, on=["rule_id", "site_id"], how="semi", nulls_equal=True)
    return RuleRun(
        results=results,
        site_results=site_results,
        findings=sort_findings(reported),
        waived=waived,
        rules=rule_list,
        expired_waivers=expired,
    )


def _stack(collected: Mapping[str, pl.DataFrame], by_id: Mapping[str, Rule]) -> pl.DataFrame:
    """The violations of all rules in one frame, with each rule's id, name and category."""
    v_parts: list[pl.DataFrame] = []
    for rid, v in collected.items():
        rule = by_id[rid]
        if v.height:
            # A check may lower the severity of rows it cannot decide (never raise it).
            severity = pl.lit(rule.severity)
            if SEVERITY in v.columns:
                rank = pl.col(SEVERITY).replace_strict(SEVERITY_ORDER, default=None)
                lower = rank > SEVERITY_ORDER[rule.severity]
                severity = (
                    pl.when(lower.fill_null(False)).then(pl.col(SEVERITY)).otherwise(severity)
                )
            v_parts.append(
                v.select(*VIOLATION_COLUMNS, severity.alias(SEVERITY)).with_columns(
                    pl.lit(rid).alias("rule_id"),
                    pl.lit(rule.category).alias("category"),
                    pl.lit(
                        None if rule.subcategory == "none" else rule.subcategory, dtype=pl.String
                    ).alias("subcategory"),
                    pl.lit(rule.name).alias("__name"),
                )
            )
    v_schema = {
        **{c: pl.String() for c in VIOLATION_COLUMNS},
        "source_row": pl.Int64(),
        "rule_id": pl.String(),
        "severity": pl.String(),
        "category": pl.String(),
        "subcategory": pl.String(),
        "__name": pl.String(),
    }
    return pl.concat(v_parts, how="vertical_relaxed") if v_parts else pl.DataFrame(schema=v_schema)


def _to_findings(violations: pl.DataFrame) -> pl.DataFrame:
    if violations.height == 0:
        return empty_findings()
    message = (
        pl.when(pl.col("detail").is_not_null())
        .then(format_text("{}: {}", pl.col("__name"), pl.col("detail")))
        .otherwise(pl.col("__name"))
    )
    frame = violations.with_columns(message.alias("message")).drop("detail", "__name")
    frame = frame.with_columns(
        pl.when(pl.col("column") == "").then(None).otherwise(pl.col("column")).alias("column")
    )
    return findings_frame(frame)


def _apply_waivers(
    findings: pl.DataFrame, active: Sequence[Waiver], waive: WaiverLookup | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    listed = waiver_frame(active)
    parts = [listed]
    if waive is not None and findings.height:
        parts.append(waive(findings).select(listed.columns).cast(pl.Schema(listed.schema)))
    table = pl.concat(parts).unique("finding_id", keep="first")
    waived = findings.join(table, on="finding_id", how="inner")
    kept = findings.join(table, on="finding_id", how="anti")
    return kept, waived


def _site_results(
    findings: pl.DataFrame,
    waived: pl.DataFrame,
    denominators: pl.DataFrame,
    by_id: Mapping[str, Rule],
    overrides: Sequence[Override],
) -> pl.DataFrame:
    if denominators.height == 0:
        return pl.DataFrame(schema=SITE_RESULT_SCHEMA)
    keys = ["rule_id", "site_id"]
    v = findings.group_by(keys).agg(pl.len().cast(pl.Int64).alias("num_violated"))
    w = waived.group_by(keys).agg(pl.len().cast(pl.Int64).alias("num_waived"))
    defaults = pl.DataFrame(
        {"rule_id": list(by_id), "__default": [r.threshold_pct for r in by_id.values()]},
        schema={"rule_id": pl.String, "__default": pl.Float64},
    )
    site_over = pl.DataFrame(
        {
            "rule_id": [o.rule_id for o in overrides],
            "site_id": [o.site_id for o in overrides],
            "__override": [o.threshold_pct for o in overrides],
        },
        schema={"rule_id": pl.String, "site_id": pl.String, "__override": pl.Float64},
    ).unique(keys, keep="last")
    d = denominators.group_by(keys).agg(pl.col("n").sum().alias("num_denominator"))
    frame = (
        d.join(v, on=keys, how="full", coalesce=True, nulls_equal=True)
        .join(w, on=keys, how="left", nulls_equal=True)
        .join(defaults, on="rule_id", how="left")
        .join(site_over, on=keys, how="left", nulls_equal=True)
        .with_columns(
            pl.col("num_denominator").fill_null(0),
            pl.col("num_violated").fill_null(0),
            pl.col("num_waived").fill_null(0),
            pl.coalesce("__override", "__default").alias("threshold_pct"),
        )
    )
    pct = pl.when(pl.col("num_denominator") > 0).then(
        100.0 * pl.col("num_violated") / pl.col("num_denominator")
    )
    frame = frame.with_columns(pct.alias("pct_violated")).with_columns(
        pl.when(pl.col("num_denominator") == 0)
        .then(pl.lit("NOT_APPLICABLE"))
        .when(pl.col("pct_violated") > pl.col("threshold_pct"))
        .then(pl.lit("FAILED"))
        .otherwise(pl.lit("PASSED"))
        .alias("status")
    )
    return (
        frame.select(list(SITE_RESULT_SCHEMA))
        .cast(pl.Schema(SITE_RESULT_SCHEMA))
        .sort(keys, nulls_last=True)
    )


def _rule_results(
    site_results: pl.DataFrame,
    collected: Mapping[str, Any],
    fixed: Mapping[str, dict[str, Any]],
    rules: Sequence[Rule],
) -> pl.DataFrame:
    sums = {
        row["rule_id"]: row
        for row in site_results.group_by("rule_id")
        .agg(
            pl.col("num_violated").sum(),
            pl.col("num_waived").sum(),
            pl.col("num_denominator").sum(),
            (pl.col("status") == "FAILED").any().alias("__failed"),
        )
        .iter_rows(named=True)  # one row per rule, not per data row
    }
    rows: list[dict[str, Any]] = []
    for rule in rules:
        if rule.id in fixed:
            rows.append(fixed[rule.id])
            continue
        row = _result_row(rule, "PASSED")
        agg = sums.get(rule.id)
        if agg is None or agg["num_denominator"] == 0:
            row.update(
                status="NOT_APPLICABLE", not_applicable_reason="no rows to which the rule applies"
            )
            if agg is not None:
                row.update(num_violated=agg["num_violated"], num_waived=agg["num_waived"])
        else:
            row.update(
                num_violated=agg["num_violated"],
                num_waived=agg["num_waived"],
                num_denominator=agg["num_denominator"],
                pct_violated=100.0 * agg["num_violated"] / agg["num_denominator"],
                status="FAILED" if agg["__failed"] else "PASSED",
            )
        rows.append(row)
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)
