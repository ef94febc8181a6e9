"""``cartreg profile``: describe source files column by column."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console


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
    """Per column: type, null rate, distinct values, top values, date formats, vocabulary."""
    import json

    from rich.table import Table

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
        click.echo(result.write_csv(), nl=False)
        return
    table = Table(show_lines=False)
    for name in result.columns:
        table.add_column(name, overflow="fold")
    for row in result.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    console().print(table)
