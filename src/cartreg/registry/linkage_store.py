"""What the registry keeps for record linkage: reviewed link decisions, and the state a merge
leaves for the next one (kept pairs, cluster ids, record fingerprints).

The tables are created by the first writer that needs them, like the ``cdm_<table>`` tables: a
registry without them has no reviewed links and no linkage state yet. Keys are site keys: a
decision made on pseudonyms is resolved with the consortium secret when it is recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from cartreg.registry import linkage as lk
from cartreg.registry.duplicates import (
    LINK_COLUMNS,
    LinkageResult,
    LinkageState,
    check_links,
    empty_links,
)

if TYPE_CHECKING:
    from cartreg.registry.store import Registry

LINKAGE_TABLES = (
    """CREATE TABLE IF NOT EXISTS link_decisions (
        decided_at TIMESTAMPTZ NOT NULL, decided_by VARCHAR NOT NULL,
        key_a VARCHAR NOT NULL, key_b VARCHAR NOT NULL, decision VARCHAR NOT NULL,
        keep VARCHAR, reason VARCHAR, reviewer VARCHAR, source VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS linkage_runs (
        linked_at TIMESTAMPTZ NOT NULL, model_sha VARCHAR NOT NULL, mode VARCHAR NOT NULL,
        records BIGINT NOT NULL, new_records BIGINT NOT NULL, prior DOUBLE NOT NULL,
        min_probability DOUBLE NOT NULL, comparisons VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS linkage_records (
        unique_id VARCHAR NOT NULL, site_id VARCHAR NOT NULL, record_sha VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS linkage_pairs (
        key_a VARCHAR NOT NULL, site_a VARCHAR NOT NULL, key_b VARCHAR NOT NULL,
        site_b VARCHAR NOT NULL, evidence_weight DOUBLE NOT NULL, days_apart BIGINT,
        levels VARCHAR NOT NULL, weights VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS linkage_clusters (
        unique_id VARCHAR NOT NULL, cluster_id VARCHAR NOT NULL)""",
)
_SEP = "|"  # between the levels (and weights) of a kept pair, in model order


def _has_table(registry: Registry, name: str) -> bool:
    return bool(
        registry.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        )
    )


def ensure_linkage_tables(registry: Registry) -> None:
    for statement in LINKAGE_TABLES:
        registry.conn.execute(statement)


def load_decisions(registry: Registry) -> pl.DataFrame:
    """Every reviewed link kept in the registry (canonical site keys), oldest first."""
    if not _has_table(registry, "link_decisions"):
        return empty_links()
    return registry.frame(
        f"SELECT {', '.join(LINK_COLUMNS)} FROM link_decisions ORDER BY decided_at, rowid"
    )


def record_decisions(registry: Registry, links: pl.DataFrame, *, who: str, source: str) -> int:
    """Append reviewed links (canonical site keys) to the registry; returns how many."""
    from cartreg.registry.store import now_utc

    if links.height == 0:
        return 0
    ensure_linkage_tables(registry)
    rows = links.select(LINK_COLUMNS).with_columns(
        pl.lit(now_utc()).alias("decided_at"),
        pl.lit(who).alias("decided_by"),
        pl.lit(source).alias("source"),
    )
    registry.conn.register("__links", rows.to_arrow())
    try:
        registry.conn.execute(
            "INSERT INTO link_decisions (decided_at, decided_by, key_a, key_b, decision, keep, "
            "reason, reviewer, source) SELECT decided_at, decided_by, key_a, key_b, decision, "
            "keep, reason, reviewer, source FROM __links"
        )
    finally:
        registry.conn.unregister("__links")
    return links.height


def unrecorded(links: pl.DataFrame, kept: pl.DataFrame) -> pl.DataFrame:
    """``links`` that would change the registry's latest decision on their pair (a link file
    given to every merge is recorded once, not once per merge)."""
    if links.height == 0:
        return links

    def latest(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            pl.min_horizontal("key_a", "key_b").alias("__lo"),
            pl.max_horizontal("key_a", "key_b").alias("__hi"),
        ).unique(["__lo", "__hi"], keep="last", maintain_order=True)

    same = ["__lo", "__hi", "decision", "keep"]
    return (
        latest(links)
        .join(latest(kept).select(same), on=same, how="anti", nulls_equal=True)
        .drop("__lo", "__hi")
    )


def load_state(registry: Registry, model: lk.LinkageModel | None = None) -> LinkageState | None:
    """The linkage state the last merge kept, or None (never linked, or another model)."""
    model = model or lk.load_model()
    if not _has_table(registry, "linkage_runs"):
        return None
    last = registry.first_row(
        "SELECT model_sha, comparisons FROM linkage_runs ORDER BY linked_at DESC LIMIT 1"
    )
    names = [c.name for c in model.comparisons]
    if last is None or last[1] != _SEP.join(names):
        return None
    pairs = registry.frame(
        "SELECT key_a, site_a, key_b, site_b, evidence_weight, days_apart, levels, weights "
        "FROM linkage_pairs"
    )
    levels = pl.col("levels").str.split(_SEP)
    weights = pl.col("weights").str.split(_SEP)
    expanded = pairs.with_columns(
        [
            expr
            for i, name in enumerate(names)
            for expr in (
                levels.list.get(i).alias(f"level_{name}"),
                weights.list.get(i).cast(pl.Float64).alias(f"mw_{name}"),
            )
        ]
    ).with_columns(pl.col(f"level_{n}").replace("", None) for n in names)
    schema = lk.pair_schema(model)
    return LinkageState(
        model_sha=str(last[0]),
        records=registry.frame("SELECT unique_id, site_id, record_sha FROM linkage_records"),
        pairs=expanded.select(list(schema)).cast(pl.Schema(schema)),
        clusters=registry.frame("SELECT unique_id, cluster_id FROM linkage_clusters"),
    )


def save_state(
    registry: Registry, result: LinkageResult, model: lk.LinkageModel | None = None
) -> None:
    """Replace the kept linkage state with ``result``'s and log the run (in the caller's
    transaction)."""
    from cartreg.registry.store import now_utc

    model = model or lk.load_model()
    names = [c.name for c in model.comparisons]
    ensure_linkage_tables(registry)
    state = result.state
    pairs = state.pairs.select(
        "key_a",
        "site_a",
        "key_b",
        "site_b",
        "evidence_weight",
        "days_apart",
        pl.concat_str([pl.col(f"level_{n}").fill_null("") for n in names], separator=_SEP).alias(
            "levels"
        ),
        pl.concat_str(
            [pl.col(f"mw_{n}").cast(pl.String).fill_null("0") for n in names], separator=_SEP
        ).alias("weights"),
    )
    conn = registry.conn
    for table, frame in (
        ("linkage_records", state.records.select("unique_id", "site_id", "record_sha")),
        ("linkage_pairs", pairs),
        ("linkage_clusters", state.clusters.select("unique_id", "cluster_id")),
    ):
        conn.execute(f"DELETE FROM {table}")
        conn.register("__state", frame.to_arrow())
        try:
            conn.execute(f"INSERT INTO {table} SELECT * FROM __state")
        finally:
            conn.unregister("__state")
    conn.execute(
        "INSERT INTO linkage_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            now_utc(),
            state.model_sha,
            result.mode,
            result.records,
            result.new_records,
            result.prior,
            result.threshold,
            _SEP.join(names),
        ],
    )


def canonical_keys(registry: Registry, keys: list[str], secret: bytes | None) -> dict[str, str]:
    """Site keys for keys as shown in a merge (pseudonyms need the consortium secret)."""
    from cartreg.errors import InputError
    from cartreg.registry.pseudonym import PREFIX, pseudonym_map

    shown = [k for k in keys if k.startswith(f"{PREFIX}-")]
    out = {k: k for k in keys if k not in shown}
    if not shown:
        return out
    if secret is None:
        raise InputError(
            "these keys are consortium pseudonyms",
            where=", ".join(shown),
            hint="give the consortium secret ($CARTREG_SECRET or --secret-file) to record a "
            "decision on them",
        )
    stored = registry.frame("SELECT DISTINCT patient_key FROM cdm_patients")["patient_key"]
    aliases = pseudonym_map(stored, secret)
    back = dict(zip(aliases["pseudonym"].to_list(), aliases["patient_key"].to_list(), strict=True))
    missing = [k for k in shown if k not in back]
    if missing:
        raise InputError(
            "no patient in the registry has this pseudonym",
            where=missing[0],
            hint="check the key, and that the secret is the consortium's",
        )
    return {**out, **{k: back[k] for k in shown}}


def decide_pair(
    registry: Registry,
    *,
    key_a: str,
    key_b: str,
    decision: str,
    keep: str | None,
    reason: str,
    reviewer: str,
    secret: bytes | None = None,
) -> pl.DataFrame:
    """Record a reviewed decision on a pair (keys as shown in a merge) in the registry; it
    applies from the next merge on. Returns the recorded link (canonical site keys)."""
    from cartreg.errors import InputError
    from cartreg.registry.store import transaction

    # The command's own words first: check_links speaks of link-file fields.
    if decision == "same" and keep not in (key_a, key_b):
        raise InputError(
            f"--keep must name one of the pair's two records: {key_a} or {key_b}",
            hint="the record that stays in the merge",
        )
    link = check_links(
        pl.DataFrame(
            [
                {
                    "key_a": key_a,
                    "key_b": key_b,
                    "decision": decision,
                    "keep": keep,
                    "reason": reason,
                    "reviewer": reviewer,
                }
            ],
            schema=dict.fromkeys(LINK_COLUMNS, pl.String),
        ),
        path="cartreg registry link",
    )
    mapping = canonical_keys(registry, [key_a, key_b], secret)
    link = link.with_columns(pl.col(c).replace(mapping) for c in ("key_a", "key_b", "keep"))
    with transaction(registry):
        record_decisions(registry, link, who=reviewer, source="cartreg registry link")
    return link
