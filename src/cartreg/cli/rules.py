"""``cartreg rules``: list, show and document the data-quality rules."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import console

_RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of rule files (default: bundled rules/; env CARTREG_RULES).",
)


@click.group()
def rules() -> None:
    """List and document data-quality rules."""


@rules.command("list")
@_RULES_OPTION
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
def list_rules(ctx: click.Context, rules_dir: Path | None, fmt: str) -> None:
    """One line per rule: id, severity, Kahn category and name."""
    import json

    from rich.table import Table

    from cartreg.cli.common import cdm_from_context
    from cartreg.rules import load_rules

    catalog = load_rules(rules_dir, cdm=cdm_from_context(ctx))
    if fmt == "json":
        click.echo(json.dumps([r.doc_dict() for r in catalog], indent=2))
        return
    table = Table(title=f"{len(catalog)} data-quality rules")
    for name in ("id", "severity", "Kahn category", "threshold %", "name"):
        table.add_column(name)
    for r in catalog:
        table.add_row(r.id, r.severity, r.kahn, f"{r.threshold_pct:g}", r.name)
    console().print(table)


@rules.command("show")
@click.argument("rule_id")
@_RULES_OPTION
@click.pass_context
def show(ctx: click.Context, rule_id: str, rules_dir: Path | None) -> None:
    """Everything about one rule: documentation, check and examples."""
    import json

    from cartreg.cli.common import cdm_from_context
    from cartreg.rules import find_rule, load_rules

    rule = find_rule(load_rules(rules_dir, cdm=cdm_from_context(ctx)), rule_id)
    out = console()
    out.print(f"[bold]{rule.id}[/] {rule.name}")
    out.print(f"Kahn: {rule.kahn}   severity: {rule.severity}   threshold: {rule.threshold_pct:g}%")
    out.print(f"file: {rule.path}")
    out.print(f"\n{rule.description}\n")
    out.print(f"[bold]What to do:[/] {rule.guidance}\n")
    for table, columns in rule.requires.items():
        out.print(f"requires {table}: {', '.join(columns)}")
    out.print(
        f"check: {json.dumps({'type': rule.check_type, **rule.params}, default=str)}",
        soft_wrap=True,
    )
    out.print(f"examples: {len(rule.pass_examples)} passing, {len(rule.fail_examples)} failing")


@rules.command("docs")
@_RULES_OPTION
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (default: standard output).",
)
@click.pass_context
def docs(ctx: click.Context, rules_dir: Path | None, out: Path | None) -> None:
    """Markdown documentation of every rule (docs/rules.md)."""
    from cartreg.cli.common import cdm_from_context
    from cartreg.rules import load_rules
    from cartreg.rules.docs import render_markdown

    text = render_markdown(load_rules(rules_dir, cdm=cdm_from_context(ctx)))
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console(stderr=True).print(f"wrote {out}")
