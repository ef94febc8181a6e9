"""``cartreg demo``: the whole pipeline on ``sample_data/``, as a coordinator would run it.

Every stage is a real ``cartreg`` command, printed before it runs, so a new user can repeat it
by hand and open the files it writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from cartreg.cli.common import console

SITES = ("redcap_a", "excel_b", "ehr_c", "deid_d")
DATA_CUT = "2025-06-30"  # the sample cohort's administrative data cut
DEMO_SECRET = "cartreg demo consortium secret (never use a published secret for real data)"


class DemoStopped(click.exceptions.Exit):
    """A stage ended otherwise than expected: the demo stops with that stage's exit code."""


def _run(args: list[str], *, expect: tuple[int, ...] = (0,)) -> int:
    """Run one cartreg command in-process, echoing it first; stop the demo on a surprise.

    The command runs under the same exit-code contract as on the command line (``run``): its
    errors are one line and a code. An unexpected 2 or 3 stops the demo with that code; any
    other surprise (findings where none were expected) is a bug in the demo data: 3.
    """
    from cartreg.cli.main import run

    console().print(f"\n[bold]$ cartreg {' '.join(args)}[/]")
    code = run(args)
    if code not in expect:
        click.echo(f"demo stopped: `cartreg {' '.join(args)}` exited with {code}", err=True)
        raise DemoStopped(code if code in (2, 3) else 3)
    return code


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Folder for everything the demo writes (emptied first).",
)
@click.option(
    "--samples",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Sample submissions (default: sample_data/ of this checkout).",
)
def demo(out: Path, samples: Path | None) -> None:
    """Run the whole pipeline on sample_data/."""
    from cartreg.paths import repo_root
    from cartreg.synth.answer_key import compare_with_answer_key
    from cartreg.validation import validate_output

    con = console()
    samples = samples or repo_root() / "sample_data"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    con.rule("1. Data dictionary for sites")
    _run(["schema", "docs", "--format", "html", "--out", str(out / "data-dictionary.html")])
    _run(["schema", "docs", "--format", "xlsx", "--out", str(out / "data-dictionary.xlsx")])

    con.rule("2. Check each site's submission (ingest + validate); planted defects exit 1")
    checks = out / "check"
    for site in SITES:
        _run(
            [
                "check",
                str(samples / site),
                "--mapping",
                str(samples / site / "mapping.yaml"),
                "--out",
                str(checks / site),
                "--format",
                "html",
                "--report",
                str(out / "reports" / f"{site}.html"),
            ],
            expect=(0, 1),
        )

    con.rule("3. Validate all sites together (cross-site rules) and compare with the answer key")
    site_outputs = [str(checks / s) for s in SITES]
    for fmt in ("html", "json", "csv"):
        report_path = out / "reports" / f"all-sites.{fmt}"
        _run(
            ["validate", *site_outputs, "--format", fmt, "--report", str(report_path)],
            expect=(0, 1),
        )
    report = validate_output([checks / s for s in SITES])
    comparison = compare_with_answer_key(report.findings, samples / "defects.csv")
    con.print(
        f"answer key: {len(comparison.expected) - len(comparison.missed)} of "
        f"{len(comparison.expected)} planted defects reported by their rule; "
        f"{len(comparison.unexpected_errors)} errors outside the key"
    )
    if not comparison.passed:
        click.echo(
            f"demo stopped: answer key mismatch: missed {comparison.missed}, "
            f"unexpected {comparison.unexpected_errors}",
            err=True,
        )
        raise DemoStopped(3)

    con.rule("4. Registry: store each site's version, accept it after review, merge")
    registry = out / "registry.duckdb"
    secret = out / "consortium.secret"
    secret.write_text(DEMO_SECRET + "\n", encoding="utf-8")
    _run(["registry", "init", str(registry)])
    for site, site_id in zip(SITES, ("REDCAP_A", "EXCEL_B", "EHR_C", "DEID_D"), strict=True):
        _run(
            [
                "registry",
                "store",
                str(checks / site),
                "--site",
                site_id,
                "--mapping",
                str(samples / site / "mapping.yaml"),
                "--registry",
                str(registry),
                "--accept-reason",
                "demo: the planted defects are known and listed in defects.csv",
            ]
        )
    _run(["registry", "status", "--registry", str(registry)])
    merged = out / "merged"
    _run(
        [
            "registry",
            "merge",
            "--registry",
            str(registry),
            "--out",
            str(merged),
            "--secret-file",
            str(secret),
            "--fail-on",
            "never",
        ]
    )

    con.rule("5. Outcome analyses on the merged registry")
    _run(["analyze", str(merged), "--data-cut", DATA_CUT, "--out", str(out / "analysis")])

    con.rule("done")
    con.print(
        f"Open {out / 'reports' / 'all-sites.html'} (findings for the sites) and "
        f"{out / 'analysis' / 'report.html'} (outcomes)."
    )
