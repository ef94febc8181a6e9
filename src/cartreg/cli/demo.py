"""``cartreg demo``: the whole pipeline on ``sample_data/``, one stage after another.

Each stage prints what it did and where its output is, so a new user can follow along and
open the files.
"""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Folder for everything the demo writes.",
)
@click.pass_context
def demo(ctx: click.Context, out: Path) -> None:
    """Run the whole pipeline on sample_data/."""
    from cartreg.cdm import validate_tables
    from cartreg.cdm.docs import render_html, render_markdown, write_xlsx
    from cartreg.paths import repo_root
    from cartreg.reports.terminal import findings_table

    con = console()
    cdm = cdm_from_context(ctx)
    out.mkdir(parents=True, exist_ok=True)

    con.rule(f"1. Data dictionary for sites (CDM {cdm.version})")
    docs = out / "data-dictionary"
    docs.mkdir(exist_ok=True)
    (docs / "data-dictionary.md").write_text(render_markdown(cdm), encoding="utf-8")
    (docs / "data-dictionary.html").write_text(render_html(cdm), encoding="utf-8")
    write_xlsx(cdm, docs / "data-dictionary.xlsx")
    con.print(f"{len(cdm.tables)} tables, {len(cdm.vocabularies)} vocabularies -> {docs}/")

    con.rule("2. CDM conformance of the harmonized example")
    example = repo_root() / "docs" / "examples" / "harmonized"
    findings = validate_tables(example, cdm=cdm)
    if findings.height:
        con.print(findings_table(findings))
        raise click.ClickException("the shipped harmonized example does not conform to the CDM")
    con.print(f"[green]{example.relative_to(repo_root())}: all {len(cdm.tables)} tables conform[/]")
    con.rule("done")
    con.print(f"Outputs are in {out}/")
