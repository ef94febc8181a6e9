"""``cartreg schema``: the data dictionary for sites, and CDM conformance checks."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console, exit_code_for, fail_on_option


@click.group()
def schema() -> None:
    """Data model: documentation and conformance checks."""


@schema.command("docs")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "xlsx"]), default="md", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output file (default: standard output for md/html; required for xlsx).",
)
@click.pass_context
def docs(ctx: click.Context, fmt: str, out: Path | None) -> None:
    """Write the data dictionary that a coordinator sends to sites."""
    from cartreg.cdm.docs import render_html, render_markdown, write_xlsx

    cdm = cdm_from_context(ctx)
    if fmt == "xlsx":
        if out is None:
            raise click.UsageError("--out is required for --format xlsx")
        write_xlsx(cdm, out)
    else:
        text = render_markdown(cdm) if fmt == "md" else render_html(cdm)
        if out is None:
            click.echo(text, nl=False)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    console(stderr=True).print(f"wrote {out}")


@schema.command("validate")
@click.argument("tables", type=click.Path(path_type=Path))
@fail_on_option()
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the findings as a JSON list of finding records.",
)
@click.pass_context
def validate(ctx: click.Context, tables: Path, fail_on: str, json_out: Path | None) -> None:
    """Check a folder of harmonized tables (<table>.parquet or .csv) against the CDM."""
    import json

    from cartreg.cdm import validate_tables
    from cartreg.redact import redact_findings
    from cartreg.reports.terminal import findings_summary, findings_table

    cdm = cdm_from_context(ctx)
    findings = redact_findings(validate_tables(tables, cdm=cdm))
    out = console()
    if findings.height == 0:
        out.print(f"[green]{tables}: conforms to CDM {cdm.version}[/]")
    else:
        out.print(findings_summary(findings))
        out.print(findings_table(findings))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(findings.to_dicts(), indent=2) + "\n", encoding="utf-8")
    ctx.exit(exit_code_for(findings, fail_on))
