"""``cartreg validate OUT_DIR``: schema checks and data-quality rules on an ingest output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cartreg.cli.common import (
    cdm_from_context,
    console,
    exit_code_for,
    fail_on_option,
    validation_progress,
)

if TYPE_CHECKING:
    from cartreg.validation import Report

FORMATS = ("text", "json", "html", "csv", "xlsx")
F = TypeVar("F", bound=Callable[..., Any])


def report_output_options() -> list[Callable[[F], F]]:
    """--format, --report and --waivers: shared by validate, check and registry submit/store."""
    return [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            default="text",
            show_default=True,
            help="Report format.",
        ),
        click.option(
            "--report",
            "report_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Write the report here (default: standard output; required for xlsx).",
        ),
        click.option(
            "--waivers",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            default=None,
            help="YAML file of waived findings, with justification and expiry (format: "
            "docs/findings.md); in the registry, their queries are closed as waived.",
        ),
    ]


def report_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``validate`` and ``check``."""
    options = [
        click.option(
            "--rules",
            "rules_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder of rule files (default: bundled rules/).",
        ),
        *report_output_options(),
        click.option(
            "--overrides",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            default=None,
            help="YAML file of per-site rule thresholds (docs/findings.md).",
        ),
        fail_on_option(),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_policies(waivers: Path | None, overrides: Path | None) -> tuple[Any, Any]:
    from cartreg.rules.overrides import load_overrides
    from cartreg.rules.waivers import load_waivers

    return (
        load_waivers(waivers) if waivers else None,
        load_overrides(overrides) if overrides else None,
    )


def emit(report: Report, fmt: str, report_path: Path | None) -> None:
    """Render ``report`` in ``fmt`` to ``report_path`` or standard output."""
    if fmt == "xlsx":
        if report_path is None:
            raise click.UsageError("--report PATH is required for --format xlsx")
        from cartreg.reports.tabular import write_xlsx

        write_xlsx(report, report_path)
    elif fmt == "text":
        from cartreg.reports.terminal import report_renderables

        if report_path is None:
            out = console()
            for item in report_renderables(report):
                out.print(item)
            return
        report_path.parent.mkdir(parents=True, exist_ok=True)
        with report_path.open("w", encoding="utf-8") as handle:
            from rich.console import Console

            out = Console(file=handle, width=160, highlight=False)
            for item in report_renderables(report):
                out.print(item)
    else:
        text = _render_text(report, fmt)
        if report_path is None:
            click.echo(text, nl=False)
            return
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(text, encoding="utf-8")
    if report_path is not None:
        summary = report.summary()["findings_by_severity"]
        console(stderr=True).print(
            f"wrote {report_path} ({summary['error']} errors, {summary['warning']} warnings, "
            f"{summary['info']} info)"
        )


def _render_text(report: Report, fmt: str) -> str:
    if fmt == "json":
        from cartreg.reports.json_report import render_json

        return render_json(report)
    if fmt == "html":
        from cartreg.reports.html import render_html

        return render_html(report)
    from cartreg.reports.tabular import findings_table

    return findings_table(report).write_csv()


def now_utc() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@click.command()
@click.argument("out_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@report_options
@click.pass_context
def validate(
    ctx: click.Context,
    out_dirs: tuple[Path, ...],
    rules_dir: Path | None,
    fmt: str,
    report_path: Path | None,
    waivers: Path | None,
    overrides: Path | None,
    fail_on: str,
) -> None:
    """Validate output folder(s) of `cartreg ingest` (schema + data-quality rules).

    Give several folders (one per site) to run cross-site rules such as duplicate patients.

    Exit code 0 when no finding reaches --fail-on, 1 when one does, 2 for unusable input.
    """
    from cartreg.validation import validate_output

    waiver_list, override_list = load_policies(waivers, overrides)
    with validation_progress() as on_step:
        report = validate_output(
            list(out_dirs),
            rules_dir=rules_dir,
            cdm=cdm_from_context(ctx),
            waivers=waiver_list,
            overrides=override_list,
            generated_at=now_utc(),
            on_step=on_step,
        )
    emit(report, fmt, report_path)
    ctx.exit(exit_code_for(report.findings, fail_on))
