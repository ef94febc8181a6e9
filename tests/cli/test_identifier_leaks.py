"""No planted identifier reaches any file `cartreg check` writes, any report format, the terminal,
or `cartreg profile`, whatever language its column is named in and whichever row holds it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from cartreg.cli.main import cli
from cartreg.reports.json_report import render_json
from cartreg.reports.tabular import write_csv, write_xlsx
from cartreg.reports.terminal import report_renderables
from cartreg.validation import validate_output

# Column names per kind of identifier, in the consortium's languages.
NAMED = {
    "surname": ["Nachname", "pat_Nachname", "nom", "apellido", "cognome", "achternaam", "sobrenome"],
    "given": ["Vorname", "prénom", "voornaam", "last_name", "FirstName"],
    "full": ["NomPatient", "patient_name", "nome_completo", "Name", "nombre"],
    "birth": ["Geburtsdatum", "date_de_naissance", "fecha_nacimiento", "data_di_nascita",
              "geboortedatum", "data_nascimento", "DOB"],
    "phone": ["Telefonnummer", "téléphone", "telefono", "telefoon", "telefone", "phone"],
    "email": ["E-Mail", "courriel", "correo_electronico", "email"],
    "insurance": ["KV_Nummer", "codice_fiscale", "BSN", "CPF", "NIR", "ssn", "tarjeta_sanitaria"],
    "address": ["Hausarzt_Adresse", "adresse", "indirizzo", "direccion", "endereco", "address"],
    "record": ["MRN", "Fallnummer", "NHC", "IPP", "prontuario", "cartella_clinica"],
}  # fmt: skip
# Columns whose names say nothing: their values give them away (one row is enough).
NEUTRAL = ["Bemerkung", "commentaire", "nota", "opmerking", "observacao", "Kontakt", "info"]
CONSONANTS = "bcdfghjklmnpqrstvwxz"  # markers that no report text contains by chance


@dataclass
class Planted:
    column: str
    values: list[str]  # one per row
    markers: list[str]  # what must appear in no output
    flagged: bool = True  # reported as an identifier column (else only its value is masked)


def _values(kind: str, token: str, digits: str, n: int) -> tuple[list[str], list[str]]:
    """Values of one identifier column (row i gets variant i) and the markers to look for."""
    name = token.title()
    if kind in ("surname", "given", "full"):
        values = [f"{name}{i}" if kind != "full" else f"Hans {name}{i}" for i in range(n)]
        return values, [name]
    if kind == "birth":
        values = [f"19{30 + i % 30}-0{1 + i % 9}-1{i % 10}" for i in range(n)]
        return values, values
    if kind == "phone":
        values = [f"+49 30 {digits}{i}" for i in range(n)]
        return values, [f"{digits}{i}" for i in range(n)]
    if kind == "email":
        return [f"{token}{i}@example.org" for i in range(n)], [token]
    if kind == "insurance":
        return [f"A{digits}{i % 10}" for i in range(n)], [digits]
    if kind == "address":
        return [f"{name}straße {i}, 10115 Berlin" for i in range(n)], [name]
    return [f"{digits}{i}" for i in range(n)], [digits]


def _stray(kind: str, token: str, digits: str) -> Planted:
    """A column of harmless notes with one identifier in free text (``row`` set later)."""
    phone = f"+33 6 {digits[:2]} {digits[2:4]} {digits[4:6]} {digits[6:8]}"
    text, marker = {
        "email": (f"erreichbar unter {token}@example.de", token),
        "phone": (f"call {phone}", phone[4:]),
        "record": (f"seen on ward, MRN {digits}, CR at d28", digits),
        "insurance": (f"CF {token.upper()[:6]}85T10A562S", f"{token.upper()[:6]}85T10A562S"),
    }.get(kind, (f"{token.title()}, Hans", token.title()))
    # One name among notes does not make a column of names: the value alone is masked.
    return Planted("", [text], [marker], flagged=kind != "name")


@st.composite
def sites(draw: st.DrawFn) -> tuple[str, list[Planted]]:
    n = draw(st.integers(min_value=4, max_value=40))
    token = draw(st.text(alphabet=CONSONANTS, min_size=7, max_size=7))
    digits = "7" + draw(st.text(alphabet="0123456789", min_size=8, max_size=8))
    kinds = draw(st.lists(st.sampled_from(sorted(NAMED)), min_size=1, max_size=4, unique=True))
    planted = []
    for k, kind in enumerate(kinds):
        column = draw(st.sampled_from(NAMED[kind]))
        values, markers = _values(kind, token + "bcdf"[k], digits + str(k), n)
        planted.append(Planted(column, values, markers))
    for k in range(draw(st.integers(min_value=0, max_value=2))):
        kind = draw(st.sampled_from(["email", "phone", "record", "insurance", "name"]))
        stray = _stray(kind, token + "gh"[k], digits + "89"[k])
        row = draw(st.integers(min_value=0, max_value=n - 1))
        stray.column = draw(st.sampled_from(NEUTRAL)) + str(k)
        stray.values = [stray.values[0] if i == row else f"note {i % 3}" for i in range(n)]
        planted.append(stray)
    # A name where a code belongs (as a shifted row leaves it): the column stays mapped, the
    # name must not reach sex_raw, a finding value or a report.
    shifted = draw(st.none() | st.integers(min_value=0, max_value=n - 1))
    sex = ["FM"[i % 2] for i in range(n)]
    if shifted is not None:
        sex[shifted] = f"{token.title()}x, Maria"
        planted.append(Planted("sex", sex, [f"{token.title()}x"], flagged=False))
    names = [p.column for p in planted if p.column != "sex"]
    birth = next((p.column for p in planted if p.column in NAMED["birth"]), None)
    year = draw(st.booleans()) and birth is not None
    header = ["study_id", "sex", "dx_date", "product", *names]
    rows = [",".join(header)]
    for i in range(n):
        study_id = "" if i % 7 == 3 else f"P{i:03d}"  # rows without an id are quarantined
        cells = [study_id, f'"{sex[i]}"', f"2019-0{1 + i % 9}-15", "Kymriah"]
        cells += [f'"{p.values[i]}"' for p in planted if p.column != "sex"]
        rows.append(",".join(cells))
    mapping = MAPPING + (f"        birth_year: {{from: {birth}, part: year}}\n" if year else "")
    return "\n".join(rows) + "\n" + "\x00" + mapping, planted


MAPPING = """mapping_version: "1"
site_id: LEAK
defaults: {date_formats: [ISO]}
sources:
  pat: {file: export.csv, patient_id: study_id}
tables:
  car_t_infusions:
    - source: pat
      columns:
        product: product
  patients:
    - source: pat
      columns:
        sex: sex
        diagnosis_date: dx_date
"""


def _texts(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as text (Parquet decoded, workbooks unzipped)."""
    texts = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            texts[str(path)] = " ".join(frame.columns) + "\n" + frame.write_ndjson()
        elif path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as archive:
                texts[str(path)] = "".join(
                    archive.read(n).decode("utf-8", "ignore") for n in archive.namelist()
                )
        else:
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def _run(tmp: Path, csv_and_mapping: str) -> tuple[Path, dict[str, str]]:
    export, mapping = csv_and_mapping.split("\x00")
    site, out, reports = tmp / "site", tmp / "out", tmp / "reports"
    site.mkdir(parents=True)
    (site / "export.csv").write_text(export, encoding="utf-8")
    (site / "mapping.yaml").write_text(mapping, encoding="utf-8")
    runner = CliRunner()
    args = ["check", str(site), "--mapping", str(site / "mapping.yaml"), "--out", str(out)]
    check = runner.invoke(cli, [*args, "--format", "html", "--report", str(reports / "r.html")])
    assert check.exit_code in (0, 1), check.output
    # The other report formats of the same validation, and the terminal's.
    report = validate_output(out)
    (reports / "r.json").write_text(render_json(report), encoding="utf-8")
    write_csv(report, reports / "r.csv")
    write_xlsx(report, reports / "r.xlsx")
    terminal = io.StringIO()
    console = Console(file=terminal, width=200)
    for item in report_renderables(report):
        console.print(item)
    texts = {**_texts(out), **_texts(reports), "check output": check.output}
    texts["terminal report"] = terminal.getvalue()
    for fmt in ("table", "json", "csv"):
        profile = runner.invoke(cli, ["profile", str(site / "export.csv"), "--format", fmt])
        assert profile.exit_code == 0, profile.output
        texts[f"profile {fmt}"] = profile.output
    return out, texts


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sites())
def test_planted_identifiers_reach_no_output(tmp_path_factory, site) -> None:  # type: ignore[no-untyped-def]
    csv_and_mapping, planted = site
    out, texts = _run(tmp_path_factory.mktemp("leak"), csv_and_mapping)
    assert (out / "quarantine" / "pat.parquet").is_file()  # quarantine was written
    for p in planted:
        for marker in p.markers:
            leaks = [where for where, text in texts.items() if marker in text]
            assert not leaks, (p.column, marker, leaks)
    findings = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    flagged = {f["column"] for f in findings if f["rule_id"] == "ING-IDENTIFIER"}
    assert flagged == {p.column for p in planted if p.flagged}


def test_an_identifier_in_a_mapped_column_stops_the_run_without_echoing_it(tmp_path: Path) -> None:
    rows = ["study_id,sex,dx_date,product"]
    rows += [
        f"P{i:03d},{'F' if i != 501 else 'jane.roe@example.org'},2019-01-15,Kymriah"
        for i in range(700)
    ]
    site = tmp_path / "site"
    site.mkdir()
    (site / "export.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (site / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    out = tmp_path / "out"
    args = ["check", str(site), "--mapping", str(site / "mapping.yaml"), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "cartreg", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "e-mail address in row 503" in result.stderr and "'sex'" in result.stderr
    assert "jane.roe" not in result.stdout + result.stderr
    assert not out.exists() or not any("jane.roe" in t for t in _texts(out).values())
