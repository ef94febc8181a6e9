from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.errors import ConfigError
from cartreg.registry.duplicates import find_duplicates, load_links, resolve
from tests.registry.helpers import Rows, combine, patient


def frames(rows: Rows) -> dict[str, pl.DataFrame]:
    site = pl.col("patient_key").str.extract(r"^([A-Z_]+)-", 1).alias("site_id")
    return {
        name: pl.DataFrame(r, infer_schema_length=None).with_columns(site)
        for name, r in rows.items()
    }


def test_planted_pair_is_found_with_score_and_evidence() -> None:
    rows = combine(
        patient("SITE_A", "1"),
        patient("SITE_B", "7", infusion="2022-03-03"),  # 2 days apart: a candidate
        patient("SITE_B", "8", infusion="2022-03-09"),  # 8 days apart: not
        patient("SITE_A", "2"),  # same site as SITE_A-1: never paired
        patient("SITE_C", "1", sex="M"),  # other sex: blocked out
    )
    pairs = find_duplicates(frames(rows))
    got = pairs.select("key_a", "key_b", "days_apart").rows()
    assert sorted(got) == [("SITE_A-1", "SITE_B-7", 2), ("SITE_A-2", "SITE_B-7", 2)]
    best = pairs.row(0, named=True)
    assert 0.7 <= best["score"] < 1.0
    assert best["evidence"] == "sex,birth_year,infusion_date,product"
    assert best["pair_id"].startswith("DUP-")


def test_other_evidence_raises_or_lowers_the_score() -> None:
    base = combine(patient("SITE_A", "1"), patient("SITE_B", "1", infusion="2022-03-01"))
    same = find_duplicates(frames(base))["score"][0]
    other_product = combine(
        patient("SITE_A", "1"), patient("SITE_B", "1", product="brexucabtagene_autoleucel")
    )
    assert same == 1.0
    low = find_duplicates(frames(other_product), min_score=0.0)["score"][0]
    assert low < 0.7
    assert find_duplicates(frames(other_product)).height == 0


def test_year_only_sites_are_compared_on_infusion_year() -> None:
    rows = combine(patient("SITE_A", "1"), patient("SITE_B", "1", infusion="2022-11-30"))
    rows["car_t_infusions"][1]["infusion_date"] = None
    pairs = find_duplicates(frames(rows))
    assert pairs.height == 1 and "infusion_year" in pairs["evidence"][0]


def test_candidates_are_blocked_on_date_window_or_year_and_product() -> None:
    rows = combine(
        patient("SITE_A", "1", infusion="2021-12-31"),
        patient("SITE_B", "1", infusion="2022-01-02"),  # 2 days apart across new year: paired
        patient("SITE_C", "1", infusion="2021-06-01"),  # year only, same product: paired with A-1
        patient("SITE_D", "1", infusion="2021-06-01", product="brexucabtagene_autoleucel"),
    )
    for i in (2, 3):  # SITE_C and SITE_D give only the infusion year
        rows["car_t_infusions"][i]["infusion_date"] = None
    got = find_duplicates(frames(rows), min_score=0.0).select("key_a", "key_b").rows()
    # SITE_D's year-only record shares the year with A-1 and C-1 but not the product: the
    # blocking leaves those pairs out even at min_score 0.
    assert sorted(got) == [("SITE_A-1", "SITE_B-1"), ("SITE_A-1", "SITE_C-1")]


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
    ],
)
def test_bad_link_files_are_config_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "links.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_links(path)
