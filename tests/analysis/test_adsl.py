"""The per-patient analysis dataset on the DOMAIN.md 6.6 fixture patients (answers by hand),
the disease-burden derivation with qualifiers, and the HCT counting-process rows."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from cartreg.analysis.adsl import derive_adsl
from cartreg.analysis.derive import derive_burden, derive_tte
from cartreg.analysis.endpoints import load_endpoints
from cartreg.analysis.models import derive_counting_process
from tests.analysis.conftest import DATA_CUT


@pytest.mark.parametrize(
    ("blasts", "qualifier", "emd", "stated", "expected"),
    [
        (5.0, "LT", "N", None, ("LOW", "derived")),  # "<5%" is below the threshold
        (5.0, "LT", None, "HIGH", ("LOW", "derived")),  # ... whatever the site states
        (5.0, None, "N", None, ("HIGH", "derived")),
        (5.0, "EQ", "N", "LOW", ("HIGH", "derived")),
        (4.9, "LE", "N", None, ("LOW", "derived")),
        (5.0, "GE", "N", None, ("HIGH", "derived")),
        (10.0, "LT", "N", "HIGH", ("HIGH", "stated")),  # "<10%" does not decide
        (10.0, "LT", "N", None, ("UNKNOWN", None)),
        (2.0, None, "Y", None, ("HIGH", "derived")),  # extramedullary disease
        (None, None, None, "LOW", ("LOW", "stated")),
        (None, None, None, None, ("UNKNOWN", None)),
    ],
)
def test_burden_honours_qualifiers(
    blasts: float | None,
    qualifier: str | None,
    emd: str | None,
    stated: str | None,
    expected: tuple[str, str | None],
) -> None:
    row = pl.DataFrame(
        {
            "pre_bm_blast_pct": [blasts],
            "pre_bm_blast_qualifier": [qualifier],
            "pre_emd_present": [emd],
            "disease_burden": [stated],
        },
        schema={
            "pre_bm_blast_pct": pl.Float64,
            "pre_bm_blast_qualifier": pl.String,
            "pre_emd_present": pl.String,
            "disease_burden": pl.String,
        },
    )
    burden, source = derive_burden()
    assert row.select(burden, source).row(0) == expected


@pytest.fixture(scope="module")
def adsl(dated_tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    endpoints = load_endpoints()
    tte = derive_tte(dated_tables, endpoints, DATA_CUT)
    set_aside = pl.DataFrame({"patient_key": ["FIXTURE-D"], "covariate": ["burden"]})
    return derive_adsl(
        dated_tables,
        DATA_CUT,
        progression_endpoint=endpoints["TTP"],
        salvage_endpoint=endpoints["SALV_CR"],
        tte=tte,
        set_aside=set_aside,
        landmark_days=90,
    )


def _get(adsl: pl.DataFrame, letter: str) -> dict[str, Any]:
    return adsl.filter(pl.col("patient_key") == f"FIXTURE-{letter}").row(0, named=True)


def test_remission_duration_only_for_relapsed_patients(adsl: pl.DataFrame) -> None:
    a, b, e = _get(adsl, "A"), _get(adsl, "B"), _get(adsl, "E")
    # A: CR day 28, relapse day 168: 140 days
    assert a["remission_months"] == pytest.approx(140 / 30.4375)
    assert (a["refractory"], a["remission_months_if_cr"]) == (0, pytest.approx(140 / 30.4375))
    # B and E are refractory: no remission duration; the model uses 0 with their own indicator
    for row in (b, e):
        assert row["remission_months"] is None
        assert (row["refractory"], row["remission_months_if_cr"]) == (1, 0.0)
    # C never progressed: no duration, no indicator
    c = _get(adsl, "C")
    assert (c["progressed"], c["refractory"], c["remission_months_if_cr"]) == (0, None, None)


def test_cd19_phenotype_and_unknown_level(adsl: pl.DataFrame) -> None:
    assert (_get(adsl, "A")["cd19_loss"], _get(adsl, "A")["cd19_unknown"]) == (1, 0)  # CD19_NEG
    assert (_get(adsl, "B")["cd19_loss"], _get(adsl, "B")["cd19_unknown"]) == (0, 0)  # CD19_POS
    assert (_get(adsl, "E")["cd19_loss"], _get(adsl, "E")["cd19_unknown"]) == (0, 1)  # UNKNOWN
    assert _get(adsl, "C")["cd19_loss"] is None


def test_set_aside_burden_is_unknown(adsl: pl.DataFrame) -> None:
    d = _get(adsl, "D")
    assert (d["burden"], d["burden_source"], d["high_burden"]) == ("UNKNOWN", "set aside", None)
    # the others: stated burden (no blasts given for A) or derived from blasts
    assert _get(adsl, "A")["high_burden"] == 1


def test_response_to_car_t(adsl: pl.DataFrame) -> None:
    expected = {
        # letter: (day-28 response, CR d28, evaluable d28, best, CR best, evaluable best)
        "A": ("CR", 1, 1, "CR", 1, 1),
        "B": ("NR", 0, 1, "NR", 0, 1),
        "C": ("CR", 1, 1, "CR", 1, 1),
        "D": ("CR", 1, 1, "CR", 1, 1),  # day 30 is within 28 +/- 7
        "E": (None, 0, 0, None, 0, 1),  # refractory on day 5: evaluable for best response only
        "F": ("CR", 1, 1, "CR", 1, 1),
    }
    columns = (
        "response_day28",
        "cr_day28",
        "evaluable_day28",
        "best_response",
        "cr_best",
        "evaluable_best",
    )
    for letter, values in expected.items():
        row = _get(adsl, letter)
        assert tuple(row[c] for c in columns) == values, letter


def test_salvage_and_transplant(adsl: pl.DataFrame) -> None:
    assert (_get(adsl, "A")["salvaged"], _get(adsl, "A")["salvage_antibody"]) == (1, 1)
    # F's salvage started after death: a progressor without post-progression salvage
    assert (_get(adsl, "F")["progressed"], _get(adsl, "F")["salvaged"]) == (1, 0)
    c = _get(adsl, "C")
    assert (c["hct_day"], c["hct_in_remission"], c["hct_by_landmark"]) == (80, 1, 1)
    assert _get(adsl, "A")["hct_by_landmark"] == 0  # event-free at day 90, no HCT by then
    assert _get(adsl, "B")["hct_by_landmark"] is None  # EFS event on day 28: not at risk


def test_counting_process_splits_at_hct(
    dated_tables: dict[str, pl.DataFrame], adsl: pl.DataFrame
) -> None:
    tte = derive_tte(dated_tables, load_endpoints(), DATA_CUT)
    tv = derive_counting_process(tte, adsl, "EFS")
    c = tv.filter(pl.col("patient_key") == "FIXTURE-C").select(
        "tstart_day", "tstop_day", "event", "hct"
    )
    assert c.rows() == [(0, 80, 0, 0), (80, 690, 0, 1)]
    a = tv.filter(pl.col("patient_key") == "FIXTURE-A").select(
        "tstart_day", "tstop_day", "event", "hct"
    )
    assert a.rows() == [(0, 168, 1, 0)]
    assert (tv["tstop_day"] > tv["tstart_day"]).all()
