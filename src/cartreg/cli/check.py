"""``cartreg check SUBMISSION_DIR --mapping M --out OUT_DIR``: ingest then validate."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import (
    cdm_from_context,
    console,
    exit_code_for,
    run_ingest,
    submission_arguments,
    validation_progress,
)
from cartreg.cli.validate import emit, load_policies, now_utc, report_options


@click.command()
@submission_arguments
@report_options
@click.pass_context
def check(
    ctx: click.Context,
    submission_dir: Path,
    mapping_path: Path,
    out_dir: Path,
    partition_mb: float,
    rules_dir: Path | None,
    fmt: str,
    report_path: Path | None,
    waivers: Path | None,
    overrides: Path | None,
    fail_on: str,
) -> None:
    """Ingest a site submission and validate the result (the everyday command).

    Exit code 0 when no finding reaches --fail-on, 1 when one does, 2 for unusable input.
    """
    from cartreg.validation import validate_output

    cdm = cdm_from_context(ctx)
    waiver_list, override_list = load_policies(waivers, overrides)
    result = run_ingest(submission_dir, mapping_path, out_dir, cdm, partition_mb=partition_mb)
    rows = sum(frame.height for frame in result.tables.values())
    # Validation reads the tables back from out_dir: holding the ingested copy as well would add
    # its size to validation's peak (at 10M rows, 8.9 GiB instead of the larger of the two).
    del result
    console(stderr=True).print(f"ingested {rows} rows into {out_dir}")
    with validation_progress() as on_step:
        report = validate_output(
            out_dir,
            rules_dir=rules_dir,
            cdm=cdm,
            waivers=waiver_list,
            overrides=override_list,
            generated_at=now_utc(),
            on_step=on_step,
        )
    emit(report, fmt, report_path)
    ctx.exit(exit_code_for(report.findings, fail_on))
