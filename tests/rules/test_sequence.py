"""The sequence check against a direct reading of its definition (hypothesis)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from cartreg.rules.checks import REGISTRY, CheckContext

_ROW = st.tuples(
    st.sampled_from(["S-1", "S-2", "S-3", None]),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=-5, max_value=5),
)


def _expected(rows: list[tuple[str | None, int, int]]) -> list[int]:
    """Source rows whose number is outside the positions its day can take in its key."""
    bad = []
    for i, (key, number, day) in enumerate(rows):
        days = [d for k, _, d in rows if k == key]
        first = 1 + sum(d < day for d in days)
        last = sum(d <= day for d in days)
        if not first <= number <= last:
            bad.append(i + 2)
    return bad


@settings(max_examples=60)
@given(st.lists(_ROW, max_size=12))
def test_sequence_flags_numbers_out_of_chronological_order(
    rows: list[tuple[str | None, int, int]],
) -> None:
    frame = pl.DataFrame(
        {
            "patient_key": [r[0] for r in rows],
            "event_seq": [r[1] for r in rows],
            "progression_day": [r[2] for r in rows],
            "site_id": ["S"] * len(rows),
            "source_file": ["p.csv"] * len(rows),
            "source_row": list(range(2, len(rows) + 2)),
        },
        schema={
            "patient_key": pl.String,
            "event_seq": pl.Int64,
            "progression_day": pl.Int64,
            "site_id": pl.String,
            "source_file": pl.String,
            "source_row": pl.Int64,
        },
    )
    params = {
        "table": "progression_events",
        "key": ["patient_key"],
        "number": "event_seq",
        "order": "progression_day",
    }
    out = REGISTRY["sequence"].build(CheckContext({"progression_events": frame.lazy()}), params)
    got = sorted(out.violations.collect()["source_row"].to_list())
    assert got == _expected(rows)
