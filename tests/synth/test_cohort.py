"""The truth simulator: deterministic, CDM-conformant, internally consistent."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from cartreg.cdm import load_cdm, validate_tables
from cartreg.synth.cohort import make_sites, simulate_cohort


@pytest.fixture(scope="module")
def cdm():  # type: ignore[no-untyped-def]
    return load_cdm()


def test_same_seed_same_cohort(cdm) -> None:  # type: ignore[no-untyped-def]
    a = simulate_cohort(120, 3, seed=7, cdm=cdm)
    b = simulate_cohort(120, 3, seed=7, cdm=cdm)
    for name in a.tables:
        assert_frame_equal(a.tables[name], b.tables[name])
    c = simulate_cohort(120, 3, seed=8, cdm=cdm)
    assert not a.tables["follow_up"].equals(c.tables["follow_up"])


def test_truth_conforms_to_cdm(cdm) -> None:  # type: ignore[no-untyped-def]
    cohort = simulate_cohort(400, 4, seed=2021, cdm=cdm)
    findings = validate_tables(cohort.tables, cdm=cdm)
    assert findings.filter(pl.col("severity") == "error").height == 0, findings.head(5)
    for name, frame in cohort.tables.items():
        assert frame.columns == list(cdm.table(name).column_names)


def test_site_ids_cycle_layouts() -> None:
    sites = make_sites(6)
    assert [s.site_id for s in sites] == [
        "REDCAP_A",
        "EXCEL_B",
        "EHR_C",
        "DEID_D",
        "REDCAP_E",
        "EXCEL_F",
    ]
    assert make_sites(28)[27].site_id == "DEID_AB"


def test_row_ids_follow_the_convention(cdm) -> None:  # type: ignore[no-untyped-def]
    t = simulate_cohort(200, 4, seed=3, cdm=cdm).tables
    inf = t["car_t_infusions"]
    index = inf.filter(pl.col("is_index_infusion"))
    assert index.height == t["patients"].height
    assert (index["infusion_id"] == index["patient_key"] + "-INF1").all()
    assert (index["infusion_day"] == 0).all()
    asm = t["disease_assessments"].with_columns(
        pl.col("assessment_id").str.extract(r"-A(\d+)$").cast(pl.Int64).alias("k")
    )
    ordered = asm.sort("patient_key", "k")
    assert (
        ordered.group_by("patient_key", maintain_order=True)
        .agg(pl.col("assessment_day").diff().drop_nulls().min().alias("d"))
        .filter(pl.col("d") < 0)
        .height
        == 0
    )


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=200), sites=st.integers(1, 6), seed=st.integers(0, 10**6)
)
def test_timelines_are_consistent(n: int, sites: int, seed: int) -> None:
    t = simulate_cohort(n, sites, seed=seed).tables
    fu = t["follow_up"].select(
        "patient_key", "last_contact_day", "death_day", "data_cut_date", "last_contact_date"
    )
    assert (fu["last_contact_date"] <= fu["data_cut_date"]).all()
    events = pl.concat(
        [
            t["disease_assessments"].select("patient_key", pl.col("assessment_day").alias("d")),
            t["car_t_infusions"].select("patient_key", pl.col("infusion_day").alias("d")),
            t["progression_events"].select("patient_key", pl.col("progression_day").alias("d")),
            t["salvage_treatments"].select("patient_key", pl.col("start_day").alias("d")),
            t["salvage_treatments"].select("patient_key", pl.col("best_response_day").alias("d")),
            t["transplants"].select("patient_key", pl.col("hct_day").alias("d")),
        ]
    ).drop_nulls()
    late = events.join(fu, on="patient_key").filter(
        (pl.col("d") > pl.col("last_contact_day")) | (pl.col("d") > pl.col("death_day"))
    )
    assert late.height == 0
    # CR never with >= 5% blasts; disease burden follows the >=5% / EMD rule
    asm = t["disease_assessments"]
    assert (
        asm.filter(pl.col("response").is_in(["CR", "CRi"]) & (pl.col("bm_blast_pct") >= 5)).height
        == 0
    )
    idx = t["car_t_infusions"].filter(pl.col("is_index_infusion"))
    derived = (
        pl.when((pl.col("pre_bm_blast_pct") >= 5) | (pl.col("pre_emd_present") == "Y"))
        .then(pl.lit("HIGH"))
        .otherwise(pl.lit("LOW"))
    )
    assert idx.filter(derived != pl.col("disease_burden")).height == 0
    # salvage after its progression; relapse after the remission it ends
    sal = t["salvage_treatments"].join(t["progression_events"], on="patient_key")
    assert sal.filter(pl.col("start_day") < pl.col("progression_day")).height == 0
    prog = t["progression_events"]
    assert prog.filter(pl.col("remission_day") >= pl.col("progression_day")).height == 0
    assert (prog["progression_day"] > 0).all()
    # no obe-cel before its approval, adults only
    inf = t["car_t_infusions"]
    assert (
        inf.filter(
            (pl.col("product") == "obecabtagene_autoleucel")
            & (pl.col("infusion_date") < pl.date(2024, 11, 8))
        ).height
        == 0
    )
    assert (t["patients"]["age_at_index_years"] >= 18).all()
