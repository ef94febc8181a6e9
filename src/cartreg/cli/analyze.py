"""``cartreg analyze``: time-to-event datasets, estimates, tables, figures and a report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console


def _parse_cut(_ctx: click.Context, _param: click.Parameter, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date in YYYY-MM-DD form") from None


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option(
    "--data-cut",
    required=True,
    callback=_parse_cut,
    help="Data-cut date (YYYY-MM-DD): later events are ignored, follow-up is censored there.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (created if needed).",
)
@click.option(
    "--endpoints",
    "endpoints_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of endpoint declarations (default: the bundled endpoints/).",
)
@click.option(
    "--population",
    type=click.Choice(["clean", "all"]),
    default="clean",
    show_default=True,
    help="clean: leave out patients with unresolved error findings on fields the analysis"
    " uses; all: analyse them too.",
)
@click.option(
    "--duplicates",
    type=click.Choice(["one", "stop", "keep-both"]),
    default="one",
    show_default=True,
    help="Unreviewed candidate duplicate pairs: analyse one record of each, stop, or analyse"
    " both records.",
)
@click.option(
    "--landmark-days",
    type=click.IntRange(min=1),
    default=90,
    show_default=True,
    help="Landmark of the HCT analysis, in days after the infusion.",
)
@click.option("--no-figures", is_flag=True, default=False, help="Skip the PNG/SVG figures.")
@click.pass_context
def analyze(
    ctx: click.Context,
    data_dir: Path,
    data_cut: dt.date,
    out_dir: Path,
    endpoints_dir: Path | None,
    population: str,
    duplicates: str,
    landmark_days: int,
    no_figures: bool,
) -> None:
    """Analyse DATA_DIR: a folder of <table>.parquet/.csv, or an ingest/registry output."""
    from cartreg.analysis.population import PopulationPolicy
    from cartreg.analysis.run import analyze as run_analysis

    result = run_analysis(
        data_dir,
        data_cut,
        out_dir,
        endpoints_dir=endpoints_dir,
        cdm=cdm_from_context(ctx),
        figures=not no_figures,
        policy=PopulationPolicy(
            exclude_error_findings=population == "clean",
            duplicates=duplicates,  # type: ignore[arg-type]
        ),
        landmark_days=landmark_days,
    )
    out = console()
    flow = result.results["population"]
    out.print(f"patients received {flow['received']['total']}")
    for row in flow["excluded"]:
        out.print(f"  excluded {row['total']:<4} {row['reason']}")
    out.print(f"data cut {data_cut.isoformat()}: {result.results['n_patients']} patients analysed")
    for code, block in result.results["endpoints"].items():
        median = block["median_months"]
        shown = "not reached" if median is None else f"{median:.1f} months"
        out.print(f"  {code:<9} n={block['n']:<4} events={block['events']:<4} median {shown}")
    for key, model in result.results["models"].items():
        if model["status"] != "fitted":
            out.print(f"  model {key}: not fitted ({model['message']})")
    for warning in result.results["follow_up"]["warnings"]:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print(f"wrote {out_dir}/report.html and {len(result.files) - 1} other files")
