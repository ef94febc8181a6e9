"""The linkage model: its parameters, their documentation, the records it compares, EM."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from cartreg.errors import ConfigError
from cartreg.paths import repo_root
from cartreg.registry import linkage as lk
from cartreg.synth.cohort import simulate_cohort

MODEL = lk.load_model()


def test_each_family_of_levels_is_a_distribution() -> None:
    for comp in MODEL.comparisons:
        families = {lv.family for lv in comp.scored} - {None} or {None}
        for family in families:
            levels = [lv for lv in comp.scored if lv.family in (None, family)]
            m = sum(lv.m or 0 for lv in levels)
            u = sum(lv.u or 0 for lv in levels)
            assert 0.95 <= m <= 1.05, (comp.name, family, m)
            assert 0.95 <= u <= 1.05, (comp.name, family, u)
        assert comp.levels[0].null and comp.levels[-1].sql == "ELSE"


def test_the_documented_parameters_are_the_model() -> None:
    doc = (repo_root() / "docs" / "registry.md").read_text(encoding="utf-8")
    rows = re.findall(
        r"^\| (\w+) \| ([^|]+?) \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \|$", doc, re.M
    )
    documented = {
        (c, re.sub(r" \(×frequency(, half)?\)", "", label)): (float(m), float(u), float(w))
        for c, label, m, u, w in rows
    }
    model = {
        (c.name, lv.label): (lv.m, lv.u, round(lv.weight, 1))
        for c in MODEL.comparisons
        for lv in c.scored
    }
    assert documented == model


@pytest.mark.parametrize(
    "change, message",
    [
        (("model: cartreg.linkage", "model: other"), "not a cartreg linkage model"),
        (("        m: 0.99\n", "        m: 1.5\n"), r"levels\[1\]\.m"),
        (("sql: ELSE, m: 0.01, u: 0.5}", "sql: 'sex_l <> sex_r', m: 0.01, u: 0.5}"), "ELSE"),
        (("threshold: 0.7", "threshold: high"), "threshold"),
        (("requires: [death_day]\n    event: true", "event: true"), "event comparison"),
    ],
)
def test_a_broken_model_file_is_a_config_error(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = lk.MODEL_FILE.read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "model.yaml"
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        lk.load_model(path)


def test_records_read_evidence_from_the_cdm_tables() -> None:
    cohort = simulate_cohort(60, 2, seed=3)
    patients = cohort.tables["patients"].with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("UNKNOWN"))
        .otherwise(pl.col("ph_status"))
        .alias("ph_status")
    )
    records = lk.linkage_records({**cohort.tables, "patients": patients})
    assert records.height == 60 and records.columns == list(lk.RECORD_SCHEMA)
    first = records.row(0, named=True)
    assert first["ph_status"] is None  # UNKNOWN is no evidence
    assert re.fullmatch(r"[YN]{3}", first["prior_therapy"])
    assert first["birth_age"] == round((first["birth_year"] + first["age"]) * 10)
    index = cohort.tables["car_t_infusions"].filter(pl.col("is_index_infusion"))
    assert first["inf_dn"] == index["infusion_date"][0].toordinal() - 719163


def test_records_carry_the_days_to_first_progression_and_death() -> None:
    cohort = simulate_cohort(200, 2, seed=5)
    records = lk.linkage_records(cohort.tables).select("unique_id", "progression_day", "death_day")
    first = (
        cohort.tables["progression_events"]
        .filter(pl.col("event_seq") == 1)
        .select(pl.col("patient_key").alias("unique_id"), pl.col("progression_day").alias("p"))
    )
    deaths = cohort.tables["follow_up"].select(
        pl.col("patient_key").alias("unique_id"), pl.col("death_day").alias("d")
    )
    both = records.join(first, on="unique_id", how="left").join(deaths, on="unique_id")
    assert 0 < both["p"].count() < both.height and 0 < both["d"].count() < both.height
    assert both["progression_day"].eq_missing(both["p"]).all()
    assert both["death_day"].eq_missing(both["d"]).all()


def test_value_frequencies_are_shrunk_towards_the_model_for_small_data() -> None:
    records = pl.DataFrame(
        {"birth_year": [1970, 1970], "inf_year": [2022, 2022], "product": ["a", "b"]}
    )
    for c, t in lk.RECORD_SCHEMA.items():
        if c not in records.columns:
            records = records.with_columns(pl.lit(None, dtype=t).alias(c))
    tf = lk.term_frequencies(records, MODEL)
    share = tf["birth_year"]["tf_birth_year"][0]
    assert 0.02 < share < 0.05  # two records of one year: not "every patient is born in 1970"


def test_em_check_sets_estimates_beside_the_expert_values() -> None:
    cohort = simulate_cohort(1500, 3, seed=11, duplicate_rate=0.05)
    records = lk.linkage_records(cohort.tables)
    sizes = dict(records.group_by("site_id").len().iter_rows())
    check = lk.em_check(records, MODEL, lk.prior_probability(sizes, 0.05), max_pairs=2e5)
    assert check.levels.height == sum(len(c.scored) for c in MODEL.comparisons)
    assert {s["blocking"] for s in check.sessions} == set(lk.EM_BLOCKING)
    assert all(isinstance(s["converged"], bool) for s in check.sessions)
    assert check.prior is not None and 0 < check.prior < 1
