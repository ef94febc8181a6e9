"""Probable cross-site duplicate patients (rule PU-001): the review list, its explanations,
reviewed decisions, and the findings of a merge.

The pairs come from the probabilistic linkage in :mod:`cartreg.registry.linkage` (expert
Fellegi-Sunter weights, splink on DuckDB). A pair is listed when its match probability reaches
the threshold (``--min-probability``, the model's 0.7 by default), or when a coordinator has
decided it. Each listed pair carries its match probability, its match weight, and each
comparison's level and match weight: the explanation names comparisons and levels only, never
a value of the records.

A reviewed decision says ``same`` (keep one record, drop the other patient from the merge) or
``distinct``. Decisions are kept in the registry (``cartreg registry link``, or a link file
given to a merge), so they hold for every later merge. Linkage state (scored pairs, cluster
ids, a fingerprint per record) is kept there too (:mod:`cartreg.registry.linkage_store`): a
later merge scores only records that are new or changed (:func:`link_patients`), and a record
that matches an existing cluster joins it under the same cluster id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg.errors import ConfigError
from cartreg.registry import linkage as lk

if TYPE_CHECKING:
    pass
from cartreg.exprs import format_text

RULE_ID = "PU-001"
CAPACITY_RULE_ID = "REG-LINKAGE-CAPACITY"
EM_RULE_ID = "REG-LINKAGE-EM"
DECISIONS = ("same", "distinct")
LINK_COLUMNS = ("key_a", "key_b", "decision", "keep", "reason", "reviewer")
CLUSTER_PREFIX = "LNK-"


def candidate_schema(model: lk.LinkageModel | None = None) -> dict[str, pl.DataType]:
    """Columns of a listed pair: ids, sites and keys, match probability and weight, days
    between index infusions, the evidence (level per comparison), the prior's weight and each
    comparison's match weight."""
    model = model or lk.load_model()
    schema: dict[str, pl.DataType] = {
        "pair_id": pl.String(),
        "cluster_id": pl.String(),
        "site_a": pl.String(),
        "key_a": pl.String(),
        "site_b": pl.String(),
        "key_b": pl.String(),
        "match_probability": pl.Float64(),
        "match_weight": pl.Float64(),
        "days_apart": pl.Int64(),
        "evidence": pl.String(),
        "mw_prior": pl.Float64(),
    }
    for comp in model.comparisons:
        schema[f"mw_{comp.name}"] = pl.Float64()
    return schema


CANDIDATE_SCHEMA = candidate_schema()


def empty_candidates(model: lk.LinkageModel | None = None) -> pl.DataFrame:
    return pl.DataFrame(schema=candidate_schema(model))


def empty_links() -> pl.DataFrame:
    return pl.DataFrame(schema=dict.fromkeys(LINK_COLUMNS, pl.String))


# ---- linkage state kept between merges ---------------------------------------------------


@dataclass
class LinkageState:
    """What a merge keeps for the next one (in the registry, canonical site keys only)."""

    model_sha: str
    records: pl.DataFrame  # unique_id, site_id, record_sha
    pairs: pl.DataFrame  # lk.pair_schema rows, evidence weights without the prior
    clusters: pl.DataFrame  # unique_id, cluster_id

    @classmethod
    def empty(cls, model_sha: str = "") -> LinkageState:
        return cls(
            model_sha=model_sha,
            records=pl.DataFrame(
                schema={"unique_id": pl.String, "site_id": pl.String, "record_sha": pl.String}
            ),
            pairs=lk.empty_pairs(lk.load_model()),
            clusters=pl.DataFrame(schema={"unique_id": pl.String, "cluster_id": pl.String}),
        )


def model_fingerprint(model: lk.LinkageModel) -> str:
    """sha256 of the model file: scores kept from a merge are reused only with this model."""
    return hashlib.sha256(Path(model.source).read_bytes()).hexdigest()[:16]


def record_fingerprints(records: pl.DataFrame) -> pl.DataFrame:
    """``unique_id``, ``site_id``, ``record_sha``: a hash of the evidence fields of each record
    (computed by DuckDB, so it is stable across polars versions)."""
    import duckdb

    fields = [c for c in lk.RECORD_SCHEMA if c not in ("unique_id", "site_id")]
    text = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in fields)
    conn = duckdb.connect(":memory:")
    try:
        conn.register("records", records.to_arrow())
        rel = conn.sql(f"SELECT unique_id, site_id, md5({text}) AS record_sha FROM records")
        frame = pl.from_arrow(rel.to_arrow_table())
    finally:
        conn.close()
    assert isinstance(frame, pl.DataFrame)
    return frame


# ---- linking -----------------------------------------------------------------------------


@dataclass
class LinkageResult:
    """The outcome of linking the patients of a merge."""

    pairs: pl.DataFrame  # listed pairs, candidate_schema() without pair ids (set on display)
    clusters: pl.DataFrame  # unique_id, site_id, cluster_id (records in clusters of 2+)
    capacity: pl.DataFrame  # lk.CAPACITY_SCHEMA
    state: LinkageState
    prior: float
    threshold: float
    mode: str  # "full" (every record scored) or "incremental" (new records only)
    records: int = 0
    new_records: int = 0
    em: lk.EMCheck | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        beyond = self.capacity.filter(~pl.col("separable"))
        out: dict[str, Any] = {
            "engine": "splink (DuckDB), expert Fellegi-Sunter weights",
            "mode": self.mode,
            "records": self.records,
            "new_records": self.new_records,
            "prior_probability": self.prior,
            "prior_weight": round(lk.logit2(self.prior), 3),
            "min_probability": self.threshold,
            "clusters": self.clusters["cluster_id"].n_unique() if self.clusters.height else 0,
            "capacity": [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                for row in self.capacity.iter_rows(named=True)
            ],
            "beyond_capacity": [f"{a}~{b}" for a, b in beyond.select("site_a", "site_b").rows()],
        }
        if self.em is not None:
            out["em_check"] = {
                "converged": self.em.converged,
                "sessions": self.em.sessions,
                "prior_probability": self.em.prior,
                "disagreements": self.em.disagreements.to_dicts(),
            }
        return out


def _canonical_decisions(decisions: pl.DataFrame | None) -> pl.DataFrame:
    if decisions is None or decisions.height == 0:
        return empty_links()
    return decisions.select(LINK_COLUMNS)


def _evidence_text(model: lk.LinkageModel) -> pl.Expr:
    """``comparison: level`` for every comparison with evidence, in model order."""
    parts = [
        pl.when(pl.col(f"level_{c.name}").is_not_null()).then(
            format_text("{}: {}", pl.lit(c.name), pl.col(f"level_{c.name}"))
        )
        for c in model.comparisons
    ]
    return pl.concat_list(parts).list.drop_nulls().list.join("; ")


def _stable_cluster_ids(new: pl.DataFrame, old: pl.DataFrame) -> pl.DataFrame:
    """Give each new cluster (``unique_id``, ``cluster``) the id of the old cluster most of its
    records were in (``unique_id``, ``cluster_id``), else the next free ``LNK-`` number. An old
    id goes to one new cluster only (the one holding most of its records)."""
    if new.height == 0:
        return pl.DataFrame(schema={"unique_id": pl.String, "cluster_id": pl.String})
    overlap = (
        new.join(old, on="unique_id", how="inner")
        .group_by("cluster", "cluster_id")
        .agg(pl.len().alias("n"))
        .sort(["n", "cluster_id", "cluster"], descending=[True, False, False])
    )
    # greedy, largest overlaps first: one old id per new cluster and one new cluster per old id
    taken: dict[str, str] = {}
    used: set[str] = set()
    for cluster, cluster_id, _ in overlap.iter_rows():  # one row per overlapping cluster pair
        if cluster not in taken and cluster_id not in used:
            taken[cluster] = cluster_id
            used.add(cluster_id)
    numbers = [int(c.removeprefix(CLUSTER_PREFIX)) for c in old["cluster_id"].unique().to_list()]
    next_number = max(numbers, default=0) + 1
    order = new.group_by("cluster").agg(pl.col("unique_id").min().alias("first")).sort("first")
    for cluster in order["cluster"].to_list():  # one per cluster
        if cluster not in taken:
            taken[cluster] = f"{CLUSTER_PREFIX}{next_number:06d}"
            next_number += 1
    return new.with_columns(
        pl.col("cluster").replace_strict(taken, return_dtype=pl.String).alias("cluster_id")
    ).select("unique_id", "cluster_id")


def link_patients(
    tables: Mapping[str, pl.DataFrame],
    *,
    threshold: float | None = None,
    model: lk.LinkageModel | None = None,
    previous: LinkageState | None = None,
    decisions: pl.DataFrame | None = None,
    relink: bool = False,
    em_check: bool = False,
    expected_duplicate_rate: float | None = None,
) -> LinkageResult:
    """Score, list and cluster the cross-site duplicate patients of ``tables``.

    With ``previous`` state from the same model (and not ``relink``), only records that are new
    or changed since are scored (against the others and among themselves); pairs between
    unchanged records keep their scores. ``decisions`` (canonical keys, ``LINK_COLUMNS``) are
    listed whatever their score: ``same`` pairs are forced into one cluster, ``distinct`` pairs
    are never joined directly.
    """
    model = model or lk.load_model()
    threshold = model.threshold if threshold is None else threshold
    rate = (
        model.expected_duplicate_rate
        if expected_duplicate_rate is None
        else expected_duplicate_rate
    )
    sha = model_fingerprint(model)
    records = lk.linkage_records(tables)
    fingerprints = record_fingerprints(records)
    decisions = _canonical_decisions(decisions)
    sizes = dict(records.group_by("site_id").len().iter_rows())
    prior = lk.prior_probability(sizes, rate)
    if records.height == 0 or len(sizes) < 2:
        state = LinkageState.empty(sha)
        state.records = fingerprints
        return LinkageResult(
            pairs=empty_candidates(model).drop("pair_id"),
            clusters=pl.DataFrame(
                schema={"unique_id": pl.String, "site_id": pl.String, "cluster_id": pl.String}
            ),
            capacity=pl.DataFrame(schema=lk.CAPACITY_SCHEMA),
            state=state,
            prior=prior,
            threshold=threshold,
            mode="full",
            records=records.height,
        )

    linkage = lk.Linkage.open(records, model, prior)
    reuse = previous is not None and previous.model_sha == sha and not relink
    if reuse:
        assert previous is not None
        unchanged = fingerprints.join(
            previous.records.select("unique_id", "record_sha"),
            on=["unique_id", "record_sha"],
            how="semi",
        )["unique_id"]
        new_keys = fingerprints.filter(~pl.col("unique_id").is_in(unchanged.implode()))[
            "unique_id"
        ].to_list()
        kept = previous.pairs.filter(
            pl.col("key_a").is_in(unchanged.implode()) & pl.col("key_b").is_in(unchanged.implode())
        )
        scored = pl.concat([kept, linkage.score_new(new_keys)]) if new_keys else kept
        mode = "incremental"
    else:
        new_keys = fingerprints["unique_id"].to_list()
        scored = linkage.score_all()
        mode = "full"
    scored = scored.unique(["key_a", "key_b"], keep="last").sort("key_a", "key_b")

    weight = pl.col("evidence_weight")
    pairs = scored.with_columns(
        lk.probability(weight, prior).alias("match_probability"),
        (weight + lk.logit2(prior)).alias("match_weight"),
    )
    decided = _decided_pairs(decisions, records)
    listed = pairs.join(decided.select("key_a", "key_b"), on=["key_a", "key_b"], how="semi")
    listed = pl.concat(
        [
            pairs.filter(pl.col("match_probability") >= threshold),
            listed,
            decided.join(pairs.select("key_a", "key_b"), on=["key_a", "key_b"], how="anti"),
        ],
        how="diagonal_relaxed",
    ).unique(["key_a", "key_b"], keep="first")

    edges = pl.concat(
        [
            pairs.filter(pl.col("match_probability") >= threshold)
            .join(
                decided.filter(pl.col("decision") == "distinct").select("key_a", "key_b"),
                on=["key_a", "key_b"],
                how="anti",
            )
            .select("key_a", "site_a", "key_b", "site_b", "match_probability"),
            decided.filter(pl.col("decision") == "same").select(
                "key_a", "site_a", "key_b", "site_b", pl.lit(1.0).alias("match_probability")
            ),
        ]
    ).unique(["key_a", "key_b"], keep="last")
    old_clusters = previous.clusters if previous is not None else LinkageState.empty().clusters
    clusters = _stable_cluster_ids(linkage.clusters(edges, threshold), old_clusters)
    clusters = clusters.join(records.select("unique_id", "site_id"), on="unique_id", how="left")

    cluster_of = clusters.select("unique_id", "cluster_id")
    listed = (
        listed.join(
            cluster_of.rename({"unique_id": "key_a", "cluster_id": "__ca"}), on="key_a", how="left"
        )
        .join(
            cluster_of.rename({"unique_id": "key_b", "cluster_id": "__cb"}), on="key_b", how="left"
        )
        .with_columns(
            pl.when(pl.col("__ca") == pl.col("__cb")).then(pl.col("__ca")).alias("cluster_id"),
            _evidence_text(model).alias("evidence"),
            pl.when(pl.col("evidence_weight").is_not_null())
            .then(pl.lit(lk.logit2(prior)))
            .alias("mw_prior"),
        )
    )
    schema = {k: v for k, v in candidate_schema(model).items() if k != "pair_id"}
    listed = (
        listed.select(list(schema))
        .cast(pl.Schema(schema))
        .sort(
            ["match_probability", "key_a", "key_b"],
            descending=[True, False, False],
            nulls_last=True,
        )
    )
    state = LinkageState(
        model_sha=sha,
        records=fingerprints,
        pairs=scored.select(list(lk.pair_schema(model))),
        clusters=clusters.select("unique_id", "cluster_id"),
    )
    result = LinkageResult(
        pairs=listed,
        clusters=clusters.sort("cluster_id", "unique_id"),
        capacity=lk.linkage_capacity(records, model, threshold=threshold, rate=rate),
        state=state,
        prior=prior,
        threshold=threshold,
        mode=mode,
        records=records.height,
        new_records=len(new_keys),
    )
    if em_check:
        result.em = lk.em_check(records, model, prior)
    return result


def _decided_pairs(decisions: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """Reviewed pairs whose two records are both present, in pair order (site_a < site_b),
    with their decision; the latest decision on a pair wins."""
    sites = records.select("unique_id", "site_id")
    pairs = (
        decisions.join(sites.rename({"unique_id": "key_a", "site_id": "s1"}), on="key_a")
        .join(sites.rename({"unique_id": "key_b", "site_id": "s2"}), on="key_b")
        .filter(pl.col("s1") != pl.col("s2"))
    )
    swap = pl.col("s1") > pl.col("s2")
    ordered = pairs.select(
        pl.when(swap).then(pl.col("key_b")).otherwise(pl.col("key_a")).alias("key_a"),
        pl.when(swap).then(pl.col("s2")).otherwise(pl.col("s1")).alias("site_a"),
        pl.when(swap).then(pl.col("key_a")).otherwise(pl.col("key_b")).alias("key_b"),
        pl.when(swap).then(pl.col("s1")).otherwise(pl.col("s2")).alias("site_b"),
        "decision",
    ).unique(["key_a", "key_b"], keep="last", maintain_order=True)
    return ordered


def dropped_keys(decisions: pl.DataFrame, tables: Mapping[str, pl.DataFrame]) -> list[str]:
    """The records a reviewed ``same`` leaves out of a merge: of each decided pair of records of
    two sites, both present, the one not kept (the latest decision on a pair holds). Known
    before any pair is scored; the same records ``resolve`` marks ``drop``."""
    patients = tables.get("patients", pl.DataFrame())
    if decisions.height == 0 or "patient_key" not in patients.columns:
        return []
    sites = patients.select(pl.col("patient_key").cast(pl.String), "site_id")
    latest = decisions.with_columns(
        pl.min_horizontal("key_a", "key_b").alias("__lo"),
        pl.max_horizontal("key_a", "key_b").alias("__hi"),
    ).unique(["__lo", "__hi"], keep="last", maintain_order=True)
    same = (
        latest.filter(pl.col("decision") == "same")
        .join(sites.rename({"patient_key": "key_a", "site_id": "__sa"}), on="key_a")
        .join(sites.rename({"patient_key": "key_b", "site_id": "__sb"}), on="key_b")
        .filter(pl.col("__sa") != pl.col("__sb"))
    )
    drop = pl.when(pl.col("keep") == pl.col("key_a")).then("key_b").otherwise("key_a")
    return sorted(same.select(drop.alias("drop"))["drop"].unique().to_list())


def find_duplicates(
    tables: Mapping[str, pl.DataFrame],
    *,
    threshold: float | None = None,
    model: lk.LinkageModel | None = None,
) -> pl.DataFrame:
    """Listed cross-site pairs of ``tables`` (``candidate_schema``), best first, each with its
    ``pair_id`` from the keys as they are."""
    return with_pair_ids(link_patients(tables, threshold=threshold, model=model).pairs)


def with_pair_ids(pairs: pl.DataFrame) -> pl.DataFrame:
    """Set ``pair_id`` from the keys as shown (pseudonyms in a pseudonymized merge, so that the
    id cannot be traced back to local ids by hashing guessed ones)."""
    ids = [
        "DUP-" + hashlib.sha256(f"{min(a, b)}\x1f{max(a, b)}".encode()).hexdigest()[:12]
        for a, b in pairs.select("key_a", "key_b").iter_rows()  # one hash per listed pair
    ]
    frame = pairs.drop("pair_id", strict=False)
    return frame.select(pl.Series("pair_id", ids, dtype=pl.String), pl.all())


# ---- reviewed decisions --------------------------------------------------------------------


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
        for i, r in enumerate(rows):
            # str() would turn a list or mapping into its Python text, read as a patient key.
            for c, v in r.items():
                if isinstance(v, list | dict):
                    raise ConfigError(
                        "must be one value, not a list or mapping",
                        path=path,
                        key=f"links[{i}].{c}",
                    )
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
    return check_links(frame, path=path)


def check_links(frame: pl.DataFrame, *, path: Path | str) -> pl.DataFrame:
    """Normalize decisions (trimmed, lower case) and refuse a link that does not say
    key_a, key_b, decision same|distinct, and for ``same`` a keep equal to key_a or key_b."""
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


def canonical_links(links: pl.DataFrame, aliases: pl.DataFrame | None) -> pl.DataFrame:
    """Links with pseudonyms replaced by the site keys they stand for (``aliases``:
    ``patient_key`` -> ``pseudonym``)."""
    if aliases is None or aliases.height == 0 or links.height == 0:
        return links
    back = dict(zip(aliases["pseudonym"].to_list(), aliases["patient_key"].to_list(), strict=True))
    return links.with_columns(pl.col(c).replace(back) for c in ("key_a", "key_b", "keep"))


def resolve(
    candidates: pl.DataFrame, links: pl.DataFrame, aliases: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Attach each candidate pair's reviewed decision (``decision``, ``keep``, ``drop``).

    ``aliases`` (``patient_key`` -> ``pseudonym``) lets a link name either form of a key.
    Pairs without a link have a null decision: they stay in the merge and are reported.
    """
    links = canonical_links(links, aliases)
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


# ---- findings ------------------------------------------------------------------------------


def _with_pair_in_id(frame: pl.DataFrame) -> pl.DataFrame:
    """A record can be in several pairs: the id of a pair's finding includes the pair (its
    ``value``), so that two pairs at one record stay two findings."""
    from cartreg.findings import finding_id

    ids = [
        finding_id(fid, value)
        for fid, value in frame.select("finding_id", "value").iter_rows()  # one per pair
    ]
    return frame.with_columns(pl.Series("finding_id", ids, dtype=pl.String))


def _signed(weight: pl.Expr) -> pl.Expr:
    """A weight as text with its sign and one decimal (``+8.6``, ``-3.5``)."""
    rounded = weight.round(1)
    return (
        pl.when(rounded >= 0).then(format_text("+{}", rounded)).otherwise(rounded.cast(pl.String))
    )


def explain(model: lk.LinkageModel | None = None) -> pl.Expr:
    """The explanation of each pair as text: the comparisons that carry evidence, each with its
    level and match weight, strongest first (a comparison either record cannot make weighs
    nothing and is left out; ``duplicates.csv`` keeps every one). Built from the ``evidence``
    and ``mw_*`` columns: it names comparisons and levels only."""
    model = model or lk.load_model()
    labels = pl.col("evidence").str.split("; ")
    parts = []
    for comp in model.comparisons:
        level = (
            labels.list.eval(pl.element().filter(pl.element().str.starts_with(f"{comp.name}: ")))
            .list.first()
            .str.strip_prefix(f"{comp.name}: ")
        )
        weight = pl.col(f"mw_{comp.name}")
        text = format_text("{} {} ({})", pl.lit(comp.name), level, _signed(weight))
        parts.append(
            pl.struct(
                pl.when(level.is_not_null() & (weight != 0)).then(text).alias("text"),
                weight.abs().alias("strength"),
            )
        )
    # Strongest first: a finding's message is capped (docs/security.md), and what a long
    # explanation loses there should be its weakest evidence.
    ranked = pl.concat_list(parts).list.eval(
        pl.element()
        .sort_by(pl.element().struct.field("strength"), descending=True, maintain_order=True)
        .struct.field("text")
    )
    return ranked.list.drop_nulls().list.join(", ")


def duplicate_findings(
    resolved: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame],
    model: lk.LinkageModel | None = None,
) -> pl.DataFrame:
    """PU-001 findings: a warning per unreviewed pair, info per reviewed one, each with the
    pair's match probability and every comparison's match weight."""
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
    scored = pl.col("match_probability").is_not_null()
    found = findings_frame(
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
            # The review status before the evidence: a long explanation is cut at the message
            # cap (docs/security.md), and only its weakest evidence may be lost there.
            format_text(
                "possible cross-site duplicate: {} ({}) and {} ({}), {}; {}",
                "key_a",
                "site_a",
                "key_b",
                "site_b",
                pl.when(reviewed)
                .then(
                    format_text(
                        "reviewed: {}, kept {}",
                        "decision",
                        pl.coalesce(pl.col("keep"), pl.lit("both")),
                    )
                )
                .otherwise(pl.lit("not reviewed (decide with `cartreg registry link`)")),
                pl.when(scored)
                .then(
                    format_text(
                        "match probability {} (weight {}: prior {}, {})",
                        pl.col("match_probability").round(4),
                        _signed(pl.col("match_weight")),
                        _signed(pl.col("mw_prior")),
                        explain(model),
                    )
                )
                .otherwise(pl.lit("not scored by the current model (listed for its review)")),
            ).alias("message"),
        )
    )
    return _with_pair_in_id(found)


def capacity_findings(capacity: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """A warning per pair of sites whose shared evidence cannot separate patients at the
    consortium's size (``REG-LINKAGE-CAPACITY``)."""
    from cartreg.findings import empty_findings, findings_frame

    beyond = capacity.filter(~pl.col("separable"))
    if beyond.height == 0:
        return empty_findings()
    found = findings_frame(
        beyond.select(
            pl.lit(CAPACITY_RULE_ID).alias("rule_id"),
            pl.lit("warning").alias("severity"),
            pl.lit("plausibility").alias("category"),
            pl.lit("uniqueness").alias("subcategory"),
            pl.lit("patients").alias("table"),
            pl.col("site_b").alias("site_id"),
            format_text("{}~{}", "site_a", "site_b").alias("value"),
            format_text(
                "linkage capacity exceeded between {} and {}: with the evidence both record "
                "({}) the model can tell about {}% of their expected {} shared patients from "
                "look-alikes at p >= {} ({} pairs of records); a pair agreeing on all of it "
                "scores {}, and {} pairs of different patients are expected to agree on all of "
                "it by chance. Pairs below the threshold are not listed; more evidence (calendar "
                "dates, a diagnosis month) would separate them (capacity of this evidence: "
                "about {} records)",
                "site_a",
                "site_b",
                "evidence",
                (pl.col("predicted_recall") * 100).round(0).cast(pl.Int64),
                pl.col("expected_duplicates").round(0).cast(pl.Int64),
                pl.lit(threshold),
                (pl.col("records_a") * pl.col("records_b")),
                pl.col("best_probability").round(4),
                pl.col("chance_full_agreement").round(2),
                pl.col("capacity_records"),
            ).alias("message"),
        )
    )
    return _with_pair_in_id(found)


def em_findings(em: lk.EMCheck) -> pl.DataFrame:
    """EM next to the expert values: a warning when an EM session did not converge, info for
    every level whose EM weight differs by more than ``lk.EM_DISAGREEMENT_BITS``."""
    from cartreg.findings import empty_findings, findings_frame

    rows = [
        {
            "rule_id": EM_RULE_ID,
            "severity": "warning",
            "category": "plausibility",
            "subcategory": "uniqueness",
            "value": s["blocking"],
            "message": f"EM did not converge in {s['iterations']} iterations (blocking on "
            f"{s['blocking']}): its estimates are not reliable; the expert values are used",
        }
        for s in em.sessions
        if not s["converged"]
    ]
    for d in em.disagreements.iter_rows(named=True):  # a handful of levels
        rows.append(
            {
                "rule_id": EM_RULE_ID,
                "severity": "info",
                "category": "plausibility",
                "subcategory": "uniqueness",
                "value": f"{d['comparison']}: {d['level']}",
                "message": f"EM disagrees with the expert weight of {d['comparison']} "
                f"'{d['level']}': {d['em_weight']:+.1f} against {d['expert_weight']:+.1f} "
                "(the expert value is used; review linkage_model.yaml if the data should win)",
            }
        )
    if not rows:
        return empty_findings()
    return _with_pair_in_id(findings_frame(pl.DataFrame(rows)))


# ---- a coordinator's review of one pair ----------------------------------------------------


def read_pair(merged: Path | str, pair_id: str) -> dict[str, Any]:
    """The row of ``pair_id`` in a merge's ``duplicates.csv``."""
    from cartreg.errors import InputError

    path = Path(merged) / "duplicates.csv"
    if not path.is_file():
        raise InputError(
            "no duplicates.csv here", where=str(merged), hint="give a `registry merge` --out folder"
        )
    frame = pl.read_csv(path, infer_schema_length=None, schema_overrides=_CSV_TYPES)
    wanted = pair_id.strip()
    row = frame.filter(pl.col("pair_id") == wanted)
    if row.height == 0:
        raise InputError(
            f"pair {wanted[:40]} is not listed", where=str(path), hint=_pair_hint(frame, wanted)
        )
    return row.row(0, named=True)


def _pair_hint(frame: pl.DataFrame, wanted: str) -> str:
    """What to give instead of an unlisted pair id: the listed ids it begins, or the form."""
    if not wanted.upper().startswith("DUP-"):
        return "pair ids start with DUP- (see the pair_id column of duplicates.csv)"
    started = sorted(p for p in frame["pair_id"].to_list() if p.upper().startswith(wanted.upper()))
    if len(started) == 1:
        return f"did you mean {started[0]}? (give the whole id)"
    if started:
        return f"{len(started)} listed ids begin so: give the whole id"
    return "copy the id from the pair_id column of this duplicates.csv"


_CSV_TYPES = {c: pl.String for c in ("pair_id", "cluster_id", "key_a", "key_b", *LINK_COLUMNS)}


def pair_explanation(row: dict[str, Any], model: lk.LinkageModel | None = None) -> dict[str, Any]:
    """How a pair's match weight adds up: the prior, then each comparison's level and weight,
    the running total and the match probability. Comparison names, levels and weights only: no
    value of either record."""
    model = model or lk.load_model()
    levels = dict(
        part.split(": ", 1) for part in (row.get("evidence") or "").split("; ") if ": " in part
    )
    steps = []
    total = row.get("mw_prior")
    if total is not None:
        steps.append(
            {
                "comparison": "prior",
                "level": "two records of different sites",
                "match_weight": total,
                "cumulative": total,
            }
        )
    for comp in model.comparisons:
        weight = row.get(f"mw_{comp.name}")
        if weight is None or total is None:
            continue
        total += weight
        steps.append(
            {
                "comparison": comp.name,
                "level": levels.get(comp.name, "missing"),
                "match_weight": weight,
                "cumulative": total,
            }
        )
    return {
        "pair_id": row["pair_id"],
        "cluster_id": row.get("cluster_id"),
        "site_a": row["site_a"],
        "key_a": row["key_a"],
        "site_b": row["site_b"],
        "key_b": row["key_b"],
        "match_probability": row.get("match_probability"),
        "match_weight": row.get("match_weight"),
        "steps": steps,
        "decision": row.get("decision"),
        "keep": row.get("keep"),
        "reason": row.get("reason"),
    }
