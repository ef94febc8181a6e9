"""``cartreg synth``: simulate a calibrated multi-site cohort and render each site's export."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cartreg.cli.common import console

if TYPE_CHECKING:
    import polars as pl

LAYOUT_NAMES = ("redcap", "excel", "ehr", "deid")


def _layouts(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in LAYOUT_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"choose from {', '.join(LAYOUT_NAMES)} (comma separated)")
    return names


@click.command()
@click.option(
    "--patients",
    "n_patients",
    type=click.IntRange(min=1),
    default=240,
    show_default=True,
    help="Number of patients (tens to millions; written in chunks of 50,000).",
)
@click.option(
    "--sites",
    "n_sites",
    type=click.IntRange(min=1, max=702),
    default=4,
    show_default=True,
    help="Number of centres; layouts cycle: REDCAP_A, EXCEL_B, EHR_C, DEID_D, REDCAP_E, …",
)
@click.option("--seed", type=int, default=2021, show_default=True, help="Random seed.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder: truth/<table>.parquet, sites/<site>/…, defects.csv.",
)
@click.option("--clean", is_flag=True, help="Render the sites without planted defects.")
@click.option("--summary", is_flag=True, help="Print calibration statistics with target ranges.")
@click.option(
    "--sample-data",
    is_flag=True,
    help="Write the committed sample set (4 sites, 240 patients, defects.csv) into --out.",
)
@click.option(
    "--layouts",
    default=",".join(LAYOUT_NAMES),
    show_default=True,
    help="Site layouts to cycle through (the Excel layout is limited to ~1M rows per sheet).",
)
@click.option("--truth-only", is_flag=True, help="Write only the truth tables, no site exports.")
@click.option(
    "--duplicate-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of patients also reported by a second site, with realistic discrepancies; "
    "the pairs go to truth/duplicates.csv.",
)
def synth(
    n_patients: int,
    n_sites: int,
    seed: int,
    out: Path | None,
    clean: bool,
    summary: bool,
    sample_data: bool,
    layouts: str,
    truth_only: bool,
    duplicate_rate: float,
) -> None:
    """Simulate a synthetic multi-site cohort of adults with B-ALL given CD19 CAR T.

    Deterministic: the same options give byte-identical files.
    """
    import polars as pl

    from cartreg.synth.cohort import simulate_cohort
    from cartreg.synth.sample import sample_cohort, synthesize, write_sample_data

    chosen = _layouts(layouts)
    err = console(stderr=True)
    tables: Mapping[str, pl.DataFrame] | None = None
    if sample_data:
        if out is None:
            raise click.UsageError("--sample-data needs --out (e.g. --out sample_data)")
        write_sample_data(out, seed=seed, clean=clean)
        err.print(f"wrote sample data to {out}")
        if summary:
            tables = sample_cohort(seed).tables
    elif out is not None:
        with err.status("simulating…") as status:
            sites = synthesize(
                out,
                n_patients=n_patients,
                n_sites=n_sites,
                seed=seed,
                clean=clean,
                layouts=chosen,
                truth_only=truth_only,
                progress=lambda text: status.update(text),
                duplicate_rate=duplicate_rate,
            )
        twice = out / "truth" / "duplicates.csv"
        # A patient reported by two sites is one patient and two site records: say both.
        also = (
            f", {pl.read_csv(twice).height:,} of them reported by a second site too ({twice})"
            if twice.is_file()
            else ""
        )
        err.print(f"wrote {n_patients:,} patients at {len(sites)} sites to {out}{also}")
        if summary:
            tables = {p.stem: pl.read_parquet(p) for p in sorted((out / "truth").glob("*.parquet"))}
    elif summary:
        tables = simulate_cohort(
            n_patients, n_sites, seed, layouts=chosen, duplicate_rate=duplicate_rate
        ).tables
    else:
        raise click.UsageError("give --out DIR, --summary, or both")
    if tables is not None:
        _print_summary(tables)


def _print_summary(tables: Mapping[str, pl.DataFrame]) -> None:
    import math

    from rich.table import Table

    from cartreg.synth.summary import calibration_table

    frame = calibration_table(tables)
    table = Table(title="Calibration of the truth cohort")
    for name in ("statistic", "value", "target", "status"):
        table.add_column(name)
    for row in frame.iter_rows(named=True):
        high = "" if math.isinf(row["high"]) else f"{row['high']:g}"
        colour = "green" if row["status"] == "PASS" else "red"
        table.add_row(
            row["description"],
            f"{row['value']:.3g}",
            f"[{row['low']:g}, {high}]",
            f"[{colour}]{row['status']}[/]",
        )
    console().print(table)
