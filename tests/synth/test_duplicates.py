"""Cross-site duplicates planted by the simulator, with their truth."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from cartreg.synth.cohort import iter_cohort_chunks, simulate_cohort
from cartreg.synth.sample import synthesize


def test_a_share_of_patients_is_reported_again_at_another_site() -> None:
    plain = simulate_cohort(2000, 4, seed=5)
    cohort = simulate_cohort(2000, 4, seed=5, duplicate_rate=0.05)
    pairs = cohort.duplicates
    assert pairs is not None and pairs.height == 100
    patients = cohort.tables["patients"]
    assert patients.height == 2100 and patients["patient_key"].n_unique() == 2100
    # the originals are untouched: the copies are appended
    assert_frame_equal(patients.head(2000), plain.tables["patients"])

    def site(key: str) -> pl.Expr:
        return pl.col(key).str.extract(r"^([A-Z]+_[A-Z]+)-", 1)

    assert pairs.filter(site("patient_key_a") == site("patient_key_b")).height == 0
    copies = patients.filter(pl.col("patient_key").is_in(pairs["patient_key_b"].implode()))
    assert copies.filter(site("patient_key") != pl.col("site_id")).height == 0
    # every table has the copies' rows, keyed by the copy
    for name, frame in cohort.tables.items():
        assert frame.filter(pl.col("patient_key").is_in(copies["patient_key"].implode())).height
        ids = [c for c in frame.columns if c.endswith("_id") and c not in ("site_id", "trial_id")]
        for col in ids:
            owned = frame.filter(pl.col(col).is_not_null())
            assert (owned[col].str.starts_with(owned["patient_key"] + "-")).all(), (name, col)
        assert frame["source_row"].n_unique() == frame.height


def test_copies_disagree_as_two_centres_do() -> None:
    cohort = simulate_cohort(4000, 4, seed=8, duplicate_rate=0.1)
    pairs = cohort.duplicates
    assert pairs is not None
    p = cohort.tables["patients"].select(
        "patient_key", "birth_year", "ph_status", "diagnosis_date", "diagnosis_day"
    )
    i = (
        cohort.tables["car_t_infusions"]
        .filter(pl.col("is_index_infusion"))
        .select("patient_key", "infusion_date", "product")
    )
    both = (
        pairs.join(p, left_on="patient_key_a", right_on="patient_key")
        .join(p, left_on="patient_key_b", right_on="patient_key", suffix="_b")
        .join(i, left_on="patient_key_a", right_on="patient_key")
        .join(i, left_on="patient_key_b", right_on="patient_key", suffix="_b")
    )
    rates = both.select(
        (pl.col("infusion_date") != pl.col("infusion_date_b")).mean().alias("infusion"),
        (pl.col("birth_year") != pl.col("birth_year_b")).mean().alias("birth"),
        (pl.col("product") != pl.col("product_b")).mean().alias("product"),
        pl.col("ph_status_b").is_null().mean().alias("ph"),
    ).row(0, named=True)
    assert 0.1 < rates["infusion"] < 0.3
    assert 0.01 < rates["birth"] < 0.1
    assert 0.03 < rates["product"] < 0.2
    assert 0.05 < rates["ph"] < 0.2
    shifted = both.filter(pl.col("infusion_date") != pl.col("infusion_date_b"))
    days = (shifted["infusion_date"] - shifted["infusion_date_b"]).dt.total_days().abs()
    assert days.max() <= 10  # type: ignore[operator]
    # a consistent record: the diagnosis offset follows the moved infusion, dates stay in the cut
    assert (
        both["diagnosis_day_b"]
        == (both["diagnosis_date_b"] - both["infusion_date_b"]).dt.total_days()
    ).all()
    fu = cohort.tables["follow_up"]
    assert (fu["last_contact_date"] <= fu["data_cut_date"]).all()


def test_chunks_continue_local_ids_and_truth_lists_every_pair(tmp_path: Path) -> None:
    chunks = list(iter_cohort_chunks(130, 3, seed=4, chunk_size=50, duplicate_rate=0.1))
    keys = pl.concat([c.tables["patients"]["patient_key"] for c in chunks])
    assert keys.n_unique() == keys.len() == 130 + 5 + 5 + 3
    synthesize(tmp_path, n_patients=130, n_sites=4, seed=4, chunk_size=50, duplicate_rate=0.1)
    truth = pl.read_csv(tmp_path / "truth" / "duplicates.csv")
    assert truth.columns == ["patient_key_a", "patient_key_b"]
    # the chunks' pairs and the patient the defects copy from REDCAP_A to EXCEL_B
    assert truth.height == 13 + 1
    patients = pl.read_parquet(tmp_path / "truth" / "patients.parquet")
    stored = set(patients["patient_key"])
    assert set(truth["patient_key_a"]) <= stored
    assert len(set(truth["patient_key_b"]) - stored) == 1  # the defect copy lives in the export


def test_without_a_rate_truth_lists_only_the_planted_defect(tmp_path: Path) -> None:
    synthesize(tmp_path, n_patients=60, n_sites=4, seed=3, clean=True)
    truth = pl.read_csv(tmp_path / "truth" / "duplicates.csv")
    assert truth.height == 0 and truth.columns == ["patient_key_a", "patient_key_b"]
