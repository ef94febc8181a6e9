"""``cartreg export``: hand the CDM checks to other tools."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console


@click.group()
def export() -> None:
    """Export to other tools (Great Expectations)."""


@export.command("gx")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the GX files (default: OUT_DIR/gx); suites go to DEST/expectations/.",
)
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of rule files (default: bundled rules/).",
)
@click.option(
    "--run",
    "run_gx",
    is_flag=True,
    default=False,
    help="Also validate OUT_DIR's tables with GX (needs the gx extra); exit 1 on failure.",
)
@click.pass_context
def gx(
    ctx: click.Context, out_dir: Path, dest: Path | None, rules_dir: Path | None, run_gx: bool
) -> None:
    """Write a GX expectation suite per CDM table (schema + single-table rules)."""
    from cartreg.interop.gx import build_suites, run_suites, write_suites
    from cartreg.rules import load_rules

    cdm = cdm_from_context(ctx)
    suites = build_suites(cdm, load_rules(rules_dir, cdm=cdm))
    target = dest or out_dir / "gx"
    paths = write_suites(suites, target)
    err = console(stderr=True)
    n = sum(len(s["expectations"]) for s in suites.values())
    err.print(f"wrote {len(paths)} suites ({n} expectations) to {target / 'expectations'}")
    if not run_gx:
        return
    from cartreg.validation import load_output_tables

    results = run_suites(load_output_tables(out_dir, cdm), suites)
    failed = results.filter(~results["success"])
    out = console()
    out.print(f"GX: {results.height - failed.height} of {results.height} expectations passed")
    for row in failed.iter_rows(named=True):
        out.print(
            f"  failed {row['table']} {row['rule_id']} {row['expectation']} "
            f"({row['unexpected_count']} unexpected)"
        )
    ctx.exit(1 if failed.height else 0)
