"""``cartreg demo``: the whole pipeline on ``sample_data/``, as a coordinator would run it.

Every stage is a real ``cartreg`` command, printed before it runs, so a new user can repeat it
by hand and open the files it writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from cartreg.cli.common import console

# The four original layouts, then the three registry-style ones (cartreg.synth.registry_style).
SITES = ("redcap_a", "excel_b", "ehr_c", "deid_d", "registry_a", "classeur_b", "json_c")
DATA_CUT = "2025-06-30"  # the sample cohort's administrative data cut
DEMO_SECRET = "cartreg demo consortium secret (never use a published secret for real data)"


def _run(args: list[str], *, expect: tuple[int, ...] = (0,)) -> int:
    """Run one cartreg command in-process, echoing it first; stop the demo on a surprise."""
    from cartreg.cli.main import cli

    console().print(f"\n[bold]$ cartreg {' '.join(args)}[/]")
    result = cli.main(args=args, prog_name="cartreg", standalone_mode=False)
    code = result if isinstance(result, int) else 0
    if code not in expect:
        raise click.ClickException(f"`cartreg {' '.join(args)}` exited with {code}")
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
        raise click.ClickException(
            f"answer key mismatch: missed {comparison.missed}, "
            f"unexpected {comparison.unexpected_errors}"
        )

    con.rule("4. Registry: store each site's version, accept it after review, merge")
    registry = out / "registry.duckdb"
    secret = out / "consortium.secret"
    secret.write_text(DEMO_SECRET + "\n", encoding="utf-8")
    _run(["registry", "init", str(registry)])
    for site in SITES:
        site_id = site.upper()
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

    con.rule("6. Queries: send EHR_C its open queries, record its answers, take its next cut")
    workbook, scorecard = _queries(out, samples, registry)

    con.rule("done")
    con.print(
        f"Open {out / 'reports' / 'all-sites.html'} (findings for the sites), "
        f"{out / 'analysis' / 'report.html'} (outcomes), {scorecard} (site scorecard) and "
        f"{workbook} (a query workbook as sent to a site)."
    )


QUERY_SITE = ("ehr_c", "EHR_C")
# How the demo's site answers, by rule, and the corrections its next cut brings (file, old, new).
SITE_ANSWERS = {
    "ING-DATE": ("corrected in the next submission", "typo in the day"),
    "PT-001": ("corrected in the next submission", "diagnosis year was wrong"),
    "PT-022": ("confirmed correct as is", "the line started late, by the patient's choice"),
}
CORRECTIONS = (
    (
        "events.csv",
        "CT00036,DISEASE_ASSESSMENT,2023-04-31",
        "CT00036,DISEASE_ASSESSMENT,2023-04-30",
    ),
    ("patients.csv", "CT00037,M,1940,79.9,2022-03-21", "CT00037,M,1940,79.9,2020-03-21"),
)


def _queries(out: Path, samples: Path, registry: Path) -> tuple[Path, Path]:
    """Export a site's queries, answer them as the site would, import the answers, waive what
    the site confirmed, store the site's corrected cut, and draw the scorecard."""
    import openpyxl

    folder, site = QUERY_SITE
    con = console()
    queries = out / "queries"
    reg = ["--registry", str(registry)]
    _run(["queries", "list", *reg, "--site", site, "--state", "open"])
    workbook = queries / f"{site}-queries.xlsx"
    _run(["queries", "export", *reg, "--site", site, "--out", str(workbook)])
    answered = queries / f"{site}-queries-answered.xlsx"
    book = openpyxl.load_workbook(workbook)
    sheet = book["queries"]
    header = [c.value for c in sheet[1]]
    confirmed: list[str] = []
    for row in range(2, sheet.max_row + 1):
        rule = sheet.cell(row, header.index("rule") + 1).value
        if rule in SITE_ANSWERS:
            response, comment = SITE_ANSWERS[str(rule)]
            sheet.cell(row, header.index("response") + 1).value = response
            sheet.cell(row, header.index("comment") + 1).value = comment
            if response.startswith("confirmed"):
                confirmed.append(str(sheet.cell(row, header.index("query_id") + 1).value))
    book.save(answered)
    con.print(f"(the site answers {len(SITE_ANSWERS)} queries in {answered.name})")
    _run(["queries", "import", str(answered), *reg, "--actor", f"{site} data manager"])
    _run(["queries", "close", *confirmed, *reg, "--waive", "--reason", "confirmed by the site"])
    cut = out / "resubmission" / folder
    shutil.copytree(samples / folder, cut)
    for name, old, new in CORRECTIONS:
        text = (cut / name).read_text(encoding="utf-8")
        if old not in text:
            raise click.ClickException(f"demo: {name} of {folder} no longer holds {old!r}")
        (cut / name).write_text(text.replace(old, new), encoding="utf-8")
    _run(
        [
            "registry",
            "submit",
            str(cut),
            "--site",
            site,
            "--mapping",
            str(samples / folder / "mapping.yaml"),
            *reg,
            "--report",
            str(out / "reports" / f"{folder}-v2.json"),
            "--format",
            "json",
        ],
        expect=(0, 1),
    )
    _run(["queries", "history", *reg, "--site", site])
    scorecard = queries / "scorecard.html"
    _run(["queries", "scorecard", *reg, "--out", str(scorecard)])
    _run(
        ["queries", "scorecard", *reg, "--format", "json", "--out", str(queries / "scorecard.json")]
    )
    return workbook, scorecard
