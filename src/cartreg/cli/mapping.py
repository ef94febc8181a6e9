"""``cartreg mapping``: draft a site mapping from its files, and check a mapping."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console


@click.group()
def mapping() -> None:
    """Draft and check site mapping files."""


@mapping.command("init")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the draft mapping YAML.",
)
@click.option("--site-id", default=None, help="Registry code of the site (e.g. REDCAP_A).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.pass_context
def init(
    ctx: click.Context, files: tuple[Path, ...], out: Path, site_id: str | None, force: bool
) -> None:
    """Write a draft mapping proposing CDM targets for the columns of FILES (review it!)."""
    from cartreg.errors import InputError
    from cartreg.ingest.draft import draft_mapping

    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: input file not found")
    if out.exists() and not force:
        raise InputError(f"{out}: exists; use --force to overwrite")
    text = draft_mapping(list(files), cdm_from_context(ctx), site_id=site_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console(stderr=True).print(f"wrote {out} (every REVIEW line needs a human decision)")


@mapping.command("check")
@click.argument("mapping_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--submission",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also read the files of this submission and check the source columns.",
)
@click.pass_context
def check(ctx: click.Context, mapping_path: Path, submission: Path | None) -> None:
    """Check MAPPING_PATH against the CDM (and against a submission's files)."""
    import polars as pl

    from cartreg.ingest.mapping import load_mapping
    from cartreg.ingest.pipeline import harmonize_submission

    cdm = cdm_from_context(ctx)
    site = load_mapping(mapping_path, cdm)
    out = console()
    if submission is not None:
        result = harmonize_submission(submission, site, cdm)
        # Findings about the mapping itself (not the data) are worth reading before any ingest.
        for message in result.findings.filter(pl.col("rule_id") == "ING-WHERE-VALUE")["message"]:
            out.print(f"warning: {mapping_path}: {message}", style="yellow", markup=False)
    where = f" and {submission}" if submission is not None else ""
    out.print(f"[green]{mapping_path}: valid for CDM {cdm.version}{where}[/]")


@mapping.command("schema-path")
def schema_path() -> None:
    """Print the path of the mapping JSON Schema (for an editor's `$schema` line)."""
    from cartreg.errors import InputError
    from cartreg.paths import schemas_dir

    path = schemas_dir() / "mapping.schema.json"
    if not path.is_file():
        raise InputError(f"{path}: mapping schema not found", hint="check $CARTREG_SCHEMAS")
    click.echo(str(path.resolve()))
