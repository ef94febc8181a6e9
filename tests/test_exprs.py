"""format_text, and the polars 2.1 panic it exists for (pl.format over empty chunks)."""

from __future__ import annotations

import ast

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.exprs import format_text
from cartreg.paths import repo_root


def _chunked_sites() -> pl.DataFrame:
    """Sites concatenated as cartreg does it (one chunk per site); every other site has no row
    the filter keeps, so a streaming morsel can start with a chunk the filter empties."""
    sites = [
        pl.DataFrame({"v": ["keep"] * (i % 3) + ["drop"] * 5 if i % 2 else ["drop"] * (7 + i)})
        for i in range(40)
    ]
    return pl.concat(sites, rechunk=False)


def _kept(expr: pl.Expr) -> pl.LazyFrame:
    return _chunked_sites().lazy().filter(pl.col("v") == "keep").select(expr.alias("out"))


def test_pl_format_still_panics_on_empty_chunks() -> None:
    """The reproducer of the panic seen in `cartreg validate A B C`. If this test fails, polars
    fixed its str_format kernel: format_text may then go (docs/decisions/polars-format.md)."""
    with pytest.raises(BaseException, match=r"i < self\.len\(\)") as caught:
        _kept(pl.format("{}={}", pl.lit("v"), pl.col("v"))).collect(engine="streaming")
    assert not isinstance(caught.value, Exception)  # a PanicException, not an ordinary error


def test_format_text_on_empty_chunks_matches_the_in_memory_result() -> None:
    expected = _kept(pl.format("{}={}", pl.lit("v"), pl.col("v"))).collect(engine="in-memory")
    got = _kept(format_text("{}={}", pl.lit("v"), pl.col("v"))).collect(engine="streaming")
    assert got.height == expected.height > 0
    assert got.equals(expected)


cell = st.one_of(st.none(), st.text(max_size=12))
piece = st.text(max_size=5).map(lambda t: t.replace("{", "(").replace("}", ")"))


@given(st.data(), st.integers(0, 6), st.integers(1, 4))
def test_format_text_is_pl_format(data: st.DataObject, height: int, width: int) -> None:
    """The same text (null where any argument is null) for any values and templates."""
    columns = {
        f"c{i}": data.draw(st.lists(cell, min_size=height, max_size=height)) for i in range(width)
    }
    frame = pl.DataFrame(columns, schema={c: pl.String for c in columns})
    frame = frame.with_columns(pl.col("c0").str.len_bytes().alias("n"))
    args: list[pl.Expr | str] = [*columns, pl.col("n"), pl.lit("x")]
    template = "{}".join(data.draw(st.lists(piece, min_size=len(args) + 1, max_size=len(args) + 1)))
    expected = frame.select(pl.format(template, *args).alias("out"))
    assert frame.select(format_text(template, *args).alias("out")).equals(expected)


def test_format_text_rejects_a_wrong_template() -> None:
    with pytest.raises(ValueError, match="2 placeholders for 1 arguments"):
        format_text("{} {}", "a")
    with pytest.raises(ValueError, match="only '\\{\\}' placeholders"):
        format_text("{0} {}", "a")


def test_no_pl_format_in_cartreg() -> None:
    """pl.format panics on empty chunks in polars 2.1: the library uses format_text."""
    offenders = []
    for path in sorted((repo_root() / "src" / "cartreg").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "format"
                and isinstance(node.value, ast.Name)
                and node.value.id == "pl"
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders
