"""``cartreg profile``: describe source files column by column."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cartreg.cli.common import cdm_from_context, console

if TYPE_CHECKING:
    import polars as pl


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.pass_context
def profile(ctx: click.Context, files: tuple[Path, ...], fmt: str) -> None:
    """Per column: type, null rate, distinct values, top values, date formats, vocabulary.

    Fields inside JSON arrays are profiled as `array.field` (after the explode they need).
    Use --format json or csv for wide files or to read the profile elsewhere.
    """
    import json

    from cartreg.errors import InputError
    from cartreg.ingest.profile import profile_files

    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: input file not found")
    result = profile_files(list(files), cdm_from_context(ctx))
    if fmt == "json":
        click.echo(json.dumps(result.to_dicts(), indent=2))
        return
    if fmt == "csv":
        from cartreg.spreadsheet import write_csv

        click.echo(write_csv(result), nl=False)
        return
    text = render_blocks(result) if result.height else "no columns to profile (no records?)"
    console().print(text, highlight=False, markup=False, soft_wrap=True)


def render_blocks(result: pl.DataFrame, width: int = 80) -> str:
    """One short block per column: readable in an 80-column terminal, whatever the values."""
    lines: list[str] = []
    source = None
    for row in result.iter_rows(named=True):
        if row["source"] != source:
            source = row["source"]
            lines.append(f"== {source}")
        distinct = "" if row["distinct"] is None else f", {row['distinct']} distinct"
        lines.append(
            f"{row['column']}: {row['inferred_type']}, {row['null_rate']:.0%} empty{distinct}"
        )
        details = []
        if row["top_values"]:
            details.append(f"top: {_cut(str(row['top_values']), width - 9)}")
        hints = []
        if row["date_formats"]:
            hints.append(f"date formats: {row['date_formats']}")
        if row["decimal"]:
            hints.append(f'decimal: "{row["decimal"]}"')
        if row["vocabulary"]:
            share = f"{row['vocabulary_match']:.0%}"
            hints.append(f"vocabulary: {row['vocabulary']} ({share} of values are its terms)")
        if row["identifier"]:
            hints.append("identifier (values hidden)")
        if hints:
            details.append("; ".join(hints))
        lines.extend(f"    {d}" for d in details)
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"
