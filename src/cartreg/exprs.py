"""Polars expression helpers shared by every stage.

``format_text`` replaces ``pl.format``, which must not be used in cartreg (a test enforces it):
polars 2.1's ``str_format`` kernel walks the chunks of each column argument and moves on to the
next chunk only after reading an element, so an *empty* chunk that is not the last one makes it
read element 0 of an empty string array and panic (``binview/mod.rs: assertion failed:
i < self.len()``). The streaming engine produces exactly that input: it cuts a multi-chunk frame
(tables of several sites concatenated, one chunk per site) into morsels that can span a chunk
boundary, and a filter leaves an empty chunk where one side of the boundary has no matching
rows. ``pl.concat_str`` iterates over chunks correctly; see docs/decisions/polars-format.md.
"""

from __future__ import annotations

import polars as pl

_PLACEHOLDER = "{}"


def format_text(template: str, *args: pl.Expr | str) -> pl.Expr:
    """``template`` with each ``{}`` replaced by the next argument as text (a ``str`` argument is
    a column name), like ``pl.format``: null where any argument is null."""
    pieces = template.split(_PLACEHOLDER)
    if len(pieces) != len(args) + 1:
        raise ValueError(
            f"format_text: {len(pieces) - 1} placeholders for {len(args)} arguments in {template!r}"
        )
    if any("{" in piece or "}" in piece for piece in pieces):
        raise ValueError(f"format_text: only '{{}}' placeholders are supported in {template!r}")
    parts: list[pl.Expr] = []
    for i, piece in enumerate(pieces):
        if piece:
            parts.append(pl.lit(piece, dtype=pl.String))
        if i < len(args):
            arg = args[i]
            parts.append((pl.col(arg) if isinstance(arg, str) else arg).cast(pl.String))
    if not parts:
        return pl.lit("", dtype=pl.String)
    return pl.concat_str(parts)
