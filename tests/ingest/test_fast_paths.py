"""The fast paths of the ingest performance work give exactly what the general paths give."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.errors import InputError
from cartreg.ingest.pipeline import _findings_json
from cartreg.ingest.readers import csv as csv_reader
from cartreg.ingest.readers.base import ReadResult

EDGE_CASES: dict[str, tuple[bytes, int]] = {
    "rectangular": (b"id,sex,dx\nP1,F,2021-03-05\nP2,M,\n", 1),
    "no final newline": (b"id,sex\nP1,F\nP2,M", 1),
    "short row": (b"id,sex,dx\nP1,F\nP2,M,2020\n", 1),
    "long row": (b"id,sex\nP1,F,extra\nP2,M\n", 1),
    "blank lines": (b"id,sex\nP1,F\n\nP2,M\n\n", 1),
    "crlf": (b"id,sex\r\nP1,F\r\nP2,M\r\n", 1),
    "quotes": (b'id,note\nP1,"a, b"\nP2,"line\nbreak"\n', 1),
    "bom": (b"\xef\xbb\xbfid,sex\nP1,F\n", 1),
    "latin-1": (b"id,ort\nP1,K\xf6ln\nP2,M\xfcnchen\n", 1),
    "header only": (b"id,sex\n", 1),
    "header row 2": (b"Export of 2025-06-30\nid,sex\nP1,F\nP2,M\n", 2),
    "semicolons": (b"id;sex;dx\nP1;F;05.03.2021\n", 1),
    "single column": (b"id\nP1\nP2\n", 1),
    # Found by hypothesis: polars' strict parse lets an extra empty field through on a last
    # line without newline, and the blank line balances the separator count.
    "unterminated extra field": (b"c0,c1\n\n,,", 1),
}


def _read(path: Path, header_row: int) -> ReadResult:
    return csv_reader.read_csv_text(path, header_row=header_row)


def _both_paths(
    path: Path, header_row: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[ReadResult, ReadResult]:
    fast = _read(path, header_row)
    # The coded read (what ingest uses) holds the same text, digest and findings.
    coded = csv_reader.read_csv_text(path, header_row=header_row, categorical=True)
    as_text = coded.frame.with_columns(pl.col(pl.Categorical).cast(pl.String))
    assert as_text.schema == fast.frame.schema
    assert as_text.rows() == fast.frame.rows()
    assert coded.findings.rows() == fast.findings.rows()
    assert coded.rejected.rows() == fast.rejected.rows()
    assert coded.records == fast.records
    assert coded.sha256 == fast.sha256
    with monkeypatch.context() as patch:
        # Refusing the proof of rectangularity sends every file down the second-pass path.
        patch.setattr(csv_reader, "_is_rectangular", lambda *_: False)
        slow = _read(path, header_row)
    return fast, slow


def _assert_same(fast: ReadResult, slow: ReadResult) -> None:
    assert fast.frame.schema == slow.frame.schema
    assert fast.frame.rows() == slow.frame.rows()
    assert fast.findings.rows() == slow.findings.rows()
    assert fast.rejected.rows() == slow.rejected.rows()
    assert fast.records == slow.records


@pytest.mark.parametrize("case", list(EDGE_CASES), ids=list(EDGE_CASES))
def test_csv_fast_and_slow_paths_agree_on_edge_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    data, header_row = EDGE_CASES[case]
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    _assert_same(*_both_paths(path, header_row, monkeypatch))


def test_csv_fast_path_is_taken_for_a_rectangular_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(EDGE_CASES["rectangular"][0])
    with monkeypatch.context() as patch:
        # The second pass must not run when the byte counts prove the file rectangular.
        patch.setattr(csv_reader, "_records", lambda *_: pytest.fail("second pass ran"))
        result = _read(path, 1)
    assert result.frame.select("source_row", "id").rows() == [(2, "P1"), (3, "P2")]


_CELL = st.text(alphabet="ab1 ;.-é", max_size=4)


@given(
    rows=st.lists(st.lists(_CELL, min_size=1, max_size=4), min_size=0, max_size=6),
    width=st.integers(min_value=1, max_value=3),
    crlf=st.booleans(),
    final_newline=st.booleans(),
)
def test_csv_paths_agree_on_generated_files(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str]],
    width: int,
    crlf: bool,
    final_newline: bool,
) -> None:
    newline = "\r\n" if crlf else "\n"
    lines = [",".join(f"c{i}" for i in range(width)), *(",".join(r) for r in rows)]
    text = newline.join(lines) + (newline if final_newline else "")
    path = tmp_path_factory.mktemp("csv") / "g.csv"
    path.write_bytes(text.encode("utf-8"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        try:
            fast, slow = _both_paths(path, 1, monkeypatch)
        except InputError:
            # A file both paths refuse (its rows split by another delimiter than the header):
            # the slow path alone must refuse it too.
            monkeypatch.setattr(csv_reader, "_is_rectangular", lambda *_: False)
            with pytest.raises(InputError):
                _read(path, 1)
            return
        _assert_same(fast, slow)


def _reference(findings: pl.DataFrame) -> str:
    return json.dumps(findings.to_dicts(), indent=2, default=str) + "\n"


@pytest.mark.parametrize(
    "values",
    [
        ["plain ascii", 'quote " and back\\slash', None],
        ["Köln", "naïve — dash", "日本"],
        ["tab\there", "new\nline", "bell\x07"],
    ],
    ids=["ascii", "non-ascii", "control"],
)
def test_findings_json_matches_json_dumps(values: list[str | None]) -> None:
    frame = pl.DataFrame(
        {
            "rule_id": ["ING-DATE"] * 3,
            "value": values,
            "source_row": [1, None, 3],
            "flag": [True, False, None],
        },
        schema={
            "rule_id": pl.String,
            "value": pl.String,
            "source_row": pl.Int64,
            "flag": pl.Boolean,
        },
    )
    assert _findings_json(frame) == _reference(frame)
    with_float = frame.with_columns(pl.Series("score", [1.5, None, 1e-7]))
    assert _findings_json(with_float) == _reference(with_float)
    assert _findings_json(frame.clear()) == _reference(frame.clear())


@given(
    # Printable ASCII (with quotes and backslashes) takes the polars path; the rest json.dumps.
    texts=st.lists(
        st.one_of(
            st.none(),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8),
            st.text(max_size=8),
        ),
        min_size=1,
        max_size=5,
    ),
    rows=st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62)), min_size=5, max_size=5),
)
def test_findings_json_matches_json_dumps_on_generated_findings(
    texts: list[str | None], rows: list[int | None]
) -> None:
    n = len(texts)
    frame = pl.DataFrame(
        {"value": texts, "source_row": rows[:n]},
        schema={"value": pl.String, "source_row": pl.Int64},
    )
    assert _findings_json(frame) == _reference(frame)


def _rule_outputs(shared: bool) -> list[tuple[object, ...]]:
    from cartreg.cdm import load_cdm
    from cartreg.ingest.harmonize import SharedParses, harmonize_rule, shared_parse_keys
    from cartreg.ingest.mapping import load_mapping
    from cartreg.ingest.pipeline import read_source

    site = Path(__file__).parents[2] / "sample_data" / "ehr_c"
    cdm = load_cdm()
    mapping = load_mapping(site / "mapping.yaml", cdm)
    read = read_source(mapping.sources["events"], site)
    rules = [r for rules in mapping.tables.values() for r in rules if r.source == "events"]
    cache = SharedParses(read.frame, shared_parse_keys(rules, cdm)) if shared else None
    outputs: list[tuple[object, ...]] = []
    for n, rule in enumerate(rules):
        out = harmonize_rule(
            read.frame,
            rule,
            mapping,
            cdm,
            reader="csv",
            choices=read.choices,
            identifiers={},
            rule_index=n,
            shared=cache,
        )
        outputs.append(
            (
                out.rows.columns,
                out.rows.rows(),
                out.findings.rows(),
                out.selected.to_list(),
                out.quarantine.rows(),
            )
        )
    return outputs


def test_shared_parses_give_what_each_rule_computes_alone() -> None:
    # ehr_c parses EVENT_DATE, EVENT_SEQ, BM_BLAST_PCT, MRD_PCT... in several event-type rules,
    # and its defects (bad dates, numbers, codes) exercise the problem markers and findings.
    alone = _rule_outputs(shared=False)
    assert any(output[2] for output in alone)
    assert _rule_outputs(shared=True) == alone


_DATE_TEXT = st.one_of(
    st.none(),
    st.sampled_from(["2021-03-05", "05/03/2021", "2021-03", "2021", "44256", "Mar 05 2021"]),
    st.from_regex(
        r"\s?[0-9]{1,4}[-./ ][0-9]{1,2}([-./ ][0-9]{1,4})?( 00:00:00)?\s?", fullmatch=True
    ),
    st.text(max_size=12),
)


@given(
    values=st.lists(_DATE_TEXT, max_size=20),
    formats=st.lists(
        st.sampled_from(["ISO", "DMY", "MDY", "MY", "Y", "EXCEL", "%d.%m.%y"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
)
def test_dates_parsed_from_a_normalized_column_match_the_single_expression(
    values: list[str | None], formats: list[str]
) -> None:
    from cartreg.ingest.transforms.dates import normalized_date_text, parse_dates

    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    one = parse_dates(pl.col("v"), formats)
    staged = parse_dates(pl.col("v"), formats, normalized=pl.col("n"))
    expected = frame.select(one.value, one.precision.alias("p"), one.status.alias("s"))
    got = frame.with_columns(normalized_date_text(pl.col("v")).alias("n")).select(
        staged.value, staged.precision.alias("p"), staged.status.alias("s")
    )
    assert got.rows() == expected.rows()


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["P1", "P10", "P2", "", None]),
            st.sampled_from([1, 2, None]),
            st.integers(0, 2),
        ),
        max_size=8,
    )
)
def test_sortedness_check_agrees_with_sorting(
    rows: list[tuple[str | None, int | None, int]],
) -> None:
    from cartreg.ingest.derive import in_order, sort_rows

    frame = pl.DataFrame(rows, schema={"k": pl.String, "d": pl.Int64, "o": pl.Int64}, orient="row")
    by = ["k", "d", "o"]
    expected = frame.sort(by, nulls_last=True, maintain_order=True)
    assert frame.select(in_order(by)).item() == expected.equals(frame)
    assert sort_rows(frame, by).equals(expected)
