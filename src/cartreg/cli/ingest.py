"""``cartreg ingest``: harmonize one site submission into CDM tables."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console, exit_code_for, fail_on_option


@click.command()
@click.argument("submission_dir", type=click.Path(path_type=Path))
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The site's mapping YAML.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (tables/, quarantine/, manifest.json, findings.json).",
)
@fail_on_option()
@click.option("--quiet", is_flag=True, help="No progress or summary on the terminal.")
@click.pass_context
def ingest(
    ctx: click.Context,
    submission_dir: Path,
    mapping_path: Path,
    out_dir: Path,
    fail_on: str,
    quiet: bool,
) -> None:
    """Harmonize SUBMISSION_DIR (a site's export files) with its mapping into CDM tables."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cartreg.ingest import ingest_submission
    from cartreg.reports.terminal import findings_summary

    cdm = cdm_from_context(ctx)
    err = console(stderr=True)
    # A progress display only on a terminal: logs and pipes get the summary lines alone.
    if quiet or not err.is_terminal:
        result = ingest_submission(submission_dir, mapping_path, out_dir, cdm=cdm)
    else:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("ingesting", total=None)
            result = ingest_submission(
                submission_dir,
                mapping_path,
                out_dir,
                cdm=cdm,
                progress=lambda message: progress.update(task, description=message),
            )
    if not quiet:
        out = console()
        for source in result.manifest["sources"]:
            out.print(
                f"{source['file']}: {source['rows_read']} rows read, "
                f"{source['rows_harmonized']} harmonized, {source['rows_quarantined']} quarantined"
            )
        if result.findings.height:
            out.print(findings_summary(result.findings))
        out.print(f"wrote {out_dir}")
    ctx.exit(exit_code_for(result.findings, fail_on))
