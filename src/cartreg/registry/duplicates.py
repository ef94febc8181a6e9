"""Probable cross-site duplicate patients (rule PU-001), scored for review, and link files.

A patient referred for CAR T may be reported by the referring and the treating centre. Pairs of
patients from *different* sites are candidates when sex and birth year agree (blocking), and
their index infusions fall within ``window_days`` of each other (or, for sites that give only
the infusion year, in the same year with the same product: pairs of a year-only site that share
no product are not listed). The score is the share of the available evidence that
agrees, weighted:

==========================  ======  ==============================================
evidence                    weight  agrees when
==========================  ======  ==============================================
sex                         1       equal (blocking)
birth year                  1       equal (blocking)
index infusion date         2       ``2 * (1 - days_apart / (window + 1))``
index infusion year         2       half credit when equal, used only when a date is
                                    missing: a shared year is weaker evidence than a
                                    shared date, so year-only pairs never score 1
product                     2       equal
birth date                  1       equal (limited-data-set sites)
diagnosis month             1       same year and month
Ph status                   0.5     equal
age at index                0.5     within one year
==========================  ======  ==============================================

Evidence missing on either side counts neither for nor against. A reviewed *link file* decides
each pair: ``same`` (keep one record, drop the other patient from the merge) or ``distinct``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from cartreg.errors import ConfigError
from cartreg.exprs import format_text

RULE_ID = "PU-001"
DEFAULT_WINDOW_DAYS = 3
DEFAULT_MIN_SCORE = 0.7
DECISIONS = ("same", "distinct")
LINK_COLUMNS = ("key_a", "key_b", "decision", "keep", "reason", "reviewer")

CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    "pair_id": pl.String(),
    "site_a": pl.String(),
    "key_a": pl.String(),
    "site_b": pl.String(),
    "key_b": pl.String(),
    "score": pl.Float64(),
    "days_apart": pl.Int64(),
    "evidence": pl.String(),
}


def _profiles(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per patient with the fields used as evidence (absent columns are null)."""
    patients = tables.get("patients", pl.DataFrame())
    if patients.height == 0 or "patient_key" not in patients.columns:
        return pl.DataFrame()

    def col(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype)

    base = patients.select(
        pl.col("patient_key").cast(pl.String),
        col(patients, "site_id", pl.String()).alias("site_id"),
        col(patients, "sex", pl.String()).alias("sex"),
        col(patients, "birth_year", pl.Int64()).alias("birth_year"),
        col(patients, "birth_date", pl.Date()).alias("birth_date"),
        col(patients, "diagnosis_date", pl.Date()).dt.strftime("%Y-%m").alias("dx_month"),
        col(patients, "ph_status", pl.String()).alias("ph_status"),
        col(patients, "age_at_index_years", pl.Float64()).alias("age"),
        col(patients, "source_file", pl.String()).alias("source_file"),
        col(patients, "source_row", pl.Int64()).alias("source_row"),
    ).unique("patient_key", keep="first", maintain_order=True)
    infusions = tables.get("car_t_infusions", pl.DataFrame())
    if infusions.height and "is_index_infusion" in infusions.columns:
        index = (
            infusions.filter(pl.col("is_index_infusion").fill_null(False))
            .select(
                pl.col("patient_key").cast(pl.String),
                col(infusions, "infusion_date", pl.Date()).alias("inf_date"),
                col(infusions, "infusion_year", pl.Int64()).alias("inf_year"),
                col(infusions, "product", pl.String()).alias("product"),
            )
            .unique("patient_key", keep="first", maintain_order=True)
        )
    else:
        index = pl.DataFrame(
            schema={
                "patient_key": pl.String,
                "inf_date": pl.Date,
                "inf_year": pl.Int64,
                "product": pl.String,
            }
        )
    return base.join(index, on="patient_key", how="left").with_columns(
        pl.coalesce(pl.col("inf_year"), pl.col("inf_date").dt.year().cast(pl.Int64)).alias(
            "inf_year"
        )
    )


def _candidate_pairs(prof: pl.DataFrame, window_days: int) -> pl.DataFrame:
    """Pairs of patients of different sites (``site_id < site_id_b``, each pair once) that may
    be the same person: same sex and birth year, and index infusions within the window; or,
    when either lacks the date, the same infusion year and product.

    Blocking on sex and birth year alone pairs every patient with a large share of the others
    (~N²); these joins only produce pairs that can pass the date or year test.
    """
    blocked = prof.filter(pl.col("sex").is_not_null() & pl.col("birth_year").is_not_null())
    block = ["sex", "birth_year"]
    right = blocked.select(pl.all().name.suffix("_b"))
    right_block = [f"{c}_b" for c in block]
    different_sites = pl.col("site_id") < pl.col("site_id_b")

    dated = blocked.filter(pl.col("inf_date").is_not_null())
    # Each partner's date shifted by every offset in the window: an equi-join then finds
    # exactly the pairs at most window_days apart.
    shifted = (
        right.filter(pl.col("inf_date_b").is_not_null())
        .with_columns(pl.int_ranges(-window_days, window_days + 1).alias("__shift"))
        .explode("__shift")
        .with_columns((pl.col("inf_date_b") + pl.duration(days=pl.col("__shift"))).alias("__d"))
        .drop("__shift")
    )
    by_date = dated.with_columns(pl.col("inf_date").alias("__d")).join(
        shifted, left_on=[*block, "__d"], right_on=[*right_block, "__d"], coalesce=False
    )

    # Year-only comparisons (a de-identified site gives only the year) are blocked on the
    # product too: pairs that share the year but not the product are not candidates.
    year_key = [*block, "inf_year", "product"]
    right_year_key = [f"{c}_b" for c in year_key]
    with_year = pl.col("inf_year").is_not_null() & pl.col("product").is_not_null()
    undated = blocked.filter(with_year & pl.col("inf_date").is_null())
    right_year = right.filter(
        pl.col("inf_year_b").is_not_null() & pl.col("product_b").is_not_null()
    )
    by_year = [
        undated.join(right_year, left_on=year_key, right_on=right_year_key, coalesce=False),
        blocked.filter(with_year & pl.col("inf_date").is_not_null()).join(
            right_year.filter(pl.col("inf_date_b").is_null()),
            left_on=year_key,
            right_on=right_year_key,
            coalesce=False,
        ),
    ]
    columns = [*blocked.columns, *right.columns]
    parts = [frame.select(columns) for frame in (by_date, *by_year)]
    return pl.concat(parts).filter(different_sites)


def find_duplicates(
    tables: Mapping[str, pl.DataFrame],
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    min_score: float = DEFAULT_MIN_SCORE,
) -> pl.DataFrame:
    """Scored candidate pairs across sites, best first (``CANDIDATE_SCHEMA``)."""
    prof = _profiles(tables)
    if prof.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    pairs = _candidate_pairs(prof, window_days)
    days = (pl.col("inf_date") - pl.col("inf_date_b")).dt.total_days().abs()
    both_dates = pl.col("inf_date").is_not_null() & pl.col("inf_date_b").is_not_null()
    both_years = pl.col("inf_year").is_not_null() & pl.col("inf_year_b").is_not_null()
    pairs = pairs.with_columns(days.alias("days_apart")).filter(
        pl.when(both_dates)
        .then(pl.col("days_apart") <= window_days)
        .otherwise(both_years & (pl.col("inf_year") == pl.col("inf_year_b")))
    )
    if pairs.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)

    def pair(name: str) -> tuple[pl.Expr, pl.Expr]:
        return pl.col(name), pl.col(f"{name}_b")

    # (label, weight, available, agreement in [0, 1])
    evidence: list[tuple[str, float, pl.Expr, pl.Expr]] = [
        ("sex", 1.0, pl.lit(True), pl.lit(1.0)),
        ("birth_year", 1.0, pl.lit(True), pl.lit(1.0)),
        (
            "infusion_date",
            2.0,
            both_dates,
            (1.0 - pl.col("days_apart").cast(pl.Float64) / (window_days + 1)).clip(0.0, 1.0),
        ),
        ("infusion_year", 2.0, ~both_dates & both_years, pl.lit(0.5)),
    ]
    for label, weight, name in (
        ("product", 2.0, "product"),
        ("birth_date", 1.0, "birth_date"),
        ("diagnosis_month", 1.0, "dx_month"),
        ("ph_status", 0.5, "ph_status"),
    ):
        a, b = pair(name)
        evidence.append(
            (label, weight, a.is_not_null() & b.is_not_null(), (a == b).cast(pl.Float64))
        )
    a, b = pair("age")
    evidence.append(
        (
            "age_at_index",
            0.5,
            a.is_not_null() & b.is_not_null(),
            ((a - b).abs() <= 1.0).cast(pl.Float64),
        )
    )
    got = pl.sum_horizontal(
        [pl.when(avail).then(agree * w).otherwise(0.0) for _, w, avail, agree in evidence]
    )
    possible = pl.sum_horizontal(
        [pl.when(avail).then(w).otherwise(0.0) for _, w, avail, _ in evidence]
    )
    agreed = (
        pl.concat_list(
            [
                pl.when(avail & (agree >= 0.5)).then(pl.lit(label)).otherwise(None)
                for label, _, avail, agree in evidence
            ]
        )
        .list.drop_nulls()
        .list.join(",")
    )
    scored = pairs.with_columns(
        (got / possible).round(3).alias("score"), agreed.alias("evidence")
    ).filter(pl.col("score") >= min_score)
    if scored.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    return (
        scored.select(
            pl.lit(None, dtype=pl.String).alias("pair_id"),
            pl.col("site_id").alias("site_a"),
            pl.col("patient_key").alias("key_a"),
            pl.col("site_id_b").alias("site_b"),
            pl.col("patient_key_b").alias("key_b"),
            "score",
            pl.col("days_apart").cast(pl.Int64),
            "evidence",
        )
        .cast(CANDIDATE_SCHEMA)  # type: ignore[arg-type]
        .pipe(with_pair_ids)
        .sort(["score", "key_a", "key_b"], descending=[True, False, False])
    )


def with_pair_ids(pairs: pl.DataFrame) -> pl.DataFrame:
    """Set ``pair_id`` from the keys as shown (pseudonyms in a pseudonymized merge, so that the
    id cannot be traced back to local ids by hashing guessed ones)."""
    ids = [
        "DUP-" + hashlib.sha256(f"{min(a, b)}\x1f{max(a, b)}".encode()).hexdigest()[:12]
        for a, b in pairs.select("key_a", "key_b").iter_rows()  # one hash per candidate pair
    ]
    return pairs.with_columns(pl.Series("pair_id", ids, dtype=pl.String))


def load_links(path: Path | str) -> pl.DataFrame:
    """A reviewed link file (CSV, or YAML with a ``links:`` list) as a frame of LINK_COLUMNS.

    Each link names two patient keys (as shown in the duplicates list: site keys, or consortium
    pseudonyms), a ``decision`` (``same`` / ``distinct``) and, for ``same``, the key to ``keep``.
    """
    from cartreg.yamlio import load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError("link file not found", path=path)
    if path.suffix.lower() in (".yaml", ".yml"):
        data = load_yaml(path)
        rows = data.get("links") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ConfigError("expected a 'links:' list of mappings", path=path, key="links")
        frame = pl.DataFrame(
            [
                {c: (None if r.get(c) is None else str(r.get(c))) for c in LINK_COLUMNS}
                for r in rows
            ],
            schema=dict.fromkeys(LINK_COLUMNS, pl.String),
        )
        extra = sorted({k for r in rows for k in r} - set(LINK_COLUMNS))
        if extra:
            raise ConfigError(
                f"unknown key '{extra[0]}'",
                path=path,
                key="links",
                hint=f"allowed: {', '.join(LINK_COLUMNS)}",
            )
    else:
        try:
            frame = pl.read_csv(path, infer_schema=False)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise ConfigError(f"unreadable CSV: {str(exc).splitlines()[0]}", path=path) from None
        missing = [c for c in ("key_a", "key_b", "decision") if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"missing column '{missing[0]}'",
                path=path,
                hint=f"columns: {', '.join(LINK_COLUMNS)}",
            )
        frame = frame.with_columns(
            [pl.lit(None, dtype=pl.String).alias(c) for c in LINK_COLUMNS if c not in frame.columns]
        ).select(LINK_COLUMNS)
    frame = frame.with_columns(pl.col(c).str.strip_chars() for c in LINK_COLUMNS).with_columns(
        pl.col("decision").str.to_lowercase()
    )
    bad = frame.with_row_index("i").filter(
        ~pl.col("decision").is_in(DECISIONS).fill_null(False)
        | pl.col("key_a").is_null()
        | pl.col("key_b").is_null()
        | (
            (pl.col("decision") == "same")
            & ~(
                (pl.col("keep") == pl.col("key_a")) | (pl.col("keep") == pl.col("key_b"))
            ).fill_null(False)
        )
    )
    if bad.height:
        i = int(bad["i"][0])
        raise ConfigError(
            f"link {i + 1}: needs key_a, key_b, decision same|distinct, and for 'same' a keep "
            "equal to key_a or key_b",
            path=path,
            key=f"links[{i}]",
        )
    return frame


def resolve(
    candidates: pl.DataFrame, links: pl.DataFrame, aliases: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Attach each candidate pair's reviewed decision (``decision``, ``keep``, ``drop``).

    ``aliases`` (``patient_key`` -> ``pseudonym``) lets a link name either form of a key.
    Pairs without a link have a null decision: they stay in the merge and are reported.
    """

    def canonical(frame: pl.DataFrame) -> pl.DataFrame:
        if aliases is None or aliases.height == 0:
            return frame
        back = dict(
            zip(aliases["pseudonym"].to_list(), aliases["patient_key"].to_list(), strict=True)
        )
        return frame.with_columns(pl.col(c).replace(back) for c in ("key_a", "key_b", "keep"))

    links = canonical(links)
    ordered = links.with_columns(
        pl.min_horizontal("key_a", "key_b").alias("__lo"),
        pl.max_horizontal("key_a", "key_b").alias("__hi"),
    ).unique(["__lo", "__hi"], keep="last", maintain_order=True)
    cands = candidates.with_columns(
        pl.min_horizontal("key_a", "key_b").alias("__lo"),
        pl.max_horizontal("key_a", "key_b").alias("__hi"),
    )
    out = cands.join(
        ordered.select("__lo", "__hi", "decision", "keep", "reason", "reviewer"),
        on=["__lo", "__hi"],
        how="left",
        maintain_order="left",
    ).drop("__lo", "__hi")
    return out.with_columns(
        pl.when(pl.col("decision") == "same")
        .then(
            pl.when(pl.col("keep") == pl.col("key_a"))
            .then(pl.col("key_b"))
            .otherwise(pl.col("key_a"))
        )
        .otherwise(None)
        .alias("drop")
    )


def duplicate_findings(resolved: pl.DataFrame, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """PU-001 findings: a warning per unreviewed pair, info per reviewed one."""
    from cartreg.findings import empty_findings, findings_frame

    if resolved.height == 0:
        return empty_findings()
    patients = tables.get("patients", pl.DataFrame())
    loc = (
        patients.select(
            pl.col("patient_key").alias("key_b"),
            pl.col("source_file").cast(pl.String),
            pl.col("source_row").cast(pl.Int64),
        ).unique("key_b")
        if {"patient_key", "source_file", "source_row"} <= set(patients.columns)
        else pl.DataFrame(
            schema={"key_b": pl.String, "source_file": pl.String, "source_row": pl.Int64}
        )
    )
    frame = resolved.join(loc, on="key_b", how="left", maintain_order="left")
    reviewed = pl.col("decision").is_not_null()
    return findings_frame(
        frame.select(
            pl.lit(RULE_ID).alias("rule_id"),
            pl.when(reviewed).then(pl.lit("info")).otherwise(pl.lit("warning")).alias("severity"),
            pl.lit("plausibility").alias("category"),
            pl.lit("uniqueness").alias("subcategory"),
            pl.lit("patients").alias("table"),
            pl.lit("patient_key").alias("column"),
            pl.col("site_b").alias("site_id"),
            "source_file",
            "source_row",
            pl.col("pair_id").alias("value"),
            format_text(
                "possible cross-site duplicate: {} ({}) and {} ({}), score {}, agreeing: {}; {}",
                "key_a",
                "site_a",
                "key_b",
                "site_b",
                "score",
                "evidence",
                pl.when(reviewed)
                .then(
                    format_text(
                        "reviewed: {}, kept {}",
                        "decision",
                        pl.coalesce(pl.col("keep"), pl.lit("both")),
                    )
                )
                .otherwise(pl.lit("not reviewed: both records kept, decide in a link file")),
            ).alias("message"),
        )
    )
