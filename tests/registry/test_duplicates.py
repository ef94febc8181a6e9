"""Cross-site duplicate pairs: the listed pairs, their explanations, clusters and decisions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartreg.errors import ConfigError
from cartreg.registry import linkage as lk
from cartreg.registry.duplicates import (
    capacity_findings,
    em_findings,
    find_duplicates,
    link_patients,
    load_links,
    resolve,
)
from tests.registry.helpers import Rows, combine, patient

SPLINK = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # each example runs splink (about a second)


def frames(rows: Rows) -> dict[str, pl.DataFrame]:
    site = pl.col("patient_key").str.extract(r"^([A-Z_]+)-", 1).alias("site_id")
    return {
        name: pl.DataFrame(r, infer_schema_length=None).with_columns(site)
        for name, r in rows.items()
    }


def with_history(rows: Rows, *, dx: str, age: float, lines: int = 2) -> Rows:
    """The patients of ``rows`` with a diagnosis date, age at index and treatment history."""
    for p in rows["patients"]:
        p.update(
            diagnosis_date=dt.date.fromisoformat(dx),
            age_at_index_years=age,
            ph_status="BCR_ABL1_NEG",
            n_prior_lines=lines,
            prior_allohct="N",
            prior_blinatumomab="Y",
            prior_inotuzumab="N",
        )
    return rows


def test_planted_pair_is_listed_with_probability_and_weights() -> None:
    rows = combine(
        patient("SITE_A", "1"),
        patient("SITE_B", "7", infusion="2022-03-03"),  # 2 days apart: listed
        patient("SITE_B", "8", infusion="2022-09-09", birth_year=1981),  # nothing alike
        patient("SITE_C", "1", sex="M", birth_year=1990, infusion="2019-05-05"),
    )
    pairs = find_duplicates(frames(rows))
    assert pairs.select("key_a", "key_b", "days_apart").rows() == [("SITE_A-1", "SITE_B-7", 2)]
    best = pairs.row(0, named=True)
    assert best["pair_id"].startswith("DUP-")
    assert best["match_probability"] >= 0.7
    assert "infusion: within 3 days" in best["evidence"]
    # the match weight is the prior's plus each comparison's
    parts = [best[c] for c in pairs.columns if c.startswith("mw_")]
    assert best["match_weight"] == pytest.approx(sum(parts))


def test_disagreement_lowers_the_probability() -> None:
    same = combine(patient("SITE_A", "1"), patient("SITE_B", "1"))
    other = combine(
        patient("SITE_A", "1"), patient("SITE_B", "1", product="brexucabtagene_autoleucel")
    )
    agreeing = link_patients(frames(same)).pairs.row(0, named=True)
    differing = link_patients(frames(other), threshold=0.01).pairs.row(0, named=True)
    assert differing["match_probability"] < agreeing["match_probability"]
    assert differing["mw_product"] < 0 < agreeing["mw_product"]


def test_year_only_sites_are_compared_on_infusion_year() -> None:
    rows = combine(patient("SITE_A", "1"), patient("SITE_B", "1", infusion="2022-11-30"))
    rows["car_t_infusions"][1]["infusion_date"] = None
    pairs = find_duplicates(frames(rows))
    assert pairs.height == 1 and "infusion: same year" in pairs["evidence"][0]


record = st.fixed_dictionaries(
    {
        "site": st.sampled_from(["SITE_A", "SITE_B", "SITE_C"]),
        "sex": st.sampled_from(["F", "M"]),
        "birth_year": st.integers(1960, 1962),
        "infusion": st.sampled_from(["2022-03-01", "2022-03-02", "2022-03-20"]),
    }
)


@SPLINK
@given(st.lists(record, min_size=2, max_size=9))
def test_same_site_pairs_never_appear_and_clusters_hold_one_record_per_site(
    records: list[dict[str, object]],
) -> None:
    # look-alike records, many at one site: the hardest case for both promises
    rows = combine(
        *[
            patient(
                str(r["site"]),
                str(i),
                sex=str(r["sex"]),
                birth_year=int(str(r["birth_year"])),
                infusion=str(r["infusion"]),
            )
            for i, r in enumerate(records)
        ]
    )
    result = link_patients(frames(rows), threshold=0.01)
    assert (result.state.pairs["site_a"] < result.state.pairs["site_b"]).all()
    assert (result.pairs["site_a"] != result.pairs["site_b"]).all()
    per_site = result.clusters.group_by("cluster_id", "site_id").len()
    assert (per_site["len"] == 1).all()


def test_a_cluster_keeps_one_record_of_a_site_with_twins() -> None:
    rows = combine(
        patient("SITE_A", "1"),
        patient("SITE_B", "1"),
        patient("SITE_B", "2"),  # identical to SITE_B-1: both match SITE_A-1
    )
    result = link_patients(frames(rows))
    assert result.pairs.height == 2  # both pairs are listed for review
    clusters = result.clusters
    assert clusters.height == 2 and clusters["cluster_id"].n_unique() == 1
    assert sorted(clusters["site_id"]) == ["SITE_A", "SITE_B"]
    assert result.pairs["cluster_id"].null_count() == 1


def test_incremental_scores_equal_a_full_relink_and_keep_cluster_ids() -> None:
    first = combine(patient("SITE_A", "1"), patient("SITE_B", "1"), patient("SITE_B", "2", sex="M"))
    before = link_patients(frames(first))
    assert before.mode == "full"
    later = combine(first, patient("SITE_C", "9", infusion="2022-03-02"))  # same patient again
    after = link_patients(frames(later), previous=before.state)
    assert after.mode == "incremental" and after.new_records == 1
    full = link_patients(frames(later), previous=before.state, relink=True)
    assert full.mode == "full"
    columns = ["key_a", "key_b", "match_weight"]
    new = pl.col("key_b") == "SITE_C-9"
    # the new record's pairs are scored as a full run would score them; the kept pair keeps
    # the weights it had (value frequencies then were counted over three records, not four)
    assert after.pairs.filter(new).select(columns).equals(full.pairs.filter(new).select(columns))
    old = before.pairs.select("key_a", "key_b")
    assert after.pairs.filter(~new).height == old.height == 1
    kept = after.state.pairs.filter(pl.col("key_b") == "SITE_B-1")
    assert kept["evidence_weight"].to_list() == before.state.pairs["evidence_weight"].to_list()
    # the new record joined the existing cluster under its id
    cluster = before.clusters["cluster_id"][0]
    assert set(after.clusters.filter(pl.col("cluster_id") == cluster)["unique_id"]) == {
        "SITE_A-1",
        "SITE_B-1",
        "SITE_C-9",
    }


def test_a_changed_record_is_scored_again() -> None:
    first = combine(patient("SITE_A", "1"), patient("SITE_B", "1"))
    before = link_patients(frames(first))
    changed = combine(patient("SITE_A", "1"), patient("SITE_B", "1", sex="M"))
    after = link_patients(frames(changed), previous=before.state)
    assert after.new_records == 1
    assert after.pairs.height == 0  # no longer alike: not listed


def test_decisions_list_a_pair_and_distinct_keeps_it_out_of_clusters() -> None:
    rows = combine(patient("SITE_A", "1"), patient("SITE_B", "1"), patient("SITE_C", "5", sex="M"))
    decisions = pl.DataFrame(
        [
            {"key_a": "SITE_B-1", "key_b": "SITE_A-1", "decision": "distinct"},
            {"key_a": "SITE_A-1", "key_b": "SITE_C-5", "decision": "same", "keep": "SITE_A-1"},
        ],
        schema={c: pl.String for c in ("key_a", "key_b", "decision", "keep", "reason", "reviewer")},
    )
    result = link_patients(frames(rows), decisions=decisions)
    listed = {(r["key_a"], r["key_b"]) for r in result.pairs.iter_rows(named=True)}
    assert listed == {("SITE_A-1", "SITE_B-1"), ("SITE_A-1", "SITE_C-5")}
    together = result.clusters.group_by("cluster_id").agg(pl.col("unique_id").sort())
    assert together["unique_id"].to_list() == [["SITE_A-1", "SITE_C-5"]]


@SPLINK
@given(st.permutations(range(4)))
def test_pairs_do_not_depend_on_row_order(order: list[int]) -> None:
    rows = combine(
        patient("SITE_A", "1"),
        patient("SITE_B", "1", infusion="2022-03-02"),
        patient("SITE_C", "1", infusion="2022-02-28"),
        patient("SITE_C", "2", sex="M"),
    )
    tables = frames(rows)
    shuffled = {
        name: frame[[order[i] for i in range(4) if order[i] < frame.height]]
        if frame.height == 4
        else frame
        for name, frame in tables.items()
    }
    assert find_duplicates(shuffled).equals(find_duplicates(tables))


def test_explanations_name_no_value_of_the_records() -> None:
    rows = with_history(
        combine(patient("SITE_A", "1", birth_year=1971), patient("SITE_B", "4", birth_year=1971)),
        dx="2020-07-15",
        age=50.9,
    )
    rows["patients"][0]["birth_date"] = dt.date(1971, 2, 3)
    result = link_patients(frames(rows))
    text = result.pairs.select("evidence").write_csv()
    for value in ("1971", "2022", "2020", "50.9", "03-01", "07", "tisagenlecleucel", "NEG"):
        assert value not in text
    assert "birth: same birth year and age" in text


def test_capacity_falls_with_size_and_warns_beyond_it() -> None:
    def records(n: int) -> pl.DataFrame:
        """Two sites whose records give sex, birth year, infusion year, product and Ph."""
        return pl.DataFrame({"i": range(n)}).select(
            pl.format("S{}-{}", pl.col("i") % 2, pl.col("i")).alias("unique_id"),
            pl.format("S{}", pl.col("i") % 2).alias("site_id"),
            pl.when(pl.col("i") % 3 == 0).then(pl.lit("M")).otherwise(pl.lit("F")).alias("sex"),
            (1950 + pl.col("i") % 40).alias("birth_year"),
            (2017 + pl.col("i") % 8).alias("inf_year"),
            pl.lit("tisagenlecleucel").alias("product"),
            pl.lit("BCR_ABL1_POS").alias("ph_status"),
        )

    def pad(frame: pl.DataFrame) -> pl.DataFrame:
        missing = [
            pl.lit(None, dtype=t).alias(c) for c, t in lk.RECORD_SCHEMA.items() if c not in frame
        ]
        return frame.with_columns(missing).select(list(lk.RECORD_SCHEMA))

    model = lk.load_model()
    small = lk.linkage_capacity(pad(records(40)), model, threshold=0.8)
    large = lk.linkage_capacity(pad(records(20_000)), model, threshold=0.8)
    assert large["predicted_recall"][0] < small["predicted_recall"][0]
    assert large["chance_full_agreement"][0] > 1000 * small["chance_full_agreement"][0]
    assert large["best_probability"][0] < 0.8 < small["best_probability"][0]
    assert not large["separable"][0]
    found = capacity_findings(large, 0.8)
    assert found["rule_id"].to_list() == ["REG-LINKAGE-CAPACITY"]
    assert "S0~S1" in found["value"][0] and "capacity" in found["message"][0]


def test_em_check_reports_disagreement_and_warns_when_it_does_not_converge() -> None:
    levels = pl.DataFrame(
        {
            "comparison": ["sex"],
            "level": ["same"],
            "expert_weight": [1.0],
            "em_weight": [3.5],
            "difference": [2.5],
        }
    )
    check = lk.EMCheck(
        levels=levels,
        sessions=[{"blocking": "l.inf_dn = r.inf_dn", "iterations": 25, "converged": False}],
    )
    found = em_findings(check)
    assert sorted(found["severity"].to_list()) == ["info", "warning"]
    assert "did not converge" in found.filter(pl.col("severity") == "warning")["message"][0]


def test_links_from_yaml_and_csv(tmp_path: Path) -> None:
    yaml_file = tmp_path / "links.yaml"
    yaml_file.write_text(
        "links:\n  - {key_a: SITE_A-1, key_b: SITE_B-7, decision: Same, keep: SITE_B-7,"
        " reviewer: coord}\n  - {key_a: SITE_A-2, key_b: SITE_B-7, decision: distinct}\n",
        encoding="utf-8",
    )
    links = load_links(yaml_file)
    assert links["decision"].to_list() == ["same", "distinct"]
    csv_file = tmp_path / "links.csv"
    links.write_csv(csv_file)
    assert load_links(csv_file).equals(links)
    pairs = find_duplicates(
        frames(combine(patient("SITE_A", "1"), patient("SITE_A", "2"), patient("SITE_B", "7")))
    )
    resolved = resolve(pairs, links).sort("key_a")
    assert resolved.select("key_a", "decision", "drop").rows() == [
        ("SITE_A-1", "same", "SITE_A-1"),
        ("SITE_A-2", "distinct", None),
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        ("links:\n  - {key_a: A-1, key_b: B-1, decision: maybe}\n", "decision same"),
        ("links:\n  - {key_a: A-1, key_b: B-1, decision: same, keep: C-1}\n", "keep"),
        ("links:\n  - {key_a: A-1, key_b: B-1, decision: same, kept: A-1}\n", "unknown key"),
        ("links: nope\n", "links"),
        # A list or mapping as a key was turned into its Python text and read as a key.
        ("links:\n  - {key_a: [A-1, A-2], key_b: B-1, decision: distinct}\n", r"links\[0\]\.key_a"),
        ("links:\n  - {key_a: A-1, key_b: B-1, decision: distinct, reason: {a: 1}}\n", "reason"),
    ],
)
def test_bad_link_files_are_config_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "links.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_links(path)


def with_outcome(rows: Rows, key: str, *, progression: int | None, death: int | None) -> Rows:
    """``key``'s first progression and death, as days from the index infusion (day offsets
    only: what a de-identified site gives)."""
    if progression is not None:
        rows.setdefault("progression_events", []).append(
            {
                "progression_id": f"{key}-P1",
                "patient_key": key,
                "event_seq": 1,
                "progression_day": progression,
                "event_type": "RELAPSE_AFTER_CR",
            }
        )
    if death is not None:
        for row in rows["follow_up"]:
            if row["patient_key"] == key:
                row.update(vital_status="DEAD", death_day=death)
    return rows


def year_only_pair(**outcome_b: int | None) -> Rows:
    """A dated record and a year-only record of one patient (a de-identified site), with the
    outcome of the first given and that of the second from ``outcome_b``."""
    rows = combine(patient("SITE_A", "1"), patient("SITE_B", "1"))
    rows["car_t_infusions"][1]["infusion_date"] = None
    with_outcome(rows, "SITE_A-1", progression=312, death=405)
    return with_outcome(rows, "SITE_B-1", **{"progression": None, "death": None, **outcome_b})


def test_the_same_interval_to_progression_and_death_is_evidence() -> None:
    agreeing = link_patients(frames(year_only_pair(progression=312, death=405)), threshold=0.01)
    missing = link_patients(frames(year_only_pair()), threshold=0.01)
    apart = link_patients(frames(year_only_pair(progression=160, death=700)), threshold=0.01)
    best, none, other = (r.pairs.row(0, named=True) for r in (agreeing, missing, apart))
    assert "progression: same day" in best["evidence"] and "death: same day" in best["evidence"]
    assert best["mw_progression"] > 3 and best["mw_death"] > 3
    assert other["mw_progression"] < 0 and other["mw_death"] < 0
    assert other["match_weight"] < none["match_weight"] < best["match_weight"]


def test_a_record_without_a_progression_or_death_is_no_evidence() -> None:
    pair = link_patients(frames(year_only_pair()), threshold=0.01).pairs.row(0, named=True)
    assert "progression: missing" in pair["evidence"] and "death: missing" in pair["evidence"]
    assert pair["mw_progression"] == 0 and pair["mw_death"] == 0


def test_year_only_records_meet_dated_ones_through_the_interval_to_progression() -> None:
    # infusion years apart (one site counts from a re-infusion) and nothing else to block on
    rows = year_only_pair(progression=312)
    rows["car_t_infusions"][1]["infusion_year"] = 2023
    scored = link_patients(frames(rows), threshold=0.01).state.pairs
    assert scored.select("key_a", "key_b").rows() == [("SITE_A-1", "SITE_B-1")]


def test_outcome_explanations_name_no_identifier_or_value() -> None:
    from cartreg.ingest.identifiers import identifier_columns

    pairs = link_patients(frames(year_only_pair(progression=312, death=405))).pairs
    explanation = pairs.select("evidence", pl.col("^mw_.*$"))
    assert {"mw_progression", "mw_death"} <= set(explanation.columns)
    assert identifier_columns(explanation) == []
    text = explanation.select("evidence").write_csv()
    assert "312" not in text and "405" not in text


def test_capacity_counts_an_outcome_for_the_records_that_have_it() -> None:
    """Two year-only sites; 40% of the records have a first progression."""
    base = pl.DataFrame({"i": range(600)}).select(
        pl.format("S{}-{}", pl.col("i") % 2, pl.col("i")).alias("unique_id"),
        pl.format("S{}", pl.col("i") % 2).alias("site_id"),
        pl.when(pl.col("i") % 3 == 0).then(pl.lit("M")).otherwise(pl.lit("F")).alias("sex"),
        (1950 + pl.col("i") % 40).alias("birth_year"),
        (2017 + pl.col("i") % 8).alias("inf_year"),
        pl.when(pl.col("i") % 5 < 2).then(30 + pl.col("i") % 700).alias("progression_day"),
    )
    full = base.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in lk.RECORD_SCHEMA.items() if c not in base]
    ).select(list(lk.RECORD_SCHEMA))
    without = full.with_columns(pl.lit(None, dtype=pl.Int64).alias("progression_day"))
    model = lk.load_model()
    with_event = lk.linkage_capacity(full, model, threshold=0.7).row(0, named=True)
    no_event = lk.linkage_capacity(without, model, threshold=0.7).row(0, named=True)
    assert "progression" in with_event["evidence"] and "progression" not in no_event["evidence"]
    assert with_event["predicted_recall"] > no_event["predicted_recall"]
    # a share of the pairs has the event: no more than it can add to all of them
    assert with_event["predicted_recall"] - no_event["predicted_recall"] <= 0.4 + 1e-9
    assert with_event["best_probability"] == pytest.approx(no_event["best_probability"])


def test_an_explanation_lists_the_evidence_strongest_first_and_leaves_out_what_weighs_nothing() -> (
    None
):
    from cartreg.registry.duplicates import explain

    model = lk.load_model()
    weights = {c.name: 0.5 for c in model.comparisons} | {
        "infusion": 9.1,
        "sex": -1.2,
        "progression": 0.0,  # the 'missing' level: no evidence either way
    }
    pair = pl.DataFrame(
        {
            "evidence": ["; ".join(f"{c.name}: some level" for c in model.comparisons)],
            **{f"mw_{name}": [w] for name, w in weights.items()},
        }
    )
    text = pair.select(explain(model)).item()
    parts = text.split(", ")
    assert parts[0] == "infusion some level (+9.1)" and parts[1] == "sex some level (-1.2)"
    assert "progression" not in text
    assert len(parts) == len(model.comparisons) - 1
