"""Ingest in patient ranges gives exactly the output of ingest in one pass."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartreg.cdm import CDM, load_cdm
from cartreg.ingest import partition
from cartreg.ingest.pipeline import IngestResult, ingest_submission
from cartreg.ingest.readers import csv as csv_reader
from cartreg.paths import repo_root

MAPPING = """
mapping_version: "1"
site_id: PART_T
defaults: {date_formats: [ISO, DMY]}
sources:
  patients: {file: patients.csv, patient_id: pid}
  events: {file: events.csv, patient_id: pid}
tables:
  patients:
    - source: patients
      columns: {sex: sex}
  car_t_infusions:
    - source: events
      where: [{column: kind, equals: infusion}]
      columns: {infusion_date: date, product: detail}
  disease_assessments:
    - source: events
      where: [{column: kind, equals: assessment}]
      columns: {assessment_date: date, response: detail, bm_blast_pct: value}
"""

PIDS = ["P1", "P2", "P10", " P3", "P3", "p3", "", " ", "Q7"]
events = st.lists(
    st.fixed_dictionaries(
        {
            "pid": st.sampled_from(PIDS),
            "kind": st.sampled_from(["infusion", "assessment", "other"]),
            "date": st.sampled_from(["2021-03-05", "05/03/2021", "31/02/2021", "", "2020-01-01"]),
            "detail": st.sampled_from(["Kymriah", "CR", "PR", "??", ""]),
            "value": st.sampled_from(["3", "<5", "4.5", "x", ""]),
        }
    ),
    min_size=1,
    max_size=40,
)
patients = st.lists(
    st.fixed_dictionaries(
        {"pid": st.sampled_from(PIDS), "sex": st.sampled_from(["F", "M", "x", ""])}
    ),
    max_size=8,
)


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


def _csv(rows: list[dict[str, str]], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _site(root: Path, event_rows: list[dict[str, str]], patient_rows: list[dict[str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    fields = ["pid", "kind", "date", "detail", "value"]
    (root / "events.csv").write_text(_csv(event_rows, fields), encoding="utf-8")
    (root / "patients.csv").write_text(_csv(patient_rows, ["pid", "sex"]), encoding="utf-8")
    return root


def assert_same(whole: IngestResult, parts: IngestResult) -> None:
    for name, table in whole.tables.items():
        assert table.equals(parts.tables[name]), name
    assert whole.findings.equals(parts.findings)
    assert whole.quarantine.keys() == parts.quarantine.keys()
    for name, records in whole.quarantine.items():
        assert records.equals(parts.quarantine[name]), name
    assert whole.manifest == parts.manifest


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(event_rows=events, patient_rows=patients, limit=st.integers(1, 600))
def test_any_split_gives_the_single_pass_output(
    tmp_path: Path,
    cdm: CDM,
    event_rows: list[dict[str, str]],
    patient_rows: list[dict[str, str]],
    limit: int,
) -> None:
    site = _site(tmp_path / "site", event_rows, patient_rows)
    mapping = site / "mapping.yaml"
    notes: list[str] = []
    whole = ingest_submission(site, mapping, None, cdm=cdm, partition_mb=None)
    parts = ingest_submission(
        site, mapping, None, cdm=cdm, partition_mb=limit / 2**20, progress=notes.append
    )
    assert_same(whole, parts)
    if (site / "events.csv").stat().st_size > limit:
        # The generated files are always splittable, so the split really happened.
        assert any(n.startswith("splitting events.csv") for n in notes), notes


def test_sample_site_in_many_parts_writes_identical_files(tmp_path: Path, cdm: CDM) -> None:
    site = repo_root() / "sample_data" / "ehr_c"
    notes: list[str] = []
    whole = ingest_submission(site, site / "mapping.yaml", tmp_path / "a", cdm=cdm, partition_mb=0)
    parts = ingest_submission(
        site,
        site / "mapping.yaml",
        tmp_path / "b",
        cdm=cdm,
        partition_mb=0.003,
        progress=notes.append,
    )
    assert_same(whole, parts)
    assert "splitting events.csv into 21 ranges of patients" in notes
    for name in ["findings.json", "manifest.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for table in (tmp_path / "a" / "tables").glob("*.parquet"):
        assert pl.read_parquet(table).equals(
            pl.read_parquet(tmp_path / "b" / "tables" / table.name)
        )
    # The scratch parts are removed.
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "findings.json",
        "manifest.json",
        "quarantine",
        "tables",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('pid,kind,date,detail,value\nP1,infusion,2021-03-05,"Kymriah, IV",3\n', "quoted fields"),
        ("pid,kind,date,detail,value\nP1,infusion,2021-03-05,Kymriah\n", "field count"),
        ("pid,kind,date,detail,value\nP1,infusion,2021-03-05,Kymriah,3,9\n", "field count"),
        # One field too many and one too few: the separator total matches, the parse does not.
        ("pid,kind,date,detail,value\nP1,infusion,2021-03-05,Kymriah,3,9\nP1,x,,\n", "more fields"),
        ("pid,kind,date,detail,value\nP1,infusion,2021-03-05,Kymriah,3\n\n", "field count"),
    ],
)
def test_files_the_streaming_reader_cannot_prove_are_read_whole(
    tmp_path: Path, cdm: CDM, text: str, reason: str
) -> None:
    site = _site(tmp_path / "site", [], [{"pid": "P1", "sex": "F"}])
    (site / "events.csv").write_text(text, encoding="utf-8")
    notes: list[str] = []
    result = ingest_submission(
        site, site / "mapping.yaml", None, cdm=cdm, partition_mb=1e-6, progress=notes.append
    )
    whole = [n for n in notes if n.startswith("reading the submission whole")]
    assert whole and reason in whole[0], notes
    assert_same(
        ingest_submission(site, site / "mapping.yaml", None, cdm=cdm, partition_mb=0), result
    )


# Random bytes, and texts made of the bytes the scan counts (line ends, separators, quotes,
# the halves of a UTF-8 sequence) so that blocks often cut between them.
_SCANNED = st.lists(
    st.sampled_from([b"a", b",", b"\n", b"\r", b"\r\n", b'"', b"\xc3", b"\xa9", b"\xff"]),
    max_size=120,
).map(b"".join)


@given(data=st.one_of(st.binary(max_size=300), _SCANNED), block=st.integers(1, 17))
def test_block_counts_match_the_whole_file(data: bytes, block: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.csv"
        path.write_bytes(data)
        previous, csv_reader._BLOCK = csv_reader._BLOCK, block
        try:
            scan = csv_reader.scan_bytes(path, ",")
        finally:
            csv_reader._BLOCK = previous
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert scan.size == len(data)
    assert scan.separators == data.count(b",")
    assert scan.lines == data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    assert scan.has_quotes == (b'"' in data)
    assert scan.tail == data[-2:]
    assert scan.lone_cr == (data.count(b"\r") != data.count(b"\r\n"))
    try:
        data.decode("utf-8")
        assert scan.utf8
    except UnicodeDecodeError:
        assert not scan.utf8


@given(
    counts=st.dictionaries(
        st.text("AB12", min_size=1, max_size=4), st.integers(1, 50), max_size=30
    ),
    rows_per_part=st.integers(1, 120),
)
def test_parts_are_consecutive_id_ranges_that_never_split_a_patient(
    counts: dict[str, int], rows_per_part: int
) -> None:
    frame = pl.DataFrame(
        {"pid": list(counts), "len": list(counts.values())},
        schema={"pid": pl.String, "len": pl.UInt32},
    )
    parts = partition.assign_parts([frame, frame.head(3)], rows_per_part)
    assert parts.get_column("pid").to_list() == sorted(counts)
    numbers = parts.get_column(partition.PART).to_list()
    assert numbers == sorted(numbers)
    assert set(numbers) == set(range(len(set(numbers))))
    totals = pl.concat([frame, frame.head(3)]).group_by("pid").agg(pl.col("len").sum())
    sizes = (
        parts.join(totals, on="pid")
        .sort("pid")
        .group_by(partition.PART, maintain_order=True)
        .agg(pl.col("len").sum().alias("rows"), pl.col("len").last().alias("last"))
    )
    # A part holds fewer than rows_per_part rows before its last patient starts.
    assert (sizes.get_column("rows") - sizes.get_column("last") < rows_per_part).all()


def test_the_command_says_how_a_large_submission_is_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    site = repo_root() / "sample_data" / "ehr_c"
    command = [sys.executable, "-m", "cartreg", "ingest", str(site)]
    command += ["--mapping", str(site / "mapping.yaml"), "--fail-on", "never"]
    split = subprocess.run(
        [*command, "--out", str(tmp_path / "a"), "--partition-mb", "0.003"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert split.returncode == 0, split.stderr
    assert "splitting events.csv into 21 ranges of patients" in split.stderr
    whole = subprocess.run(
        [*command, "--out", str(tmp_path / "b")], capture_output=True, text=True, check=False
    )
    assert whole.returncode == 0 and "splitting" not in whole.stderr
    for name in ["findings.json", "manifest.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_broken_mapping_fails_before_splitting_and_writes_nothing(
    tmp_path: Path, cdm: CDM
) -> None:
    from cartreg.errors import ConfigError

    rows = [{"pid": "P1", "kind": "infusion", "date": "2021-03-05", "detail": "x", "value": "1"}]
    site = _site(tmp_path / "site", rows * 50, [{"pid": "P1", "sex": "F"}])
    mapping = site / "mapping.yaml"
    mapping.write_text(
        MAPPING.replace("infusion_date: date", "infusion_date: dte"), encoding="utf-8"
    )
    notes: list[str] = []
    with pytest.raises(ConfigError, match=r"source column 'dte' not found in events\.csv"):
        ingest_submission(
            site, mapping, tmp_path / "out", cdm=cdm, partition_mb=1e-6, progress=notes.append
        )
    assert not any(n.startswith("splitting") for n in notes), notes
    assert not (tmp_path / "out").exists()


def test_identifier_columns_are_found_once_and_never_copied_when_split(
    tmp_path: Path, cdm: CDM
) -> None:
    rows = [
        {"pid": f"P{i}", "kind": "infusion", "date": "2021-03-05", "detail": "x", "value": "1"}
        for i in range(30)
    ]
    site = _site(tmp_path / "site", rows, [{"pid": "P1", "sex": "F"}])
    events = site / "events.csv"
    lines = events.read_text(encoding="utf-8").splitlines()
    mrns = [f"{40000000 + i}" for i in range(len(lines) - 1)]
    events.write_text(
        "\n".join([f"{lines[0]},mrn", *map(",".join, zip(lines[1:], mrns, strict=True))]) + "\n",
        encoding="utf-8",
    )
    notes: list[str] = []
    whole = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm, partition_mb=0)
    parts = ingest_submission(
        site,
        site / "mapping.yaml",
        tmp_path / "out",
        cdm=cdm,
        partition_mb=1e-4,
        progress=notes.append,
    )
    assert any(n.startswith("splitting events.csv") for n in notes), notes
    assert_same(whole, parts)
    flagged = parts.findings.filter(pl.col("rule_id") == "ING-IDENTIFIER")
    assert flagged.get_column("column").to_list() == ["mrn"]
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    texts = [pl.read_parquet(p).write_csv() for p in (tmp_path / "out").rglob("*.parquet")]
    assert not any(m.encode() in written or m in "".join(texts) for m in mrns)


def test_comment_and_header_lines_are_rejected_the_same_way_in_parts(
    tmp_path: Path, cdm: CDM
) -> None:
    rows = [
        {"pid": f"P{i}", "kind": "assessment", "date": "2021-03-05", "detail": "CR", "value": "3"}
        for i in range(60)
    ]
    site = _site(tmp_path / "site", rows, [{"pid": "P1", "sex": "F"}])
    lines = (site / "events.csv").read_text(encoding="utf-8").splitlines()
    # Both lines have the header's field count, so the file still splits.
    lines.insert(20, "# exported in two batches,,,,")
    lines.insert(40, lines[0])
    (site / "events.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = site / "mapping.yaml"
    notes: list[str] = []
    whole = ingest_submission(site, mapping, None, cdm=cdm, partition_mb=None)
    parts = ingest_submission(
        site, mapping, None, cdm=cdm, partition_mb=1e-3, progress=notes.append
    )
    assert any(n.startswith("splitting events.csv") for n in notes), notes
    assert_same(whole, parts)
    events_source = next(s for s in parts.manifest["sources"] if s["source"] == "events")
    assert events_source["records_counted"] == events_source["rows_read"] == 62
    rejected = parts.findings.filter(
        pl.col("rule_id").is_in(["ING-COMMENT", "ING-REPEATED-HEADER"])
    )
    assert rejected.select("rule_id", "source_row").rows() == [
        ("ING-COMMENT", 21),
        ("ING-REPEATED-HEADER", 41),
    ]


def _with_column(path: Path, name: str, values: list[str]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    joined = [f"{line},{value}" for line, value in zip(lines[1:], values, strict=True)]
    path.write_text("\n".join([f"{lines[0]},{name}", *joined]) + "\n", encoding="utf-8")


def test_identifiers_found_by_value_in_any_part_are_decided_as_in_one_pass(
    tmp_path: Path, cdm: CDM
) -> None:
    """An e-mail in one row of the last patients, and a column most of whose cells are names:
    the split run finds them in their parts and reports the rows a single pass reports."""
    rows = [
        {"pid": f"P{i:02d}", "kind": "infusion", "date": "2021-03-05", "detail": "x", "value": "1"}
        for i in range(40)
    ]
    site = _site(tmp_path / "site", rows, [{"pid": "P01", "sex": "F"}])
    events = site / "events.csv"
    notes = [f"note {i}" for i in range(40)]
    notes[37] = "write to jane.roe@example.org"
    _with_column(events, "remark", notes)
    given = ["Hans", "Maria", "Pierre", "Giulia", "Sanne"]
    surnames = [f"Qwx{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(40)]
    _with_column(events, "contact", [f"{given[i % 5]} {s}" for i, s in enumerate(surnames)])
    whole = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm, partition_mb=0)
    steps: list[str] = []
    parts = ingest_submission(
        site, site / "mapping.yaml", tmp_path / "out", cdm=cdm, partition_mb=1e-4,
        progress=steps.append,
    )  # fmt: skip
    assert any(n.startswith("splitting events.csv") for n in steps), steps
    assert_same(whole, parts)
    flagged = parts.findings.filter(pl.col("rule_id") == "ING-IDENTIFIER")
    assert dict(flagged.select("column", "message").iter_rows()) == {
        "contact": "source column 'contact' looks like a direct identifier (most values look "
        "like a person name); not copied to any output",
        "remark": "source column 'remark' looks like a direct identifier (e-mail address in "
        "row 39); not copied to any output",
    }
    texts = [pl.read_parquet(p).write_csv() for p in (tmp_path / "out").rglob("*.parquet")]
    assert not any("jane.roe" in t or "Qwx" in t for t in texts)
    # Mapped, the column is a configuration error once every part has been seen.
    from cartreg.errors import ConfigError

    mapping = (site / "mapping.yaml").read_text(encoding="utf-8")
    (site / "mapping.yaml").write_text(mapping.replace("response: detail", "response: remark"))
    with pytest.raises(ConfigError, match="e-mail address in row 39"):
        ingest_submission(
            site, site / "mapping.yaml", tmp_path / "out2", cdm=cdm, partition_mb=1e-4
        )
    assert not (tmp_path / "out2").exists()
