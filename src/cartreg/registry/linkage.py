"""Probabilistic record linkage of patients across sites (Fellegi-Sunter, splink on DuckDB).

One record per patient and site: sex, birth year (or date), diagnosis month or its interval to
the index infusion, index infusion date (or year), product, Ph status and age at index, and
the days from the index infusion to the first progression and to death, read from the CDM
tables. The model (``linkage_model.yaml``) gives every comparison level an expert
m and u; splink scores the blocked candidate pairs of *different* sites with them, adjusting
exact agreements on skewed fields (birth year, infusion year, product, Ph status) for how
common the value is. Nothing here trains on the data by default: a small consortium cannot fit
EM, so :func:`em_check` only compares what EM would estimate with the expert values.

The prior, the probability that two records of different sites are one patient, follows from
the expected duplicate rate and the site sizes (:func:`prior_probability`), so the same pair
agreement is weaker evidence in a larger consortium; :func:`linkage_capacity` says beforehand,
per pair of sites, how many true pairs the evidence can still find at this size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg.errors import ConfigError

if TYPE_CHECKING:
    import duckdb

MODEL_FILE = Path(__file__).with_name("linkage_model.yaml")
# Columns of a linkage record (docs in linkage_model.yaml).
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "unique_id": pl.String(),
    "site_id": pl.String(),
    "sex": pl.String(),
    "birth_year": pl.Int64(),
    "birth_date": pl.Date(),
    "dx_month": pl.Int64(),
    "dx_dated": pl.Boolean(),
    "diagnosis_day": pl.Int64(),
    "inf_dn": pl.Int64(),
    "inf_year": pl.Int64(),
    "product": pl.String(),
    "ph_status": pl.String(),
    "age": pl.Float64(),
    "birth_age": pl.Int64(),
    "prior_therapy": pl.String(),
    "n_prior_lines": pl.Int64(),
    "progression_day": pl.Int64(),
    "death_day": pl.Int64(),
}
_PRIOR_THERAPY = ("prior_allohct", "prior_blinatumomab", "prior_inotuzumab")
_UNKNOWN = ("UNKNOWN",)  # vocabulary codes that say "not known": no evidence either way


@dataclass(frozen=True)
class Level:
    label: str
    sql: str
    m: float | None = None
    u: float | None = None
    tf: str | None = None
    tf_weight: float = 1.0
    null: bool = False
    why: str = ""
    family: str | None = None

    @property
    def weight(self) -> float:
        """Match weight log2(m/u) of the level (0 for the missing level)."""
        if self.null or self.m is None or self.u is None:
            return 0.0
        return math.log2(self.m / self.u)


@dataclass(frozen=True)
class Comparison:
    name: str
    description: str
    requires: tuple[str, ...]
    levels: tuple[Level, ...]
    # recorded only for patients who had the event (a progression, a death): its absence is
    # no evidence, and the capacity estimate counts it for the share of records that have it
    event: bool = False

    @property
    def scored(self) -> tuple[Level, ...]:
        """The levels that carry evidence (all but the missing level)."""
        return tuple(level for level in self.levels if not level.null)


@dataclass(frozen=True)
class LinkageModel:
    comparisons: tuple[Comparison, ...]
    expected_duplicate_rate: float
    threshold: float
    blocking: tuple[str, ...]
    source: str

    def comparison(self, name: str) -> Comparison:
        return next(c for c in self.comparisons if c.name == name)


def _number(value: Any, *, path: Path, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        raise ConfigError(f"expected a number in ({low:g}, {high:g}]", path=path, key=key)
    return float(value)


def load_model(path: Path | str | None = None) -> LinkageModel:
    """The linkage model from YAML (the bundled expert model by default)."""
    from cartreg.yamlio import load_yaml

    path = Path(path) if path is not None else MODEL_FILE
    raw = load_yaml(path)
    if not isinstance(raw, dict) or raw.get("model") != "cartreg.linkage":
        raise ConfigError("not a cartreg linkage model (model: cartreg.linkage)", path=path)
    comparisons = []
    for i, comp in enumerate(raw.get("comparisons") or []):
        key = f"comparisons[{i}]"
        if not isinstance(comp, dict) or not isinstance(comp.get("levels"), list):
            raise ConfigError("expected a mapping with levels", path=path, key=key)
        levels = []
        for j, lv in enumerate(comp["levels"]):
            lkey = f"{key}.levels[{j}]"
            if not isinstance(lv, dict) or not isinstance(lv.get("sql"), str):
                raise ConfigError("expected a level with label and sql", path=path, key=lkey)
            null = bool(lv.get("missing", False))
            m = None if null else _number(lv.get("m"), path=path, key=f"{lkey}.m", low=0, high=1)
            u = None if null else _number(lv.get("u"), path=path, key=f"{lkey}.u", low=0, high=1)
            levels.append(
                Level(
                    label=str(lv.get("label", f"level {j}")),
                    sql=lv["sql"],
                    m=m,
                    u=u,
                    tf=lv.get("tf"),
                    tf_weight=float(lv.get("tf_weight", 1.0)),
                    null=null,
                    why=str(lv.get("why", "")),
                    family=lv.get("family"),
                )
            )
        if not levels or levels[-1].sql != "ELSE":
            raise ConfigError("the last level must be ELSE", path=path, key=key)
        if comp.get("event") and not comp.get("requires"):
            raise ConfigError("an event comparison names its field in requires", path=path, key=key)
        comparisons.append(
            Comparison(
                name=str(comp.get("name")),
                description=" ".join(str(comp.get("description", "")).split()),
                requires=tuple(comp.get("requires") or ()),
                levels=tuple(levels),
                event=bool(comp.get("event", False)),
            )
        )
    if not comparisons:
        raise ConfigError("no comparisons", path=path, key="comparisons")
    return LinkageModel(
        comparisons=tuple(comparisons),
        expected_duplicate_rate=_number(
            raw.get("expected_duplicate_rate"),
            path=path,
            key="expected_duplicate_rate",
            low=0,
            high=1,
        ),
        threshold=_number(raw.get("threshold"), path=path, key="threshold", low=0, high=1),
        blocking=tuple(str(b) for b in raw.get("blocking") or ()),
        source=str(path),
    )


# ---- records -----------------------------------------------------------------------------


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


def linkage_records(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """One linkage record per patient (``RECORD_SCHEMA``) from the CDM tables."""
    patients = tables.get("patients", pl.DataFrame())
    if patients.height == 0 or "patient_key" not in patients.columns:
        return empty_records()

    def col(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype)

    dx = col(patients, "diagnosis_date", pl.Date())
    base = patients.lazy().select(
        pl.col("patient_key").cast(pl.String).alias("unique_id"),
        col(patients, "site_id", pl.String()).alias("site_id"),
        col(patients, "sex", pl.String()).alias("sex"),
        col(patients, "birth_year", pl.Int64()).alias("birth_year"),
        col(patients, "birth_date", pl.Date()).alias("birth_date"),
        (dx.dt.year().cast(pl.Int64) * 12 + dx.dt.month().cast(pl.Int64) - 1).alias("dx_month"),
        dx.is_not_null().alias("dx_dated"),
        col(patients, "diagnosis_day", pl.Int64()).alias("diagnosis_day"),
        col(patients, "ph_status", pl.String()).alias("ph_status"),
        col(patients, "age_at_index_years", pl.Float64()).round(1).alias("age"),
        # Y/N per prior therapy; unknown if any is not a plain yes or no
        pl.concat_str(
            [
                pl.when(col(patients, c, pl.String()).is_in(["Y", "N"])).then(
                    col(patients, c, pl.String())
                )
                for c in _PRIOR_THERAPY
            ]
        ).alias("prior_therapy"),
        col(patients, "n_prior_lines", pl.Int64()).alias("n_prior_lines"),
    )
    infusions = tables.get("car_t_infusions", pl.DataFrame())
    if infusions.height and {"patient_key", "is_index_infusion"} <= set(infusions.columns):
        date = col(infusions, "infusion_date", pl.Date())
        index = (
            infusions.lazy()
            .filter(pl.col("is_index_infusion").fill_null(False))
            .select(
                pl.col("patient_key").cast(pl.String).alias("unique_id"),
                date.cast(pl.Int64).alias("inf_dn"),
                pl.coalesce(
                    col(infusions, "infusion_year", pl.Int64()), date.dt.year().cast(pl.Int64)
                ).alias("inf_year"),
                col(infusions, "product", pl.String()).alias("product"),
            )
            .unique("unique_id", keep="first", maintain_order=True)
        )
        base = base.join(index, on="unique_id", how="left", maintain_order="left")
    progression = tables.get("progression_events", pl.DataFrame())
    if progression.height and {"patient_key", "event_seq", "progression_day"} <= set(
        progression.columns
    ):
        # days from the index infusion to the first progression (a day offset: de-identified
        # sites give it too)
        first = (
            progression.lazy()
            .filter(pl.col("event_seq") == 1)
            .group_by(pl.col("patient_key").cast(pl.String).alias("unique_id"))
            .agg(pl.col("progression_day").cast(pl.Int64).min().alias("progression_day"))
        )
        base = base.join(first, on="unique_id", how="left", maintain_order="left")
    follow_up = tables.get("follow_up", pl.DataFrame())
    if follow_up.height and {"patient_key", "death_day"} <= set(follow_up.columns):
        death = (
            follow_up.lazy()
            .group_by(pl.col("patient_key").cast(pl.String).alias("unique_id"))
            .agg(pl.col("death_day").cast(pl.Int64).max().alias("death_day"))
        )
        base = base.join(death, on="unique_id", how="left", maintain_order="left")
    records = (
        base.unique("unique_id", keep="first", maintain_order=True)
        .with_columns(
            pl.when(pl.col("ph_status").is_in(_UNKNOWN))
            .then(None)
            .otherwise(pl.col("ph_status"))
            .alias("ph_status"),
            ((pl.col("birth_year") + pl.col("age")) * 10).round().cast(pl.Int64).alias("birth_age"),
        )
        .collect()
    )
    missing = [
        pl.lit(None, dtype=t).alias(c) for c, t in RECORD_SCHEMA.items() if c not in records.columns
    ]
    return records.with_columns(missing).select(list(RECORD_SCHEMA)).cast(pl.Schema(RECORD_SCHEMA))


# ---- the prior ---------------------------------------------------------------------------


def cross_site_pairs(site_sizes: Mapping[str, int]) -> int:
    """Pairs of records of different sites."""
    total = sum(site_sizes.values())
    return (total * total - sum(n * n for n in site_sizes.values())) // 2


def prior_probability(site_sizes: Mapping[str, int], rate: float) -> float:
    """P(two records of different sites are one patient): the expected duplicate pairs
    (``rate`` of the patients reported twice) over the pairs of records of different sites."""
    pairs = cross_site_pairs(site_sizes)
    if pairs == 0:
        return 0.5
    patients = sum(site_sizes.values()) / (1 + rate)
    return min(0.5, max(1e-12, rate * patients / pairs))


def logit2(p: float) -> float:
    return math.log2(p / (1 - p))


# ---- splink ------------------------------------------------------------------------------


def splink_settings(model: LinkageModel, prior: float) -> dict[str, Any]:
    """A splink settings dictionary with the model's fixed m and u values."""
    comparisons = []
    for comp in model.comparisons:
        levels = []
        for level in comp.levels:
            entry: dict[str, Any] = {
                "sql_condition": level.sql,
                "label_for_charts": level.label,
            }
            if level.null:
                entry["is_null_level"] = True
            else:
                entry["m_probability"] = level.m
                entry["u_probability"] = level.u
            if level.tf:
                entry["tf_adjustment_column"] = level.tf
                entry["tf_adjustment_weight"] = level.tf_weight
            levels.append(entry)
        comparisons.append(
            {
                "output_column_name": comp.name,
                "comparison_description": comp.description,
                "comparison_levels": levels,
            }
        )
    different_sites = "l.site_id <> r.site_id"
    return {
        # one input table with the site as source dataset: clustering can then keep at most
        # one record per site (the blocking rules already never pair two of one site)
        "link_type": "link_and_dedupe",
        "unique_id_column_name": "unique_id",
        "source_dataset_column_name": "site_id",
        "probability_two_random_records_match": prior,
        "comparisons": comparisons,
        "blocking_rules_to_generate_predictions": [
            f"({rule}) AND {different_sites}" for rule in model.blocking
        ],
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": True,
        "additional_columns_to_retain": ["site_id"],
    }


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for splink that never downloads or loads extensions."""
    import duckdb

    conn = duckdb.connect(":memory:")
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    return conn


def _quiet_splink() -> None:
    # splink logs every step, and warns about things cartreg reports itself (an untrained
    # model, levels EM never saw); the library never prints: the CLI reports.
    logging.getLogger("splink").setLevel(logging.ERROR)


class _Collect(logging.Handler):
    """Keeps splink's warnings during an EM check, for its report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


# Pairs scoring at least this probability are kept with the linkage state, so that a later
# merge can re-list them under a new prior or threshold without scoring them again.
KEEP_PROBABILITY = 0.05


def pair_schema(model: LinkageModel) -> dict[str, pl.DataType]:
    """Scored pairs: the two records (sites in order), the evidence weight (sum of the
    comparisons' match weights, prior excluded), days between index infusions, and per
    comparison its level and match weight."""
    schema: dict[str, pl.DataType] = {
        "key_a": pl.String(),
        "site_a": pl.String(),
        "key_b": pl.String(),
        "site_b": pl.String(),
        "evidence_weight": pl.Float64(),
        "days_apart": pl.Int64(),
    }
    for comp in model.comparisons:
        schema[f"level_{comp.name}"] = pl.String()
        schema[f"mw_{comp.name}"] = pl.Float64()
    return schema


def empty_pairs(model: LinkageModel) -> pl.DataFrame:
    return pl.DataFrame(schema=pair_schema(model))


def _from_splink(predicted: Any, model: LinkageModel) -> pl.DataFrame:
    """splink's prediction table as ``pair_schema`` rows (site_a before site_b)."""
    raw = pl.from_arrow(predicted.as_duckdbpyrelation().to_arrow_table())
    assert isinstance(raw, pl.DataFrame)
    if raw.height == 0:
        return empty_pairs(model)
    swap = pl.col("site_id_l") > pl.col("site_id_r")

    def side(left: str, right: str) -> tuple[pl.Expr, pl.Expr]:
        a = pl.when(swap).then(pl.col(right)).otherwise(pl.col(left))
        b = pl.when(swap).then(pl.col(left)).otherwise(pl.col(right))
        return a, b

    key_a, key_b = side("unique_id_l", "unique_id_r")
    site_a, site_b = side("site_id_l", "site_id_r")
    columns = [
        key_a.alias("key_a"),
        site_a.alias("site_a"),
        key_b.alias("key_b"),
        site_b.alias("site_b"),
        (pl.col("inf_dn_l") - pl.col("inf_dn_r")).abs().alias("days_apart"),
    ]
    weights = []
    for comp in model.comparisons:
        scored = comp.scored
        # splink numbers the levels that carry evidence from the last (0) up; missing is -1
        labels = {len(scored) - 1 - i: level.label for i, level in enumerate(scored)}
        labels[-1] = next((lv.label for lv in comp.levels if lv.null), "missing")
        tf = f"mw_tf_adj_{comp.name}"
        weight = pl.col(f"mw_{comp.name}") + (
            pl.col(tf).fill_null(0.0) if tf in raw.columns else pl.lit(0.0)
        )
        weights.append(weight)
        columns.append(
            pl.col(f"gamma_{comp.name}")
            .replace_strict(labels, return_dtype=pl.String)
            .alias(f"level_{comp.name}")
        )
        columns.append(weight.alias(f"mw_{comp.name}"))
    columns.append(pl.sum_horizontal(weights).alias("evidence_weight"))
    schema = pair_schema(model)
    return raw.select(columns).select(list(schema)).cast(pl.Schema(schema))


# Pseudo-records of the model's average: a value's frequency is only trusted as far as the
# data can tell it (two records with one birth year say little about how common it is).
TF_PSEUDO_COUNT = 100


def term_frequencies(records: pl.DataFrame, model: LinkageModel) -> dict[str, pl.DataFrame]:
    """Per frequency-adjusted column, each value's share of the records, shrunk towards the
    model's u of an exact agreement (``(count + k u) / (n + k)``, k = ``TF_PSEUDO_COUNT``)."""
    out: dict[str, pl.DataFrame] = {}
    for comp in model.comparisons:
        exact = {lv.tf: lv.u for lv in comp.scored if lv.tf and lv.sql == f"{lv.tf}_l = {lv.tf}_r"}
        for level in comp.scored:
            if not level.tf or level.tf in out:
                continue
            u = exact.get(level.tf, level.u) or 0.0
            values = records.select(pl.col(level.tf)).drop_nulls()
            n = values.height
            out[level.tf] = (
                values.group_by(level.tf)
                .len()
                .select(
                    level.tf,
                    ((pl.col("len") + TF_PSEUDO_COUNT * u) / (n + TF_PSEUDO_COUNT)).alias(
                        f"tf_{level.tf}"
                    ),
                )
                .sort(level.tf)
            )
    return out


def probability(evidence_weight: pl.Expr, prior: float) -> pl.Expr:
    """Match probability from the evidence weight and the prior."""
    total = evidence_weight + logit2(prior)
    return 1.0 / (1.0 + (2.0 ** (-total)))


def evidence_threshold(threshold: float, prior: float) -> float:
    """The evidence weight a pair needs to reach ``threshold`` under ``prior``."""
    return logit2(threshold) - logit2(prior)


@dataclass
class Linkage:
    """A splink linker over every current record, with term frequencies computed."""

    linker: Any
    db_api: Any
    records: pl.DataFrame
    model: LinkageModel
    prior: float

    @classmethod
    def open(cls, records: pl.DataFrame, model: LinkageModel, prior: float) -> Linkage:
        from splink import DuckDBAPI, Linker

        _quiet_splink()
        db_api = DuckDBAPI(connection=duckdb_connection())
        sdf = db_api.register(records.to_arrow(), table_name="cartreg_linkage_records")
        linker = Linker(sdf, splink_settings(model, prior), log_level=None)
        for column, table in term_frequencies(records, model).items():
            tf = db_api.register(table.to_arrow(), table_name=f"cartreg_tf_{column}")
            linker.table_management.register_term_frequency_lookup(tf, column)
        return cls(linker, db_api, records, model, prior)

    def _keep_threshold(self) -> float:
        return KEEP_PROBABILITY

    def score_all(self) -> pl.DataFrame:
        """Every blocked pair of records of different sites (above the keep threshold)."""
        predicted = self.linker.inference.predict(
            threshold_match_probability=self._keep_threshold(), warning_mode="never"
        )
        pairs = _from_splink(predicted, self.model)
        predicted.drop_table_from_database_and_remove_from_cache()
        return pairs

    def score_new(self, new_keys: Sequence[str]) -> pl.DataFrame:
        """Pairs that involve a new record only: new against existing records
        (``predict_between``) and new against new (``predict_within``), never a full re-run."""
        is_new = pl.col("unique_id").is_in(list(new_keys))
        new = self.records.filter(is_new)
        old = self.records.filter(~is_new)
        if new.height == 0:
            return empty_pairs(self.model)
        new_sdf = self.db_api.register(new.to_arrow(), table_name="cartreg_linkage_new")
        parts = [
            self.linker.inference.predict_within(
                new_sdf, threshold_match_probability=self._keep_threshold(), warning_mode="never"
            )
        ]
        if old.height:
            old_sdf = self.db_api.register(old.to_arrow(), table_name="cartreg_linkage_old")
            parts.append(
                self.linker.inference.predict_between(
                    new_sdf,
                    old_sdf,
                    threshold_match_probability=self._keep_threshold(),
                    warning_mode="never",
                )
            )
        return pl.concat([_from_splink(p, self.model) for p in parts])

    def clusters(self, edges: pl.DataFrame, threshold: float) -> pl.DataFrame:
        """Clusters of records joined by ``edges`` (key_a, site_a, key_b, site_b,
        match_probability) at or above ``threshold``, at most one record per site in a
        cluster (splink's single best links). Returns ``unique_id``, ``cluster`` for records
        in clusters of two or more."""
        schema = {"unique_id": pl.String, "cluster": pl.String}
        if edges.height == 0:
            return pl.DataFrame(schema=schema)
        table = edges.select(
            pl.col("key_a").alias("unique_id_l"),
            pl.col("key_b").alias("unique_id_r"),
            pl.col("site_a").alias("site_id_l"),
            pl.col("site_b").alias("site_id_r"),
            "match_probability",
        )
        sdf = self.db_api.register(table.to_arrow(), table_name="cartreg_linkage_edges")
        sites = self.records["site_id"].unique().drop_nulls().sort().to_list()
        clustered = self.linker.clustering.cluster_using_single_best_links(
            sdf, duplicate_free_datasets=sites, threshold_match_probability=threshold
        )
        raw = pl.from_arrow(
            clustered.as_duckdbpyrelation().select("unique_id", "cluster_id").to_arrow_table()
        )
        assert isinstance(raw, pl.DataFrame)
        return (
            raw.select(
                pl.col("unique_id").cast(pl.String),
                pl.col("cluster_id").cast(pl.String).alias("cluster"),
            )
            .filter(pl.len().over("cluster") > 1)
            .sort("cluster", "unique_id")
        )


# ---- linkage capacity --------------------------------------------------------------------

# A pair of sites whose evidence lets the model find fewer true pairs than this share, at the
# threshold and the consortium's size, is reported as beyond the linkage capacity.
MIN_RECALL = 0.5
_BIN = 0.05  # bits: resolution of the weight distributions
_SAMPLE = 200  # records per site whose perfect partner at the other site is examined


def level_case_sql(comp: Comparison) -> str:
    """SQL giving the index (in ``comp.levels``) of the level a pair falls in."""
    parts = []
    for i, level in enumerate(comp.levels):
        parts.append(f"ELSE {i}" if level.sql == "ELSE" else f"WHEN {level.sql} THEN {i}")
    return "CASE " + " ".join(parts) + " END"


def _weight_distribution(atoms: list[list[tuple[float, float]]]) -> tuple[float, Any]:
    """The distribution of a sum of independent discrete weights, on a grid of ``_BIN`` bits:
    (lowest weight, probabilities)."""
    import numpy as np

    dist = np.zeros(1)
    dist[0] = 1.0
    offset = 0.0
    for a in atoms:
        a_low = min(w for w, _ in a)
        width = round((max(w for w, _ in a) - a_low) / _BIN) + 1
        kernel = np.zeros(width)
        for w, p in a:
            kernel[round((w - a_low) / _BIN)] += p
        dist = np.convolve(dist, kernel)
        offset += a_low
    return offset, dist


def _tail(dist: tuple[float, Any], cut: float) -> float:
    """P(W >= cut) of a distribution from :func:`_weight_distribution`."""
    low, probs = dist
    start = max(0, math.ceil((cut - low) / _BIN - 1e-9))
    return float(probs[start:].sum()) if start < len(probs) else 0.0


def _reachable(comp: Comparison, top: Level) -> list[Level]:
    """The levels a pair of these sites can fall in: the top level's family and the shared."""
    return [lv for lv in comp.scored if lv.family in (None, top.family)]


def _distributions(
    model: LinkageModel, tops: dict[str, int], shares: Mapping[str, tuple[float, float]]
) -> tuple[
    list[list[tuple[float, float]]], list[list[tuple[float, float]]], float, float, list[str]
]:
    """Weight atoms under M and U, the weight of full agreement, its chance rate and the
    comparisons used, for a pair of sites whose perfect partner reaches level ``tops[c]``.
    An event comparison counts for the share of pairs that both have the event (``shares[c]``:
    of true pairs, of pairs of different patients), weight 0 for the rest; it is left out of
    the full agreement, which every pair can reach."""
    m_atoms, u_atoms, used = [], [], []
    best = 0.0
    chance = 1.0
    for comp in model.comparisons:
        top = comp.levels[tops[comp.name]]
        if top.null:
            continue
        reach = _reachable(comp, top)
        m_sum = sum(lv.m or 0.0 for lv in reach)
        u_sum = sum(lv.u or 0.0 for lv in reach)
        q_m, q_u = shares.get(comp.name, (1.0, 1.0)) if comp.event else (1.0, 1.0)
        m_atom = [(lv.weight, q_m * (lv.m or 0.0) / m_sum) for lv in reach]
        u_atom = [(lv.weight, q_u * (lv.u or 0.0) / u_sum) for lv in reach]
        if comp.event:
            m_atom.append((0.0, 1.0 - q_m))
            u_atom.append((0.0, 1.0 - q_u))
        else:
            best += top.weight
            chance *= (top.u or 1.0) / u_sum
        m_atoms.append(m_atom)
        u_atoms.append(u_atom)
        used.append(comp.name)
    return m_atoms, u_atoms, best, chance, used


# A site records an event field (a progression, a death) when at least this share of its
# records have it; other fields when at least half do.
_EVENT_SHARE = 0.05


def _top_levels(records: pl.DataFrame, model: LinkageModel) -> pl.DataFrame:
    """Per pair of sites, the level a record's perfect partner at the other site reaches in each
    comparison: records of site a compared with themselves, stripped of the fields site b
    leaves mostly empty. One row per ordered pair of sites. For an event comparison, the level
    is the most common among records with the event, and ``__share_<name>`` is the share of
    records of site a whose partner has it (``__share_b_<name>``: of site b's records)."""
    import duckdb

    fields = [c for c in RECORD_SCHEMA if c not in ("unique_id", "site_id")]
    event_fields = {f for c in model.comparisons if c.event for f in c.requires}
    shares = records.group_by("site_id").agg(
        [pl.col(c).is_not_null().mean().alias(c) for c in fields]
    )
    sample = records.filter(pl.int_range(pl.len()).over("site_id") < _SAMPLE)
    pairs = sample.join(shares.rename({c: f"__has_{c}" for c in fields}), how="cross")
    pairs = pairs.rename({"site_id_right": "site_b"} if "site_id_right" in pairs.columns else {})
    pairs = pairs.filter(pl.col("site_id") != pl.col("site_b"))
    left = [pl.col(c).alias(f"{c}_l") for c in fields]
    right = [
        pl.when(pl.col(f"__has_{c}") >= (_EVENT_SHARE if c in event_fields else 0.5))
        .then(pl.col(c))
        .otherwise(None)
        .alias(f"{c}_r")
        for c in fields
    ]
    events = [c for c in model.comparisons if c.event]
    share_b = [pl.col(f"__has_{c.requires[0]}").alias(f"__share_b_{c.name}") for c in events]
    table = pairs.select(pl.col("site_id").alias("site_a"), "site_b", *left, *right, *share_b)
    conn = duckdb.connect(":memory:")
    try:
        conn.execute("SET autoinstall_known_extensions = false")
        conn.execute("SET autoload_known_extensions = false")
        conn.register("pairs", table.to_arrow())
        cases = ", ".join(f"{level_case_sql(c)} AS {c.name}" for c in model.comparisons)
        extra = "".join(f", __share_b_{c.name}" for c in events)
        rel = conn.sql(f"SELECT site_a, site_b, {cases}{extra} FROM pairs")
        levels = pl.from_arrow(rel.to_arrow_table())
    finally:
        conn.close()
    assert isinstance(levels, pl.DataFrame)
    aggs = []
    for comp in model.comparisons:
        if not comp.event:
            aggs.append(pl.col(comp.name).mode().min().alias(comp.name))
            continue
        null = next(i for i, lv in enumerate(comp.levels) if lv.null)
        has = pl.col(comp.name) != null
        aggs += [
            pl.col(comp.name).filter(has).mode().min().fill_null(null).alias(comp.name),
            has.mean().alias(f"__share_{comp.name}"),
            pl.col(f"__share_b_{comp.name}").first(),
        ]
    return levels.group_by("site_a", "site_b").agg(aggs)


CAPACITY_SCHEMA: dict[str, pl.DataType] = {
    "site_a": pl.String(),
    "site_b": pl.String(),
    "records_a": pl.Int64(),
    "records_b": pl.Int64(),
    "evidence": pl.String(),
    "best_probability": pl.Float64(),
    "expected_duplicates": pl.Float64(),
    "predicted_recall": pl.Float64(),
    "expected_chance_pairs": pl.Float64(),
    "chance_full_agreement": pl.Float64(),
    "capacity_records": pl.Int64(),
    "separable": pl.Boolean(),
}


def linkage_capacity(
    records: pl.DataFrame, model: LinkageModel, *, threshold: float, rate: float | None = None
) -> pl.DataFrame:
    """For each pair of sites, what the evidence both record can do at the consortium's size
    (``CAPACITY_SCHEMA``), under the model's own m and u (average values, no frequency
    adjustment):

    * ``best_probability``: the match probability of a pair agreeing on everything both sites
      record; ``chance_full_agreement``: how many pairs of *different* patients are expected
      to agree on all of it;
    * ``predicted_recall``: the share of true duplicates scoring at or above ``threshold``;
      ``expected_chance_pairs``: pairs of different patients expected at or above it;
    * ``capacity_records``: the consortium size (all sites grown alike) up to which the
      predicted recall stays at ``MIN_RECALL``; ``separable``: the recall is that high now.
    """
    rate = model.expected_duplicate_rate if rate is None else rate
    sizes = dict(records.group_by("site_id").len().iter_rows())
    if len(sizes) < 2:
        return pl.DataFrame(schema=CAPACITY_SCHEMA)
    total = sum(sizes.values())
    prior = prior_probability(sizes, rate)
    rows = []
    for top in _top_levels(records, model).iter_rows(named=True):
        site_a, site_b = top["site_a"], top["site_b"]
        if site_a > site_b:
            continue
        tops = {c.name: int(top[c.name]) for c in model.comparisons}
        # event comparisons: true pairs both have the event as often as site a's records do;
        # pairs of different patients as often as records of both sites do
        event_shares = {
            c.name: (
                float(top[f"__share_{c.name}"]),
                float(top[f"__share_{c.name}"]) * float(top[f"__share_b_{c.name}"]),
            )
            for c in model.comparisons
            if c.event
        }
        m_atoms, u_atoms, best, chance, used = _distributions(model, tops, event_shares)
        pairs = sizes[site_a] * sizes[site_b]
        if not used:
            m_dist = u_dist = (0.0, __import__("numpy").ones(1))
        else:
            m_dist, u_dist = _weight_distribution(m_atoms), _weight_distribution(u_atoms)

        def recall_at(scale: float, m_dist: Any = m_dist) -> float:
            # all sites grown by ``scale``: the prior falls by about that factor
            return _tail(m_dist, evidence_threshold(threshold, min(0.5, prior / scale)))

        recall = recall_at(1.0)
        cut = evidence_threshold(threshold, prior)
        low, high = 1e-3, 1e6
        if recall_at(low) < MIN_RECALL:
            capacity = 0
        else:
            for _ in range(60):  # bisection on the growth factor (log scale)
                mid = math.sqrt(low * high)
                low, high = (mid, high) if recall_at(mid) >= MIN_RECALL else (low, mid)
            capacity = int(total * low)
        rows.append(
            {
                "site_a": site_a,
                "site_b": site_b,
                "records_a": sizes[site_a],
                "records_b": sizes[site_b],
                "evidence": ", ".join(used),
                "best_probability": 1.0 / (1.0 + 2.0 ** (-(best + logit2(prior)))),
                "expected_duplicates": prior * pairs,
                "predicted_recall": recall,
                "expected_chance_pairs": pairs * _tail(u_dist, cut),
                "chance_full_agreement": pairs * chance,
                "capacity_records": capacity,
                "separable": recall >= MIN_RECALL,
            }
        )
    return pl.DataFrame(rows, schema=CAPACITY_SCHEMA).sort("site_a", "site_b")


# ---- EM as a check -----------------------------------------------------------------------

# EM sessions: each blocks on fields whose comparisons it then cannot estimate, so two
# sessions with different fields cover every comparison.
EM_BLOCKING = (
    "l.inf_dn = r.inf_dn",
    "l.birth_year = r.birth_year AND l.sex = r.sex AND l.prior_therapy = r.prior_therapy",
)
EM_DISAGREEMENT_BITS = 1.0  # a level whose EM weight differs more than this is reported


@dataclass
class EMCheck:
    """What EM estimates next to the expert values (never used for scoring)."""

    levels: pl.DataFrame  # comparison, level, expert/em m and u, weights, difference
    sessions: list[dict[str, Any]] = field(default_factory=list)  # rule, iterations, converged
    prior: float | None = None
    notes: list[str] = field(default_factory=list)  # splink's warnings (levels EM never saw)

    @property
    def disagreements(self) -> pl.DataFrame:
        return self.levels.filter(pl.col("difference").abs() > EM_DISAGREEMENT_BITS)

    @property
    def converged(self) -> bool:
        return all(s["converged"] for s in self.sessions)


def em_check(
    records: pl.DataFrame, model: LinkageModel, prior: float, *, max_pairs: float = 2e6
) -> EMCheck:
    """Estimate u by random sampling and m (and the prior) by EM, starting from the expert
    values, and set the estimates beside them."""
    splink_log = logging.getLogger("splink")
    collect = _Collect()
    splink_log.addHandler(collect)
    splink_log.setLevel(logging.WARNING)
    splink_log.propagate = False  # kept for the report, not printed
    try:
        linkage, sessions = _em_sessions(records, model, prior, max_pairs)
    finally:
        splink_log.removeHandler(collect)
        splink_log.propagate = True
        _quiet_splink()
    trained = linkage.linker._settings_obj.comparisons
    rows = []
    for comp, splink_comp in zip(model.comparisons, trained, strict=True):
        for level, fitted in zip(comp.levels, splink_comp.comparison_levels, strict=True):
            if level.null:
                continue
            em_m = _probability_or_none(fitted.m_probability)
            em_u = _probability_or_none(fitted.u_probability)
            em_weight = math.log2(em_m / em_u) if em_m and em_u else None
            rows.append(
                {
                    "comparison": comp.name,
                    "level": level.label,
                    "expert_m": level.m,
                    "expert_u": level.u,
                    "em_m": em_m,
                    "em_u": em_u,
                    "expert_weight": level.weight,
                    "em_weight": em_weight,
                    "difference": None if em_weight is None else em_weight - level.weight,
                }
            )
    levels = pl.DataFrame(
        rows,
        schema={
            "comparison": pl.String,
            "level": pl.String,
            "expert_m": pl.Float64,
            "expert_u": pl.Float64,
            "em_m": pl.Float64,
            "em_u": pl.Float64,
            "expert_weight": pl.Float64,
            "em_weight": pl.Float64,
            "difference": pl.Float64,
        },
    )
    em_prior = linkage.linker._settings_obj._probability_two_random_records_match
    return EMCheck(levels=levels, sessions=sessions, prior=float(em_prior), notes=collect.messages)


def _em_sessions(
    records: pl.DataFrame, model: LinkageModel, prior: float, max_pairs: float
) -> tuple[Linkage, list[dict[str, Any]]]:
    """u by random sampling, then one EM session per blocking rule of ``EM_BLOCKING``; the
    linkage whose settings hold the estimates, and the sessions."""

    def fresh() -> Linkage:
        linkage = Linkage.open(records, model, prior)
        logging.getLogger("splink").setLevel(logging.WARNING)  # open() quietens it
        linkage.linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=1)
        return linkage

    def train(linkage: Linkage, rule: str) -> Any:
        return linkage.linker.training.estimate_parameters_using_expectation_maximisation(
            f"({rule}) AND l.site_id <> r.site_id",
            fix_u_probabilities=True,
            estimate_without_term_frequencies=True,
            populate_probability_two_random_records_match_from_trained_values=True,
        )

    linkage = fresh()
    max_iterations = linkage.linker._settings_obj.training_settings.max_iterations
    sessions: list[dict[str, Any]] = []
    trained: list[str] = []
    for rule in EM_BLOCKING:
        try:
            session = train(linkage, rule)
        except ValueError as exc:
            # splink refuses an m that EM drove to exactly zero (a level that only pairs of
            # different patients fall in): the session estimates nothing and leaves the linker
            # half-trained, so the sessions that did finish are run again on a fresh one
            logging.getLogger("splink").warning("EM session '%s' stopped: %s", rule, exc)
            sessions.append({"blocking": rule, "iterations": 0, "converged": False})
            linkage = fresh()
            for done in trained:
                train(linkage, done)
            continue
        trained.append(rule)
        history = getattr(session, "_core_model_settings_history", [])
        iterations = max(0, len(history) - 1)
        # splink stops after max_iterations whether or not the parameters settled
        sessions.append(
            {"blocking": rule, "iterations": iterations, "converged": iterations < max_iterations}
        )
    return linkage, sessions


def _probability_or_none(value: Any) -> float | None:
    """splink marks a level EM never saw with a text; that is no estimate."""
    return float(value) if isinstance(value, int | float) and 0 < value <= 1 else None
