"""``cartreg ingest``: harmonize one site submission into CDM tables."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import (
    cdm_from_context,
    console,
    exit_code_for,
    fail_on_option,
    run_ingest,
    submission_arguments,
)


@click.command()
@submission_arguments
@fail_on_option()
@click.option("--quiet", is_flag=True, help="No progress or summary on the terminal.")
@click.pass_context
def ingest(
    ctx: click.Context,
    submission_dir: Path,
    mapping_path: Path,
    out_dir: Path,
    partition_mb: float,
    fail_on: str,
    quiet: bool,
) -> None:
    """Harmonize SUBMISSION_DIR (a site's export files) with its mapping into CDM tables."""
    from cartreg.reports.terminal import findings_summary

    cdm = cdm_from_context(ctx)
    result = run_ingest(
        submission_dir, mapping_path, out_dir, cdm, quiet=quiet, partition_mb=partition_mb
    )
    if not quiet:
        out = console()
        if result.findings.height:
            out.print(findings_summary(result.findings))
        out.print(f"wrote {out_dir}")
    ctx.exit(exit_code_for(result.findings, fail_on))
