"""Finding text built by polars expressions."""

from __future__ import annotations

import polars as pl
import pytest

from cartreg.findings import text_format


def _chunked_with_an_empty_chunk_first() -> pl.DataFrame:
    """Two chunks of which a filter leaves the first empty: the layout that made polars 2.1's
    ``pl.format`` panic (``assertion failed: i < self.len()``) in a lazy query."""
    parts = [
        pl.DataFrame({"a": ["A"], "n": [1]}),
        pl.DataFrame({"a": ["U", "U", "B"], "n": [2, 3, 4]}),
    ]
    return pl.concat(parts, rechunk=False)


def test_text_format_handles_every_chunk_layout() -> None:
    frame = _chunked_with_an_empty_chunk_first().lazy().filter(pl.col("a") == "U")
    out = frame.select(text_format("{} is {}; n={}", "a", pl.lit("x"), pl.col("n"))).collect()
    assert out.to_series().to_list() == ["U is x; n=2", "U is x; n=3"]


def test_text_format_is_pl_format() -> None:
    frame = pl.DataFrame({"a": ["p", None], "n": [1, 2]})
    ours = frame.select(text_format("<{}|{}>", "a", "n")).to_series()
    theirs = frame.select(pl.format("<{}|{}>", "a", "n")).to_series()
    assert ours.to_list() == theirs.to_list() == ["<p|1>", None]
    with pytest.raises(ValueError, match="2 placeholders"):
        text_format("{}{}", "a")
