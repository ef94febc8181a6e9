"""Who is analysed: exclusions for unresolved errors and unreviewed duplicates, and the flow.

The analysis never runs silently on data the registry itself has flagged. By default:

* a patient with an unresolved **error** finding on a field an endpoint, the population or
  the time origin depends on (``ENDPOINT_FIELDS``) is excluded;
* an error finding on a field that only feeds a covariate (``COVARIATE_FIELDS``) sets that
  covariate to unknown for the patient (the record is set aside, the patient stays);
* of each group of records linked by **unreviewed** candidate duplicate pairs, one record is
  analysed (``duplicates="one"``): the one with the most clinical rows, then the smallest key;
  ``"stop"`` refuses to run, ``"keep-both"`` analyses every record (explicitly allowed);
* a pair reviewed as the ``same`` patient whose two records are both still present (an
  analysis of unmerged tables) keeps the record the reviewer chose.

Error findings on fields the analysis does not use are counted, not acted on. Findings come
from the data folder's ``findings.json`` (``cartreg registry merge`` and ``cartreg check``
write it); without one the CDM validation and the rule catalogue are run here. Candidate
duplicates come from ``duplicates.csv`` (columns ``key_a``, ``key_b`` and, when reviewed,
``decision`` and ``keep``; other columns are ignored); without one they are searched here.

Every exclusion is listed per patient and counted in a flow table (received, excluded by
reason and site, analysed) that opens the report and ``results.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from cartreg.errors import InputError
from cartreg.exprs import format_text

if TYPE_CHECKING:
    from cartreg.cdm import CDM

DuplicatePolicy = Literal["one", "stop", "keep-both"]
DUPLICATE_POLICIES: tuple[str, ...] = ("one", "stop", "keep-both")
RESOLVED_STATUSES = ("resolved", "waived", "closed")
CLINICAL_TABLES = (
    "disease_assessments",
    "progression_events",
    "salvage_treatments",
    "transplants",
    "follow_up",
)

# Fields that decide the time origin, an event, a censoring day, the population or
# eligibility (adults): an error on one of them excludes the patient.
ENDPOINT_FIELDS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_key", "age_at_index_years", "birth_year", "birth_date"),
    "car_t_infusions": (
        "patient_key",
        "infusion_id",
        "infusion_number",
        "is_index_infusion",
        "infusion_date",
        "infusion_day",
        "infusion_year",
    ),
    "disease_assessments": (
        "patient_key",
        "assessment_date",
        "assessment_day",
        "response",
        "bm_blast_pct",
        "bm_blast_qualifier",
        "emd_present",
    ),
    "progression_events": (
        "patient_key",
        "progression_id",
        "event_seq",
        "event_type",
        "progression_date",
        "progression_day",
        "remission_date",
        "remission_day",
    ),
    "salvage_treatments": (
        "patient_key",
        "progression_id",
        "line_number",
        "start_date",
        "start_day",
        "agent",
        "category",
        "best_response",
    ),
    "transplants": ("patient_key", "hct_date", "hct_day", "hct_type", "intent"),
    "follow_up": (
        "patient_key",
        "data_cut_date",
        "last_contact_date",
        "last_contact_day",
        "vital_status",
        "death_date",
        "death_day",
        "disease_status",
        "disease_status_date",
        "disease_status_day",
    ),
}
# Fields that only feed a covariate: an error sets the covariate to unknown for the patient.
COVARIATE_FIELDS: dict[tuple[str, str], str] = {
    ("car_t_infusions", "disease_burden"): "burden",
    ("car_t_infusions", "pre_bm_blast_pct"): "burden",
    ("car_t_infusions", "pre_bm_blast_qualifier"): "burden",
    ("car_t_infusions", "pre_emd_present"): "burden",
    ("progression_events", "antigen_phenotype"): "cd19_phenotype",
}

_FINDING_COLUMNS: dict[str, pl.DataType] = {
    "finding_id": pl.String(),
    "rule_id": pl.String(),
    "severity": pl.String(),
    "table": pl.String(),
    "column": pl.String(),
    "site_id": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "value": pl.String(),
    "status": pl.String(),
}
EXCLUSION_SCHEMA: dict[str, pl.DataType] = {
    "patient_key": pl.String(),
    "site_id": pl.String(),
    "reason_code": pl.String(),
    "reason": pl.String(),
    "rule_id": pl.String(),
    "table": pl.String(),
    "column": pl.String(),
    "source_row": pl.Int64(),
}
SET_ASIDE_SCHEMA: dict[str, pl.DataType] = {
    "patient_key": pl.String(),
    "site_id": pl.String(),
    "covariate": pl.String(),
    "reason": pl.String(),
}
# order in the flow table (each excluded patient is counted once, under the first reason)
_REASON_ORDER = ("no_index_infusion", "error_finding", "duplicate_same", "duplicate_unreviewed")


@dataclass(frozen=True)
class PopulationPolicy:
    """How the analysis population is chosen (``cartreg analyze --population/--duplicates``)."""

    exclude_error_findings: bool = True
    duplicates: DuplicatePolicy = "one"

    def __post_init__(self) -> None:
        if self.duplicates not in DUPLICATE_POLICIES:
            raise InputError(
                f"unknown duplicate policy '{self.duplicates}'",
                hint=f"one of {', '.join(DUPLICATE_POLICIES)}",
            )


@dataclass(frozen=True)
class ReviewInputs:
    """Findings and candidate duplicate pairs for the tables being analysed."""

    findings: pl.DataFrame
    duplicates: pl.DataFrame
    findings_source: str
    duplicates_source: str


@dataclass
class Population:
    """The analysed tables and the account of who was left out and why."""

    tables: dict[str, pl.DataFrame]
    exclusions: pl.DataFrame
    set_aside: pl.DataFrame
    flow: dict[str, Any] = field(default_factory=dict)

    @property
    def analysed_keys(self) -> list[str]:
        return sorted(self.tables["car_t_infusions"]["patient_key"].unique().to_list())


# -- inputs ----------------------------------------------------------------------------------


def read_review_inputs(
    data_dir: Path, tables: Mapping[str, pl.DataFrame], cdm: CDM
) -> ReviewInputs:
    """Findings and candidate duplicates for the tables of ``data_dir`` (or of the output whose
    ``tables/`` folder was given): a merge output's ``findings.json`` (the CDM checks and every
    rule on the merged tables) and ``duplicates.csv``; otherwise the folder's own
    ``findings.json`` (a check output's holds only the ingest findings) plus the CDM checks and
    rules run here, and the candidate duplicates searched here."""
    if data_dir.name == "tables" and not (data_dir / "findings.json").is_file():
        data_dir = data_dir.parent
    from cartreg.registry.merge import _is_merge_output

    parts: list[pl.DataFrame] = []
    sources: list[str] = []
    findings_path = data_dir / "findings.json"
    if findings_path.is_file():
        parts.append(_read_findings(findings_path))
        sources.append("findings.json")
    if not _is_merge_output(data_dir):
        parts.append(compute_findings(tables, cdm))
        sources.append("CDM checks and rules run on the tables")
    findings = pl.concat(parts, how="vertical")
    # the same finding from both sources counts once
    findings = pl.concat(
        [
            findings.filter(pl.col("finding_id").is_null()),
            findings.filter(pl.col("finding_id").is_not_null()).unique(
                "finding_id", keep="first", maintain_order=True
            ),
        ]
    )
    dup_path = data_dir / "duplicates.csv"
    if dup_path.is_file():
        duplicates, dup_source = _read_duplicates(dup_path), "duplicates.csv"
    else:
        duplicates, dup_source = compute_duplicates(tables), "computed (candidate search)"
    return ReviewInputs(findings, duplicates, " + ".join(sources), dup_source)


def compute_findings(tables: Mapping[str, pl.DataFrame], cdm: CDM) -> pl.DataFrame:
    """CDM and rule findings as ``cartreg registry merge`` computes them (PU-001 left out:
    duplicates are handled from the candidate pairs)."""
    from cartreg.cdm import validate_tables
    from cartreg.rules import run_rules

    parts = [validate_tables(dict(tables), cdm=cdm), run_rules(dict(tables), cdm=cdm).findings]
    frame = pl.concat([_finding_frame(p) for p in parts], how="vertical_relaxed")
    return frame.filter(pl.col("rule_id") != "PU-001")


def compute_duplicates(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    from cartreg.registry import duplicates as dup

    found = dup.find_duplicates(dict(tables))
    return _duplicate_frame(found.select("key_a", "key_b"))


def _finding_frame(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        [
            pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in _FINDING_COLUMNS.items()
        ]
    )


def _read_findings(path: Path) -> pl.DataFrame:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read findings: {exc}", where=str(path)) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(
            "not a list of finding records", where=str(path), hint="see docs/findings.md"
        )
    if not records:
        return pl.DataFrame(schema=_FINDING_COLUMNS)
    rows = [{c: r.get(c) for c in _FINDING_COLUMNS} for r in records]
    return _finding_frame(pl.DataFrame(rows, schema=dict.fromkeys(_FINDING_COLUMNS, pl.String)))


def _read_duplicates(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"cannot read duplicates: {exc}", where=str(path)) from None
    missing = [c for c in ("key_a", "key_b") if c not in frame.columns]
    if missing:
        raise InputError(
            f"no column '{missing[0]}'",
            where=str(path),
            hint="duplicates.csv needs key_a and key_b (and decision, keep when reviewed)",
        )
    return _duplicate_frame(frame)


def _duplicate_frame(frame: pl.DataFrame) -> pl.DataFrame:
    def text(name: str) -> pl.Expr:
        if name not in frame.columns:
            return pl.lit(None, dtype=pl.String).alias(name)
        value = pl.col(name).cast(pl.String).str.strip_chars()
        return pl.when(value == "").then(None).otherwise(value).alias(name)

    return frame.select(
        text("key_a"), text("key_b"), text("decision").str.to_lowercase(), text("keep")
    ).filter(pl.col("key_a").is_not_null() & pl.col("key_b").is_not_null())


# -- selection -------------------------------------------------------------------------------


def _received(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Every patient in the data: patient_key, site_id, infused (has an infusion row)."""
    parts = [
        tables[name].select(
            pl.col("patient_key").cast(pl.String), pl.col("site_id").cast(pl.String)
        )
        for name in ("patients", "car_t_infusions", "follow_up")
        if name in tables and tables[name].height
    ]
    everyone = (
        pl.concat(parts)
        .sort("patient_key", "site_id", nulls_last=True)
        .unique("patient_key", keep="first")
        if parts
        else pl.DataFrame(schema={"patient_key": pl.String, "site_id": pl.String})
    )
    infused = tables["car_t_infusions"].select(pl.col("patient_key").cast(pl.String)).unique()
    return everyone.with_columns(
        infused=pl.col("patient_key").is_in(infused["patient_key"].implode())
    ).sort("patient_key")


def _locate_findings(findings: pl.DataFrame, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Error findings with the patient they concern (null when no row matches)."""
    errors = findings.filter(
        (pl.col("severity") == "error")
        & ~pl.col("status").fill_null("").str.to_lowercase().is_in(list(RESOLVED_STATUSES))
    ).with_row_index("finding")
    rows = []
    for name, frame in tables.items():
        if not {"patient_key", "source_file", "source_row"} <= set(frame.columns):
            continue
        rows.append(
            frame.select(
                pl.lit(name).alias("table"),
                pl.col("site_id").cast(pl.String),
                pl.col("source_file").cast(pl.String),
                pl.col("source_row").cast(pl.Int64),
                pl.col("patient_key").cast(pl.String),
            )
        )
    lineage = (
        pl.concat(rows).unique(["table", "site_id", "source_file", "source_row"], keep="first")
        if rows
        else pl.DataFrame(
            schema={
                "table": pl.String,
                "site_id": pl.String,
                "source_file": pl.String,
                "source_row": pl.Int64,
                "patient_key": pl.String,
            }
        )
    )
    keys = pl.concat(
        [
            f.select(pl.col("patient_key").cast(pl.String))
            for f in tables.values()
            if "patient_key" in f.columns
        ]
    ).unique()
    located = errors.join(
        lineage, on=["table", "site_id", "source_file", "source_row"], how="left", nulls_equal=True
    )
    # a finding about a whole patient (no row) may name the key as its value
    by_value = pl.col("value").is_in(keys["patient_key"].implode())
    return located.with_columns(
        patient_key=pl.coalesce(
            "patient_key", pl.when(by_value).then(pl.col("value")).otherwise(None)
        )
    ).sort("finding")


def _field_kind(table: pl.Expr, column: pl.Expr) -> pl.Expr:
    """``endpoint``, ``covariate`` or ``unused``: what an error on ``table.column`` means."""
    field = pl.concat_str([table, column], separator=".")
    endpoint = [f"{t}.{c}" for t, cols in ENDPOINT_FIELDS.items() for c in cols]
    covariate = [f"{t}.{c}" for t, c in COVARIATE_FIELDS]
    return (
        pl.when(field.is_in(endpoint))
        .then(pl.lit("endpoint"))
        .when(field.is_in(covariate))
        .then(pl.lit("covariate"))
        .otherwise(pl.lit("unused"))
    )


def select_population(
    tables: Mapping[str, pl.DataFrame],
    review: ReviewInputs,
    policy: PopulationPolicy | None = None,
) -> Population:
    """Apply ``policy`` (default: exclude, one record per duplicate group) to ``tables``;
    every table is restricted to the analysed patients."""
    policy = policy or PopulationPolicy()
    received = _received(tables)
    site_of = received.select("patient_key", "site_id")
    exclusions: list[pl.DataFrame] = [
        received.filter(~pl.col("infused")).select(
            "patient_key",
            "site_id",
            pl.lit("no_index_infusion").alias("reason_code"),
            pl.lit("no CAR T infusion recorded").alias("reason"),
        )
    ]
    located = _locate_findings(review.findings, tables).with_columns(
        kind=_field_kind(pl.col("table"), pl.col("column").fill_null(""))
    )
    set_aside = pl.DataFrame(schema=SET_ASIDE_SCHEMA)
    if policy.exclude_error_findings:
        on_endpoint = located.filter(
            (pl.col("kind") == "endpoint") & pl.col("patient_key").is_not_null()
        )
        exclusions.append(
            on_endpoint.join(site_of, on="patient_key", how="inner", suffix="_patient").select(
                "patient_key",
                pl.col("site_id_patient").alias("site_id"),
                pl.lit("error_finding").alias("reason_code"),
                format_text("error {} on {}.{}", "rule_id", "table", "column").alias("reason"),
                "rule_id",
                "table",
                "column",
                "source_row",
            )
        )
        covariates = pl.DataFrame(
            {
                "table": [t for t, _ in COVARIATE_FIELDS],
                "column": [c for _, c in COVARIATE_FIELDS],
                "covariate": list(COVARIATE_FIELDS.values()),
            }
        )
        set_aside = (
            located.filter((pl.col("kind") == "covariate") & pl.col("patient_key").is_not_null())
            .join(covariates, on=["table", "column"])
            .join(site_of, on="patient_key", suffix="_patient")
            .select(
                "patient_key",
                pl.col("site_id_patient").alias("site_id"),
                "covariate",
                format_text("error {} on {}.{}", "rule_id", "table", "column").alias("reason"),
            )
            .unique(maintain_order=True)
        )
    excluded_so_far = pl.concat(
        [e.select("patient_key") for e in exclusions], how="vertical_relaxed"
    )["patient_key"]
    exclusions.append(
        _duplicate_exclusions(tables, review.duplicates, received, excluded_so_far, policy)
    )
    frame = pl.concat(
        [
            e.with_columns(
                [
                    pl.lit(None, dtype=t).alias(c)
                    for c, t in EXCLUSION_SCHEMA.items()
                    if c not in e.columns
                ]
            ).select([pl.col(c).cast(t) for c, t in EXCLUSION_SCHEMA.items()])
            for e in exclusions
        ],
        how="vertical",
    ).sort(
        "patient_key", "reason_code", "rule_id", "table", "column", "source_row", nulls_last=True
    )
    dropped = frame["patient_key"].unique()
    kept = {
        name: t.filter(~pl.col("patient_key").is_in(dropped.implode()))
        if "patient_key" in t.columns
        else t
        for name, t in tables.items()
    }
    set_aside = set_aside.filter(~pl.col("patient_key").is_in(dropped.implode())).sort(
        "patient_key", "covariate", "reason"
    )
    population = Population(tables=kept, exclusions=frame, set_aside=set_aside)
    population.flow = _flow(received, frame, set_aside, located, review, policy)
    return population


def _duplicate_exclusions(
    tables: Mapping[str, pl.DataFrame],
    duplicates: pl.DataFrame,
    received: pl.DataFrame,
    already: pl.Series,
    policy: PopulationPolicy,
) -> pl.DataFrame:
    present = received.filter(pl.col("infused"))["patient_key"]
    pairs = duplicates.filter(
        pl.col("key_a").is_in(present.implode()) & pl.col("key_b").is_in(present.implode())
    )
    empty = pl.DataFrame(
        schema={
            "patient_key": pl.String,
            "site_id": pl.String,
            "reason_code": pl.String,
            "reason": pl.String,
        }
    )
    if pairs.height == 0:
        return empty
    site_of = received.select("patient_key", "site_id")
    # reviewed "same" but both records present: keep the reviewer's choice
    names_a_key = (pl.col("keep") == pl.col("key_a")) | (pl.col("keep") == pl.col("key_b"))
    same = pairs.filter((pl.col("decision") == "same") & names_a_key.fill_null(False)).select(
        pl.when(pl.col("keep") == pl.col("key_a"))
        .then("key_b")
        .otherwise("key_a")
        .alias("patient_key"),
        format_text("reviewed duplicate of {}", "keep").alias("reason"),
    )
    same_rows = same.join(site_of, on="patient_key").select(
        "patient_key", "site_id", pl.lit("duplicate_same").alias("reason_code"), "reason"
    )
    reviewed = pl.col("decision").is_in(["same", "distinct"]).fill_null(False)
    open_pairs = pairs.filter(~reviewed).filter(
        ~pl.col("key_a").is_in(already.implode())
        & ~pl.col("key_b").is_in(already.implode())
        & ~pl.col("key_a").is_in(same["patient_key"].implode())
        & ~pl.col("key_b").is_in(same["patient_key"].implode())
    )
    if open_pairs.height == 0 or policy.duplicates == "keep-both":
        return same_rows
    if policy.duplicates == "stop":
        first = open_pairs.sort("key_a", "key_b").row(0, named=True)
        raise InputError(
            f"{open_pairs.height} unreviewed candidate duplicate pair(s), e.g. "
            f"{first['key_a']} and {first['key_b']}",
            where="duplicates.csv",
            hint="review them in a link file (cartreg registry merge --links), or pass "
            "--duplicates one (analyse one record of each) or keep-both",
        )
    keep = _one_per_group(tables, open_pairs)
    dropped = keep.filter(pl.col("patient_key") != pl.col("kept"))
    return pl.concat(
        [
            same_rows,
            dropped.join(site_of, on="patient_key").select(
                "patient_key",
                "site_id",
                pl.lit("duplicate_unreviewed").alias("reason_code"),
                format_text("unreviewed candidate duplicate of {} (analysed)", "kept").alias(
                    "reason"
                ),
            ),
        ]
    )


def _one_per_group(tables: Mapping[str, pl.DataFrame], pairs: pl.DataFrame) -> pl.DataFrame:
    """Connected groups of records linked by pairs; per group, the record analysed (``kept``):
    the most clinical rows, then the smallest key."""
    edges = pl.concat(
        [
            pairs.select(pl.col("key_a").alias("a"), pl.col("key_b").alias("b")),
            pairs.select(pl.col("key_b").alias("a"), pl.col("key_a").alias("b")),
        ]
    )
    nodes = edges.select(pl.col("a").alias("patient_key")).unique()
    label = nodes.with_columns(group=pl.col("patient_key"))
    while True:  # label propagation: each record takes the smallest label among its neighbours
        spread = (
            edges.join(label, left_on="b", right_on="patient_key")
            .group_by("a")
            .agg(pl.col("group").min().alias("neighbour"))
        )
        updated = label.join(spread, left_on="patient_key", right_on="a", how="left").select(
            "patient_key", pl.min_horizontal("group", "neighbour").alias("group")
        )
        if updated.sort("patient_key").equals(label.sort("patient_key")):
            break
        label = updated
    counts = [
        t.group_by("patient_key").len()
        for name, t in tables.items()
        if name in CLINICAL_TABLES and "patient_key" in t.columns
    ]
    rows = (
        pl.concat(counts).group_by("patient_key").agg(pl.col("len").sum().alias("rows"))
        if counts
        else pl.DataFrame(schema={"patient_key": pl.String, "rows": pl.UInt32})
    )
    ranked = label.join(rows, on="patient_key", how="left").with_columns(
        pl.col("rows").fill_null(0)
    )
    best = (
        ranked.sort(["group", "rows", "patient_key"], descending=[False, True, False])
        .group_by("group", maintain_order=True)
        .first()
    )
    return label.join(best.select("group", pl.col("patient_key").alias("kept")), on="group").select(
        "patient_key", "kept"
    )


# -- flow ------------------------------------------------------------------------------------


def _by_site(frame: pl.DataFrame) -> dict[str, int]:
    counts = frame.group_by("site_id").len().sort("site_id", nulls_last=True)
    return {str(s): int(n) for s, n in counts.iter_rows()}


def _flow(
    received: pl.DataFrame,
    exclusions: pl.DataFrame,
    set_aside: pl.DataFrame,
    located: pl.DataFrame,
    review: ReviewInputs,
    policy: PopulationPolicy,
) -> dict[str, Any]:
    order = {code: i for i, code in enumerate(_REASON_ORDER)}
    first = (
        exclusions.with_columns(
            rank=pl.col("reason_code").replace_strict(order, default=len(order))
        )
        .sort("patient_key", "rank", "rule_id", "table", "column", nulls_last=True)
        .group_by("patient_key", maintain_order=True)
        .first()
    )
    # one row per reason; duplicate exclusions name their pair, so they share one label
    labelled = first.with_columns(
        label=pl.when(pl.col("reason_code") == "duplicate_unreviewed")
        .then(pl.lit("unreviewed candidate duplicate (the other record is analysed)"))
        .when(pl.col("reason_code") == "duplicate_same")
        .then(pl.lit("reviewed duplicate (same patient) still present"))
        .otherwise(pl.col("reason"))
    )
    excluded = [
        {
            "reason_code": str(code),
            "reason": str(label),
            "total": part.height,
            "by_site": _by_site(part),
        }
        for (_, code, label), part in labelled.sort("rank", "label").group_by(
            ["rank", "reason_code", "label"], maintain_order=True
        )
    ]
    analysed = received.filter(~pl.col("patient_key").is_in(exclusions["patient_key"].implode()))
    unused = located.filter(pl.col("kind") == "unused")
    aside = [
        {
            "covariate": str(cov),
            "reason": str(reason),
            "total": part.height,
            "by_site": _by_site(part),
        }
        for (cov, reason), part in set_aside.group_by(["covariate", "reason"], maintain_order=True)
    ]
    return {
        "policy": {
            "error_findings": "exclude" if policy.exclude_error_findings else "analyse all",
            "duplicates": policy.duplicates,
        },
        "findings_source": review.findings_source,
        "duplicates_source": review.duplicates_source,
        "received": {"total": received.height, "by_site": _by_site(received)},
        "excluded": excluded,
        "analysed": {"total": analysed.height, "by_site": _by_site(analysed)},
        "covariates_set_to_unknown": sorted(aside, key=lambda r: (r["covariate"], r["reason"])),
        "error_findings_on_unused_fields": unused.height,
        "error_findings_without_patient": located.filter(pl.col("patient_key").is_null()).height,
        "unreviewed_duplicate_pairs": review.duplicates.filter(
            ~pl.col("decision").is_in(["same", "distinct"]).fill_null(False)
        ).height,
    }
