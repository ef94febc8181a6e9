"""Every CSV/XLSX writer neutralizes formula cells (OWASP CSV injection), header cells included."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import openpyxl
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from cartreg.spreadsheet import neutralize, neutralize_text, write_csv, write_xlsx

SRC = Path(__file__).resolve().parents[1] / "src" / "cartreg"
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
# Writing CSV or XLSX anywhere but the shared helper, in any of its spellings (openpyxl may
# read a workbook: the query workbook comes back from a site).
WRITER = re.compile(
    r"\.write_csv\(|\.sink_csv\(|xlsxwriter|openpyxl\.Workbook\(|csv\.writer|DictWriter|write_excel"
)
# The synthetic site exports imitate a hospital system's files (sentinel codes such as -99
# included) and hold no outside data: they are written as a site would write them.
SYNTHETIC_EXPORTS = {"synth/sample.py", "synth/render/common.py", "synth/render/redcap.py"}


def test_every_writer_goes_through_the_helper() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name == "spreadsheet.py" or name in SYNTHETIC_EXPORTS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if WRITER.search(line) and "spreadsheet" not in line:
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    for name in SYNTHETIC_EXPORTS:  # the exceptions still exist and still write files
        assert WRITER.search((SRC / name).read_text(encoding="utf-8")), name


def dangerous(text: str) -> bool:
    """The rule of docs/security.md, written independently of the code under test."""
    return text.startswith(DANGEROUS) and re.fullmatch(NUMBER, text) is None


# A plain decimal number in ASCII digits: what a spreadsheet reads as a number, never a formula.
NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"


@given(st.text(max_size=20))
def test_neutralize_property(text: str) -> None:
    out = pl.DataFrame({"v": [text]}).select(neutralize(pl.col("v")))["v"].item()
    assert out == neutralize_text(text)
    assert out == ("'" + text if dangerous(text) else text)


@given(
    st.one_of(
        st.integers().map(str),
        st.integers().map(lambda n: f"{n:+d}"),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:+.3e}"),
        st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: f"{d:f}"),
    )
)
def test_a_plain_number_is_never_prefixed(text: str) -> None:
    frame = pl.DataFrame({text: [text]})
    assert neutralize_text(text) == text
    assert frame.select(neutralize(pl.col(text)))[text].item() == text
    assert write_csv(frame) == f"{text}\n{text}\n"


@given(st.sampled_from(DANGEROUS), st.text(max_size=20))
def test_a_formula_start_is_prefixed_unless_the_cell_is_a_plain_number(
    start: str, rest: str
) -> None:
    text = start + rest
    out = neutralize_text(text)
    if re.fullmatch(NUMBER, text):
        assert out == text
    else:
        assert out == "'" + text
        assert pl.DataFrame({"v": [text]}).select(neutralize(pl.col("v")))["v"].item() == out


def test_the_trial_cases() -> None:
    """A negative day offset reads as a number again; formulas behind a number do not."""
    kept = ["-124", "-1.5e3", "+3", "1e5", "-0.5", ".5", "-7."]
    hostile = [
        "-1+cmd|' /C calc'!A0",
        "+1+1",
        "-124\n=1",
        "=1+1",
        "@SUM(A1)",
        "\t-124",
        "\r-124",
        "- 124",
        "-0x1F",
        "-1e",
        "-١٢٣",  # Arabic-Indic digits are not ASCII digits
        "-inf",
        "+",
        "-",
    ]
    assert [neutralize_text(t) for t in kept] == kept
    assert [neutralize_text(t) for t in hostile] == ["'" + t for t in hostile]
    column = pl.DataFrame({"v": kept + hostile}).select(neutralize(pl.col("v")))["v"]
    assert column.to_list() == kept + ["'" + t for t in hostile]


HOSTILE = pl.DataFrame(
    {
        "=cmd|' /C calc'!A0": ['=HYPERLINK("http://x","y")', "+1+A1", "ok"],
        "column": ["@SUM(A1)", "\tx", "-2x"],
        "days": [-3, 5, None],
        "share": [-0.5, 1.0, 2.5],
        "flag": [True, False, None],
    }
)


def test_csv_neutralizes_cells_and_header_and_keeps_numbers(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    write_csv(HOSTILE, path)
    rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
    assert rows[0][0] == "'=cmd|' /C calc'!A0"
    for row in rows:
        for cell in row[:2]:
            assert not cell.startswith(DANGEROUS), cell
    assert [r[2] for r in rows[1:]] == ["-3", "5", ""]
    assert [r[3] for r in rows[1:]] == ["-0.5", "1.0", "2.5"]
    assert write_csv(HOSTILE) == path.read_text(encoding="utf-8")


def test_xlsx_writes_text_cells_only_for_text_and_no_formula(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    write_xlsx(path, {"sheet": HOSTILE})
    sheet = openpyxl.load_workbook(path)["sheet"]
    rows = list(sheet.iter_rows())
    assert rows[0][0].value == "'=cmd|' /C calc'!A0"
    cells = [c for row in rows for c in row if c.value is not None]
    assert all(c.data_type != "f" for c in cells)
    assert all(not str(c.value).startswith(DANGEROUS) for c in cells if c.data_type == "s")
    assert [r[2].value for r in rows[1:]] == [-3, 5, None]
    assert [r[4].value for r in rows[1:]] == [True, False, None]


def test_profile_csv_is_neutralized(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cartreg.cli.main import cli

    source = tmp_path / "export.csv"
    source.write_text(
        '=cmd|\' /C calc\'!A0,product\n"=HYPERLINK(""x"",""y"")",+Kymriah\n-1,@x\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["profile", str(source), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert len(rows) == 3
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS), cell
    assert rows[1][1] == "'=cmd|' /C calc'!A0"
