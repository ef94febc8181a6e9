"""The committed data dictionary must match what `cartreg schema docs` generates."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from click.testing import CliRunner

from cartreg.cdm import load_cdm
from cartreg.cdm.docs import render_html, render_markdown
from cartreg.cli.main import cli
from cartreg.paths import repo_root


def test_committed_data_dictionary_has_not_drifted() -> None:
    committed = (repo_root() / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    assert committed == render_markdown(load_cdm()), (
        "docs/data-dictionary.md is stale: run "
        "`cartreg schema docs --format md --out docs/data-dictionary.md`"
    )


def test_dictionary_lists_columns_units_and_synonyms() -> None:
    text = render_markdown(load_cdm())
    assert "| `pre_bm_blast_pct` | float |" in text
    assert "% of nucleated marrow cells" in text
    assert "Kymirah" in text  # synonyms are listed for sites
    assert "### Vocabulary car_t_products" in text


def test_html_and_xlsx_formats(tmp_path: Path) -> None:
    html = render_html(load_cdm())
    assert html.startswith("<!doctype html>") and "http" not in html.split("<body>")[0]
    runner = CliRunner()
    out = tmp_path / "dictionary.xlsx"
    result = runner.invoke(cli, ["schema", "docs", "--format", "xlsx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(out, read_only=True)
    assert book.sheetnames == ["columns", "vocabularies"]
    rows = list(book["columns"].iter_rows(values_only=True))
    assert rows[0][:3] == ("table", "column", "type")
    assert ("patients", "patient_key", "string") in {r[:3] for r in rows}
